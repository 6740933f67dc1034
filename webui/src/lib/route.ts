/**
 * Hash routing (`#/`, `#/c/<id>`, `#/settings`): the server only has to serve index.html at `/`, and a
 * reload keeps the open conversation.
 */
import { useEffect, useState } from "preact/hooks";

export type Route = { name: "chat"; id: string | null } | { name: "settings" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "");
  if (path === "/settings") return { name: "settings" };
  const m = /^\/c\/([^/?#]+)$/.exec(path);
  if (m && m[1]) return { name: "chat", id: decodeURIComponent(m[1]) };
  return { name: "chat", id: null };
}

export function chatHref(id: string | null): string {
  return id ? `#/c/${encodeURIComponent(id)}` : "#/";
}

export function navigate(href: string): void {
  if (location.hash !== href) location.hash = href;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}
