/**
 * The chat answer stream of `POST .../messages` and `POST .../regenerate`: typed events decoded from
 * the SSE frames. Unknown event names are ignored so the server can add some later.
 */
import { ApiError } from "./api";
import { readSse, type SseEvent } from "./sse";
import type { ApiErrorBody, Message, Usage } from "./types";

export type ChatStreamEvent =
  | { type: "user"; message: Message }
  | { type: "assistant"; message: Message }
  | { type: "delta"; content: string }
  | { type: "done"; message: Message; usage?: Usage }
  | { type: "error"; error: ApiErrorBody };

/** Decodes one SSE event into a chat event; null for an event this UI does not know. */
export function decodeChatEvent(e: SseEvent): ChatStreamEvent | null {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(e.data) as Record<string, unknown>;
  } catch {
    return e.event === "error" ? { type: "error", error: { message: e.data } } : null;
  }
  switch (e.event) {
    case "user":
    case "assistant":
      return { type: e.event, message: data.message as Message };
    case "delta":
      return { type: "delta", content: typeof data.content === "string" ? data.content : "" };
    case "done":
      return { type: "done", message: data.message as Message, usage: data.usage as Usage | undefined };
    case "error": {
      const err = data.error as ApiErrorBody | string | undefined;
      return { type: "error", error: typeof err === "string" ? { message: err } : err ?? { message: "error" } };
    }
    default:
      return null;
  }
}

/** Reads a chat stream response to its end; throws ApiError if the stream ended in `event: error`. */
export async function consumeChatStream(res: Response, onEvent: (e: ChatStreamEvent) => void): Promise<void> {
  if (!res.body) throw new ApiError(res.status, "empty response");
  let failure: ApiErrorBody | null = null;
  await readSse(res.body, (raw) => {
    const e = decodeChatEvent(raw);
    if (!e) return;
    if (e.type === "error") failure = e.error;
    onEvent(e);
  });
  const f = failure as ApiErrorBody | null;
  if (f) throw new ApiError(res.status, f.message, f.type, f.code);
}
