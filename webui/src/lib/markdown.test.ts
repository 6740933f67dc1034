import { describe, expect, it } from "vitest";
import { renderMarkdown } from "./markdown";

/** Parses rendered HTML into a detached element to inspect what a browser would build from it. */
function dom(html: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = html;
  return div;
}

/** Every way the payloads could still execute: script elements, on* attributes, javascript: URLs. */
function assertInert(root: HTMLElement): void {
  expect(root.querySelectorAll("script, iframe, object, embed, style, img, svg, math, form").length).toBe(0);
  for (const el of Array.from(root.querySelectorAll("*"))) {
    for (const attr of Array.from(el.attributes)) {
      expect(attr.name.toLowerCase().startsWith("on"), `${el.tagName} has ${attr.name}`).toBe(false);
      if (["href", "src", "action", "formaction", "xlink:href"].includes(attr.name.toLowerCase())) {
        expect(attr.value.replace(/[\s\u0000-\u001f]/g, "").toLowerCase()).not.toMatch(/^(javascript|vbscript|data):/);
      }
    }
  }
}

describe("renderMarkdown sanitizes", () => {
  it("drops script tags and shows raw HTML as text", () => {
    const html = renderMarkdown("hello <script>window.__x = 1</script> world\n\n<script>alert(1)</script>");
    const root = dom(html);
    assertInert(root);
    // The raw HTML is visible as text, not executed.
    expect(root.textContent).toContain("<script>");
  });

  it("neutralizes raw <img src=x onerror=...> in model output", () => {
    const root = dom(renderMarkdown('Look: <img src=x onerror="alert(1)">\n\n<img src=x onerror=alert(1)>'));
    assertInert(root);
    expect(root.textContent).toContain("onerror");
  });

  it("removes javascript: links in markdown link syntax and autolinks", () => {
    const root = dom(
      renderMarkdown("[click](javascript:alert(1)) [two](JaVaScRiPt:alert(1)) [tab](java\tscript:alert(1)) <javascript:alert(1)>"),
    );
    assertInert(root);
    expect(root.textContent).toContain("click");
  });

  it("removes event handler attributes from raw HTML blocks and inline tags", () => {
    const root = dom(
      renderMarkdown('<div onclick="alert(1)">x</div>\n\ntext <a href="#" onmouseover="alert(1)">y</a> <svg onload=alert(1)>'),
    );
    assertInert(root);
  });

  it("makes images links so nothing remote is fetched, and drops data:/javascript: image URLs", () => {
    const root = dom(renderMarkdown("![pixel](https://example.com/p.png) ![bad](javascript:alert(1))"));
    assertInert(root);
    const links = root.querySelectorAll("a");
    expect(links[0]?.getAttribute("href")).toBe("https://example.com/p.png");
    expect(links[0]?.getAttribute("rel")).toContain("noopener");
  });

  it("sanitizes payloads inside code fences (shown as code text)", () => {
    const root = dom(renderMarkdown("```html\n<img src=x onerror=alert(1)><script>alert(2)</script>\n```"));
    assertInert(root);
    expect(root.querySelector("pre code")?.textContent).toContain("<script>alert(2)</script>");
  });

  it("sanitizes user-written markdown the same way", () => {
    const root = dom(renderMarkdown('**me** <iframe src="javascript:alert(1)"></iframe> <a href="javascript:alert(1)">x</a>'));
    assertInert(root);
    expect(root.querySelector("strong")?.textContent).toBe("me");
  });
});

describe("renderMarkdown renders", () => {
  it("tables, lists and highlighted code blocks with a copy button", () => {
    const md = "| a | b |\n|---|---|\n| 1 | 2 |\n\n- one\n- two\n\n1. first\n\n```rust\nfn main() { let x = 1; }\n```\n";
    const root = dom(renderMarkdown(md, { copyLabel: "복사" }));
    expect(root.querySelectorAll("table td").length).toBe(2);
    expect(root.querySelectorAll("ul li").length).toBe(2);
    expect(root.querySelectorAll("ol li").length).toBe(1);
    const block = root.querySelector(".code-block");
    expect(block?.querySelector(".code-lang")?.textContent).toBe("rust");
    expect(block?.querySelector("button[data-copy-code]")?.textContent).toBe("복사");
    expect(block?.querySelector("code .hljs-keyword")?.textContent).toBe("fn");
    expect(block?.querySelector("code")?.textContent).toBe("fn main() { let x = 1; }\n".replace(/\n$/, ""));
  });

  it("keeps Korean text and unknown code languages as plain escaped text", () => {
    const root = dom(renderMarkdown("안녕하세요 **세계**\n\n```brainfuck\n<>+-\n```"));
    expect(root.querySelector("strong")?.textContent).toBe("세계");
    expect(root.querySelector("pre code")?.textContent).toBe("<>+-");
    expect(root.querySelector(".code-lang")?.textContent).toBe("brainfuck");
  });
});
