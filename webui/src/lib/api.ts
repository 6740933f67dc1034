/**
 * The JSON API client. The UI uses exactly the public routes (issue 4 point 8): the session is the
 * HttpOnly cookie the server sets, and every state-changing request carries `X-Daehwa-CSRF: 1`, which
 * a cross-site form cannot send, so the server can reject forged requests.
 */
import type {
  ApiErrorBody,
  ApiKey,
  AuthState,
  Conversation,
  ConversationSettings,
  ConversationSummary,
  CreatedApiKey,
  EnergyReport,
  AnswerMatch,
  ModelInfo,
  User,
} from "./types";
import type { Pull, PullsState } from "./types";

/** An error answer of the API (`{"error": {...}}`) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type?: string,
    readonly code?: string | null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const CSRF_HEADER = "X-Daehwa-CSRF";

/** Listeners told when any request answers 401, so the app can show the sign-in page. */
const unauthorizedListeners = new Set<() => void>();
export function onUnauthorized(listener: () => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

/** Headers for a request; state-changing methods get the CSRF header. */
export function requestHeaders(method: string, hasBody: boolean): Record<string, string> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers[CSRF_HEADER] = "1";
  if (hasBody) headers["Content-Type"] = "application/json";
  return headers;
}

/** Turns a non-2xx response into an ApiError, reading the server's error body when there is one. */
export async function errorFromResponse(res: Response): Promise<ApiError> {
  let body: { error?: ApiErrorBody } | null = null;
  try {
    body = (await res.json()) as { error?: ApiErrorBody };
  } catch {
    body = null;
  }
  const e = body?.error;
  return new ApiError(res.status, e?.message || res.statusText || `HTTP ${res.status}`, e?.type, e?.code);
}

/** Sends a request; `raw` returns the Response itself (for the event streams). */
export async function request(
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal,
): Promise<Response> {
  const hasBody = body !== undefined;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: requestHeaders(method, hasBody),
      body: hasBody ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, err instanceof Error ? err.message : String(err));
  }
  if (!res.ok) {
    const error = await errorFromResponse(res);
    // A 401 on login means "wrong password", not "signed out".
    if (res.status === 401 && !path.startsWith("/api/auth/")) unauthorizedListeners.forEach((l) => l());
    throw error;
  }
  return res;
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await request(method, path, body);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** Lists may come back as `{items: [...]}` or as a bare array; accept both. */
function listOf<T>(value: unknown, key: string): T[] {
  if (Array.isArray(value)) return value as T[];
  if (value && typeof value === "object") {
    const inner = (value as Record<string, unknown>)[key];
    if (Array.isArray(inner)) return inner as T[];
  }
  return [];
}

export interface NewConversation {
  title?: string;
  system_prompt?: string;
  model?: string;
  settings?: ConversationSettings;
}

export type ConversationPatch = Partial<Pick<Conversation, "title" | "system_prompt" | "model" | "settings">>;

export const api = {
  authState: () => json<AuthState>("GET", "/api/auth/state"),
  setup: (username: string, password: string) => json<User>("POST", "/api/auth/setup", { username, password }),
  login: (username: string, password: string) => json<User>("POST", "/api/auth/login", { username, password }),
  logout: () => json<void>("POST", "/api/auth/logout"),
  /** Ends the user's other sessions; with `revokeApiKeys` also revokes all their API keys. */
  changePassword: (currentPassword: string, newPassword: string, revokeApiKeys: boolean) =>
    json<User>("POST", "/api/auth/password", {
      current_password: currentPassword,
      new_password: newPassword,
      revoke_api_keys: revokeApiKeys,
    }),

  models: async () => listOf<ModelInfo>(await json<unknown>("GET", "/api/models"), "models"),

  conversations: async (q?: string) => {
    const query = q && q.trim() ? `?q=${encodeURIComponent(q.trim())}` : "";
    return listOf<ConversationSummary>(await json<unknown>("GET", `/api/conversations${query}`), "conversations");
  },
  createConversation: (c: NewConversation) => json<Conversation>("POST", "/api/conversations", c),
  conversation: (id: string) => json<Conversation>("GET", `/api/conversations/${encodeURIComponent(id)}`),
  patchConversation: (id: string, patch: ConversationPatch) =>
    json<Conversation>("PATCH", `/api/conversations/${encodeURIComponent(id)}`, patch),
  deleteConversation: (id: string) => json<void>("DELETE", `/api/conversations/${encodeURIComponent(id)}`),

  /** Starts an answer: the response body is the `text/event-stream` (see sse.ts / stream.ts). */
  postMessage: (id: string, parentId: string | null, content: string, signal: AbortSignal) =>
    request("POST", `/api/conversations/${encodeURIComponent(id)}/messages`, { parent_id: parentId, content }, signal),
  regenerate: (id: string, messageId: string, signal: AbortSignal) =>
    request("POST", `/api/conversations/${encodeURIComponent(id)}/regenerate`, { message_id: messageId }, signal),

  keys: async () => listOf<ApiKey>(await json<unknown>("GET", "/api/keys"), "keys"),
  createKey: (name: string) => json<CreatedApiKey>("POST", "/api/keys", { name }),
  deleteKey: (id: string) => json<void>("DELETE", `/api/keys/${encodeURIComponent(id)}`),

  users: async () => listOf<User>(await json<unknown>("GET", "/api/users"), "users"),
  createUser: (username: string, password: string, is_admin: boolean) =>
    json<User>("POST", "/api/users", { username, password, is_admin }),
  deleteUser: (id: string) => json<void>("DELETE", `/api/users/${encodeURIComponent(id)}`),

  energy: () => json<EnergyReport>("GET", "/api/energy"),
  /** Admins: the models directory's models and the pulls from Hugging Face. */
  pulls: () => json<PullsState>("GET", "/api/admin/pulls"),
  startPull: (model: string) => json<Pull>("POST", "/api/admin/pulls", { model }),

  /** Admins: the stored answers a text is an exact or edited copy of, best first. */
  matchAnswers: async (text: string) =>
    listOf<AnswerMatch>(await json<unknown>("POST", "/api/provenance/match", { text }), "matches"),

  importChatGpt: (conversations: unknown[]) => json<{ imported: number }>("POST", "/api/import", conversations),
};
