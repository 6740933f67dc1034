/**
 * Rendered markdown. The HTML comes from `renderMarkdown`, which sanitizes it (see lib/markdown.ts), so
 * setting it as innerHTML is safe. Copy buttons on code blocks work by event delegation: the
 * sanitized HTML carries no handlers of its own.
 */
import { useMemo } from "preact/hooks";
import { renderMarkdown } from "../lib/markdown";
import { useI18n } from "../i18n";

export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain http on a LAN address has no Clipboard API: the old way still works there.
  const ta = document.createElement("textarea");
  ta.value = text;
  ta.setAttribute("readonly", "");
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.appendChild(ta);
  ta.select();
  document.execCommand("copy");
  ta.remove();
}

export function Markdown({ text }: { text: string }) {
  const { t } = useI18n();
  const copyLabel = t("chat.copy");
  const html = useMemo(() => renderMarkdown(text, { copyLabel }), [text, copyLabel]);
  const onClick = (e: MouseEvent) => {
    const target = e.target as Element | null;
    const button = target?.closest?.("button[data-copy-code]");
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("pre code");
    if (!code) return;
    copyText(code.textContent ?? "")
      .then(() => {
        button.textContent = t("chat.copied");
        setTimeout(() => (button.textContent = copyLabel), 1500);
      })
      .catch(() => {});
  };
  return <div class="md" onClick={onClick} dangerouslySetInnerHTML={{ __html: html }} />;
}
