/**
 * Markdown to safe HTML, for answers of the model and messages of the user alike (issue 4 point 5).
 * Two layers: raw HTML in the markdown is never passed through (marked's `html` tokens are escaped
 * and shown as text), and the whole output then goes through DOMPurify (no scripts, no event handler
 * attributes, no `javascript:` URLs, no styles, no forms). Images become links so that an answer can
 * not make the browser fetch a remote URL (a tracking pixel) by itself.
 */
import DOMPurify from "dompurify";
import { Marked, type Tokens } from "marked";
import { highlightCode } from "./highlight";

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

export interface RenderOptions {
  /** Label of the copy button on code blocks (translated by the caller). */
  copyLabel: string;
}

function makeMarked(opts: RenderOptions): Marked {
  return new Marked({
    gfm: true,
    breaks: true,
    renderer: {
      html({ text }: Tokens.HTML | Tokens.Tag): string {
        return escapeHtml(text);
      },
      code({ text, lang }: Tokens.Code): string {
        const language = (lang ?? "").trim().split(/\s+/)[0] ?? "";
        const { html, language: detected } = highlightCode(text, language);
        const label = escapeHtml(detected || language || "text");
        return (
          `<div class="code-block"><div class="code-head"><span class="code-lang">${label}</span>` +
          `<button type="button" class="code-copy" data-copy-code="1">${escapeHtml(opts.copyLabel)}</button></div>` +
          `<pre><code class="hljs${detected ? ` language-${escapeHtml(detected)}` : ""}">${html}</code></pre></div>\n`
        );
      },
      image({ href, text }: Tokens.Image): string {
        return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
      },
    },
  });
}

let hooksInstalled = false;
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A") {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
    if (node.tagName === "INPUT") {
      // Task-list checkboxes only: shown, never editable.
      node.setAttribute("disabled", "");
    }
  });
}

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "iframe", "object", "embed", "img", "video", "audio", "source", "link", "meta", "base"],
  FORBID_ATTR: ["style", "srcset", "formaction", "action"],
  ALLOW_DATA_ATTR: false,
  ADD_ATTR: ["target", "data-copy-code"],
};

/** Sanitizes an HTML string with this UI's DOMPurify policy. */
export function sanitize(html: string): string {
  installHooks();
  return DOMPurify.sanitize(html, PURIFY_CONFIG) as unknown as string;
}

const cache = new Map<string, Marked>();

/** Renders markdown to sanitized HTML, ready for `dangerouslySetInnerHTML`. */
export function renderMarkdown(markdown: string, opts: RenderOptions = { copyLabel: "Copy" }): string {
  let marked = cache.get(opts.copyLabel);
  if (!marked) {
    marked = makeMarked(opts);
    cache.set(opts.copyLabel, marked);
  }
  const html = marked.parse(markdown, { async: false }) as string;
  return sanitize(html);
}
