/**
 * Small inline SVG icons (stroke follows the text color). Emoji or symbol characters would depend on
 * the fonts of the machine; these do not.
 */
import type { JSX } from "preact";

function Svg({ children }: { children: JSX.Element | JSX.Element[] }) {
  return (
    <svg width="16" height="16" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
      {children}
    </svg>
  );
}

export const IconCopy = () => (
  <Svg>
    <rect x="9" y="9" width="12" height="12" rx="2" />
    <path d="M5 15V5a2 2 0 0 1 2-2h10" />
  </Svg>
);
export const IconCheck = () => (
  <Svg>
    <path d="M5 12l5 5L20 7" />
  </Svg>
);
export const IconEdit = () => (
  <Svg>
    <path d="M4 20h4L19 9l-4-4L4 16v4z" />
    <path d="M13.5 6.5l4 4" />
  </Svg>
);
export const IconTrash = () => (
  <Svg>
    <path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3" />
  </Svg>
);
export const IconRegenerate = () => (
  <Svg>
    <path d="M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5" />
  </Svg>
);
export const IconSettings = () => (
  <Svg>
    <path d="M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0" />
    <circle cx="16" cy="6" r="2" />
    <circle cx="10" cy="12" r="2" />
    <circle cx="18" cy="18" r="2" />
  </Svg>
);
export const IconMenu = () => (
  <Svg>
    <path d="M4 6h16M4 12h16M4 18h16" />
  </Svg>
);
export const IconClose = () => (
  <Svg>
    <path d="M6 6l12 12M18 6L6 18" />
  </Svg>
);
export const IconStop = () => (
  <Svg>
    <rect x="6" y="6" width="12" height="12" rx="1" fill="currentColor" />
  </Svg>
);
export const IconLeft = () => (
  <Svg>
    <path d="M15 6l-6 6 6 6" />
  </Svg>
);
export const IconRight = () => (
  <Svg>
    <path d="M9 6l6 6-6 6" />
  </Svg>
);
