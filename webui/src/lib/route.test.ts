import { describe, expect, it } from "vitest";
import { chatHref, parseRoute, sameRoute } from "./route";

describe("routes", () => {
  it("parses the three places and round-trips chat ids", () => {
    expect(parseRoute("#/")).toEqual({ name: "chat", id: null });
    expect(parseRoute("")).toEqual({ name: "chat", id: null });
    expect(parseRoute("#/settings")).toEqual({ name: "settings" });
    expect(parseRoute(chatHref("a b/c"))).toEqual({ name: "chat", id: "a b/c" });
    expect(parseRoute("#/c/")).toEqual({ name: "chat", id: null });
  });

  it("compares routes by place, not by object", () => {
    expect(sameRoute(parseRoute("#/c/1"), parseRoute("#/c/1"))).toBe(true);
    expect(sameRoute(parseRoute("#/c/1"), parseRoute("#/c/2"))).toBe(false);
    expect(sameRoute(parseRoute("#/"), parseRoute("#/c/1"))).toBe(false);
    expect(sameRoute(parseRoute("#/settings"), parseRoute("#/settings"))).toBe(true);
    expect(sameRoute(parseRoute("#/settings"), parseRoute("#/"))).toBe(false);
    expect(sameRoute(parseRoute("#/"), parseRoute("#/settings"))).toBe(false);
  });
});
