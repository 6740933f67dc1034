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

/** Whether two routes name the same place. */
export function sameRoute(a: Route, b: Route): boolean {
  return a.name === b.name && (a.name === "settings" || (b.name === "chat" && a.id === b.id));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () =>
      setRoute((r) => {
        const next = parseRoute(location.hash);
        return sameRoute(r, next) ? r : next;
      });
    window.addEventListener("hashchange", on);
    // The hash may have changed between the first render and this subscription (a link followed,
    // or a test navigating, while the page was still starting); that hashchange event is gone, so
    // read the hash once more now. The browser tests hit this on a loaded machine: the app stayed
    // on the conversation it was reloaded on while the address named another.
    on();
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}
