// Checks the production build: dist/index.html exists, loads only hashed assets from this origin,
// and nothing in the build points the browser at another host (the binary serves everything; no CDN).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const dist = new URL("../dist/", import.meta.url).pathname;
const fail = (msg) => {
  console.error(`check-dist: ${msg}`);
  process.exit(1);
};

let html;
try {
  html = readFileSync(join(dist, "index.html"), "utf8");
} catch {
  fail("dist/index.html is missing");
}

const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
if (refs.length === 0) fail("index.html references no assets");
for (const ref of refs) {
  if (!/^\/assets\/[\w.-]+-[\w-]{8,}\.(js|css|svg)$/.test(ref)) fail(`index.html references a non-hashed or external asset: ${ref}`);
}
if (/<script(?![^>]*\bsrc=)[^>]*>/i.test(html)) fail("index.html has an inline script (breaks a strict CSP)");
if (/https?:\/\//i.test(html)) fail("index.html contains an absolute URL");

// XML namespace names are identifiers that happen to look like URLs (the DOM needs them); nothing
// else absolute may appear in code or styles.
const NAMESPACES = new Set([
  "http://www.w3.org/2000/svg",
  "http://www.w3.org/1999/xhtml",
  "http://www.w3.org/1998/Math/MathML",
  "http://www.w3.org/1999/xlink",
  "http://www.w3.org/XML/1998/namespace",
  "http://www.w3.org/2000/xmlns/",
]);
const walk = (dir) =>
  readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));
const bad = [];
for (const file of walk(dist)) {
  if (!/\.(js|css|html)$/.test(file)) continue;
  const text = readFileSync(file, "utf8");
  if (file.endsWith(".css") && /url\(\s*['"]?(https?:)?\/\//i.test(text)) bad.push(`${file}: external url() in CSS`);
  if (/\bimport\s*\(\s*['"`]https?:/.test(text) || /\bfrom\s*['"`]https?:/.test(text)) bad.push(`${file}: imports a remote module`);
  for (const m of text.matchAll(/https?:\/\/[^\s"'`)<>\\]+/g)) {
    if (!NAMESPACES.has(m[0])) bad.push(`${file}: ${m[0]}`);
  }
}
if (bad.length) fail(`external URLs in the build:\n  ${[...new Set(bad)].join("\n  ")}`);
console.log(`check-dist: ok (${refs.length} hashed assets, no external URLs)`);
