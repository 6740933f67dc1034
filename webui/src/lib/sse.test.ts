import { describe, expect, it } from "vitest";
import { readSse, SseParser, type SseEvent } from "./sse";
import { consumeChatStream, type ChatStreamEvent } from "./stream";

const enc = new TextEncoder();

/** Feeds `bytes` to a parser cut at every given offset. */
function parseSplit(bytes: Uint8Array, cuts: number[]): SseEvent[] {
  const p = new SseParser();
  const out: SseEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(...p.push(bytes.slice(prev, c)));
    prev = c;
  }
  out.push(...p.end());
  return out;
}

const STREAM =
  'event: user\ndata: {"message":{"id":"u1"}}\n\n' +
  ": keep-alive\n\n" +
  'event: delta\ndata: {"content":"안녕"}\n\n' +
  'event: delta\r\ndata: {"content":"하세요 👋"}\r\n\r\n' +
  "data: line1\ndata: line2\n\n" +
  'event: done\ndata: {"message":{"id":"a1"}}\n\n';

const EXPECTED: SseEvent[] = [
  { event: "user", data: '{"message":{"id":"u1"}}' },
  { event: "delta", data: '{"content":"안녕"}' },
  { event: "delta", data: '{"content":"하세요 👋"}' },
  { event: "message", data: "line1\nline2" },
  { event: "done", data: '{"message":{"id":"a1"}}' },
];

describe("SseParser", () => {
  it("parses a whole stream in one chunk", () => {
    expect(parseSplit(enc.encode(STREAM), [])).toEqual(EXPECTED);
  });

  it("gives the same events for every split point, including inside multi-byte characters and CRLF", () => {
    const bytes = enc.encode(STREAM);
    for (let cut = 1; cut < bytes.length; cut++) {
      const events = parseSplit(bytes, [cut]);
      expect(events, `cut at ${cut}`).toEqual(EXPECTED);
    }
  });

  it("never shows a replacement character when each byte of Hangul arrives alone", () => {
    const bytes = enc.encode('event: delta\ndata: {"content":"한국어 스트리밍"}\n\n');
    const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
    const events = parseSplit(bytes, cuts);
    expect(events).toEqual([{ event: "delta", data: '{"content":"한국어 스트리밍"}' }]);
    expect(events[0]?.data).not.toContain("\uFFFD");
  });

  it("drops an unterminated trailing event and ignores unknown fields", () => {
    expect(parseSplit(enc.encode("retry: 10\nfoo: bar\ndata: a\n\ndata: partial"), [])).toEqual([
      { event: "message", data: "a" },
    ]);
  });

  it("handles a lone CR as a line ending and a leading BOM", () => {
    expect(parseSplit(enc.encode("\uFEFFevent: x\rdata: y\r\r"), [])).toEqual([{ event: "x", data: "y" }]);
  });
});

function bodyOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
      controller.close();
    },
  });
}

describe("chat stream", () => {
  it("readSse reads a body delivered in byte-split chunks", async () => {
    const bytes = enc.encode(STREAM);
    const chunks = [bytes.slice(0, 50), bytes.slice(50, 51), bytes.slice(51, 97), bytes.slice(97)];
    const events: SseEvent[] = [];
    await readSse(bodyOf(chunks), (e) => events.push(e));
    expect(events).toEqual(EXPECTED);
  });

  it("decodes chat events and concatenates Korean deltas split mid-character", async () => {
    const text =
      'event: assistant\ndata: {"message":{"id":"a1","parent_id":"u1","role":"assistant","content":"","status":"streaming","created_at":"2025-01-01T00:00:00Z"}}\n\n' +
      'event: delta\ndata: {"content":"대한"}\n\n' +
      'event: delta\ndata: {"content":"민국"}\n\n' +
      'event: done\ndata: {"message":{"id":"a1","content":"대한민국","status":"complete"},"usage":{"completion_tokens":2}}\n\n';
    const bytes = enc.encode(text);
    // Cut every 7 bytes: lands inside 3-byte syllables.
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.slice(i, i + 7));
    const events: ChatStreamEvent[] = [];
    await consumeChatStream(new Response(bodyOf(chunks)), (e) => events.push(e));
    expect(events.map((e) => e.type)).toEqual(["assistant", "delta", "delta", "done"]);
    const content = events.flatMap((e) => (e.type === "delta" ? [e.content] : [])).join("");
    expect(content).toBe("대한민국");
    const done = events[3];
    expect(done?.type === "done" && done.usage?.completion_tokens).toBe(2);
  });

  it("an error event rejects with the server's message", async () => {
    const text = 'event: error\ndata: {"error":{"message":"model overloaded","type":"server_error"}}\n\n';
    await expect(consumeChatStream(new Response(bodyOf([enc.encode(text)])), () => {})).rejects.toThrow(
      "model overloaded",
    );
  });
});
