import { describe, expect, it } from "vitest";
import { translator } from "../i18n";
import { showsMark, similarityText, sortMatches } from "./provenance";
import type { AnswerMatch, Message } from "./types";

const msg = (over: Partial<Message>): Message => ({
  id: "1",
  parent_id: null,
  role: "assistant",
  content: "text",
  status: "complete",
  created_at: "2026-12-05T00:00:00.000Z",
  ...over,
});

const match = (over: Partial<AnswerMatch>): AnswerMatch => ({
  conversation_id: "7",
  message_id: "9",
  owner_id: "2",
  owner: "bob",
  similarity: 0.5,
  exact: false,
  ...over,
});

describe("the marked label", () => {
  it("shows on finished answers generated with marks on only", () => {
    expect(showsMark(msg({ marked: true }), false)).toBe(true);
    expect(showsMark(msg({ marked: true }), true)).toBe(false);
    expect(showsMark(msg({ marked: false }), false)).toBe(false);
    expect(showsMark(msg({}), false)).toBe(false);
    expect(showsMark(msg({ role: "user", marked: true }), false)).toBe(false);
  });

  it("is explained in Korean and English", () => {
    expect(translator("en")("chat.markedTooltip")).toContain("watermark");
    expect(translator("ko")("chat.markedTooltip")).toContain("워터마크");
  });
});

describe("source search results", () => {
  it("say exact or how similar, in both languages", () => {
    const en = translator("en");
    const ko = translator("ko");
    expect(similarityText(match({ exact: true, similarity: 1 }), en)).toBe("exact copy");
    expect(similarityText(match({ similarity: 0.874 }), en)).toBe("87% similar");
    expect(similarityText(match({ similarity: 0.999 }), en)).toBe("99% similar");
    expect(similarityText(match({ similarity: 0.5 }), ko)).toBe("50% 유사");
    expect(similarityText(match({ exact: true, similarity: 1 }), ko)).toBe("완전히 같음");
  });

  it("come best first", () => {
    const sorted = sortMatches([
      match({ message_id: "a", similarity: 0.4 }),
      match({ message_id: "b", similarity: 1, exact: true }),
      match({ message_id: "c", similarity: 0.8 }),
    ]);
    expect(sorted.map((m) => m.message_id)).toEqual(["b", "c", "a"]);
  });
});
