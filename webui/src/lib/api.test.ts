import { afterEach, describe, expect, it, vi } from "vitest";
import { api, ApiError, CSRF_HEADER, onUnauthorized } from "./api";

interface Call {
  url: string;
  init: RequestInit;
}

function mockFetch(status: number, body: unknown): Call[] {
  const calls: Call[] = [];
  vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
    calls.push({ url, init });
    return new Response(body === undefined ? null : JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json" },
    });
  });
  return calls;
}

afterEach(() => vi.unstubAllGlobals());

describe("API client", () => {
  it("sends the CSRF header and JSON content type on state-changing requests only", async () => {
    const calls = mockFetch(200, { id: "c1" });
    await api.createConversation({ title: "t" });
    await api.conversation("c1");
    const [post, get] = calls;
    const postHeaders = post?.init.headers as Record<string, string>;
    expect(post?.init.method).toBe("POST");
    expect(postHeaders[CSRF_HEADER]).toBe("1");
    expect(postHeaders["Content-Type"]).toBe("application/json");
    expect(post?.init.credentials).toBe("same-origin");
    expect(JSON.parse(String(post?.init.body))).toEqual({ title: "t" });
    const getHeaders = get?.init.headers as Record<string, string>;
    expect(getHeaders[CSRF_HEADER]).toBeUndefined();
    expect(get?.url).toBe("/api/conversations/c1");
  });

  it("uses the contract's paths and bodies for messages, regenerate, search and import", async () => {
    const calls = mockFetch(200, { conversations: [{ id: "x" }] });
    const signal = new AbortController().signal;
    await api.postMessage("c 1", null, "안녕", signal);
    await api.regenerate("c1", "m2", signal);
    expect(await api.conversations(" 한글 검색 ")).toEqual([{ id: "x" }]);
    await api.importChatGpt([{ mapping: {} }]);
    expect(calls.map((c) => [c.init.method, c.url])).toEqual([
      ["POST", "/api/conversations/c%201/messages"],
      ["POST", "/api/conversations/c1/regenerate"],
      ["GET", `/api/conversations?q=${encodeURIComponent("한글 검색")}`],
      ["POST", "/api/import"],
    ]);
    expect(JSON.parse(String(calls[0]?.init.body))).toEqual({ parent_id: null, content: "안녕" });
    expect(JSON.parse(String(calls[1]?.init.body))).toEqual({ message_id: "m2" });
    expect(JSON.parse(String(calls[3]?.init.body))).toEqual([{ mapping: {} }]);
    for (const c of calls.filter((c) => c.init.method === "POST")) {
      expect((c.init.headers as Record<string, string>)[CSRF_HEADER]).toBe("1");
    }
  });

  it("changes the password with the revoke-keys choice", async () => {
    const calls = mockFetch(200, { id: "1", username: "a", is_admin: false });
    await api.changePassword("old one!", "new one!", true);
    await api.changePassword("new one!", "newer one", false);
    expect(calls.map((c) => [c.init.method, c.url])).toEqual([
      ["POST", "/api/auth/password"],
      ["POST", "/api/auth/password"],
    ]);
    expect(JSON.parse(String(calls[0]?.init.body))).toEqual({ current_password: "old one!", new_password: "new one!", revoke_api_keys: true });
    expect(JSON.parse(String(calls[1]?.init.body))).toEqual({ current_password: "new one!", new_password: "newer one", revoke_api_keys: false });
  });

  it("turns error bodies into ApiError and reports 401 outside /api/auth as signed out", async () => {
    mockFetch(429, { error: { message: "slow down", type: "rate_limit", param: null, code: "rate_limited" } });
    const err = await api.login("a", "b").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(429);
    expect((err as ApiError).message).toBe("slow down");
    expect((err as ApiError).code).toBe("rate_limited");

    let signedOut = 0;
    const off = onUnauthorized(() => signedOut++);
    mockFetch(401, { error: { message: "no session" } });
    await api.login("a", "b").catch(() => {});
    expect(signedOut).toBe(0); // a wrong password is not a lost session
    await api.keys().catch(() => {});
    expect(signedOut).toBe(1);
    off();
  });
});
