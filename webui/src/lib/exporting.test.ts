import { describe, expect, it } from "vitest";
import { EXPORT_FORMAT, exportFileName, toJson, toMarkdown } from "./exporting";
import type { Conversation, Message } from "./types";

function m(id: string, parent: string | null, role: Message["role"], content: string, sec: number): Message {
  return { id, parent_id: parent, role, content, status: "complete", created_at: new Date(sec * 1000).toISOString(), model: "smollm2" };
}

const CONV: Conversation = {
  id: "c1",
  title: "Rust 질문",
  system_prompt: "Answer briefly.",
  model: "smollm2",
  settings: { temperature: 0.7 },
  messages: [
    m("u1", null, "user", "What is a *borrow*?", 1),
    m("a1", "u1", "assistant", "A reference.\n\n```rust\nlet r = &x;\n```\n", 2),
    m("a1b", "u1", "assistant", "다른 답변", 3),
  ],
};

describe("export", () => {
  it("Markdown has the title, system prompt and the branch on screen", () => {
    expect(toMarkdown(CONV)).toBe(
      "# Rust 질문\n\n*Model: smollm2*\n\n## System\n\nAnswer briefly.\n\n## User\n\nWhat is a *borrow*?\n\n## Assistant\n\n다른 답변\n",
    );
    const first = toMarkdown(CONV, { u1: "a1" }, { user: "나", assistant: "어시스턴트", system: "시스템" });
    expect(first).toContain("## 나\n\nWhat is a *borrow*?\n\n## 어시스턴트\n\nA reference.\n\n```rust\nlet r = &x;\n```\n");
    expect(first).not.toContain("다른 답변");
  });

  it("JSON keeps every branch and round-trips", () => {
    const doc = JSON.parse(toJson(CONV));
    expect(doc.format).toBe(EXPORT_FORMAT);
    expect(doc.title).toBe("Rust 질문");
    expect(doc.settings).toEqual({ temperature: 0.7 });
    expect(doc.messages.map((x: Message) => [x.id, x.parent_id])).toEqual([
      ["u1", null],
      ["a1", "u1"],
      ["a1b", "u1"],
    ]);
    expect(doc.messages[1].content).toBe(CONV.messages[1]!.content);
  });

  it("file names keep Hangul and drop path characters", () => {
    expect(exportFileName("Rust 질문", "md")).toBe("Rust 질문.md");
    expect(exportFileName("a/b\\c:d", "json")).toBe("a b c d.json");
    expect(exportFileName("  ", "md")).toBe("conversation.md");
  });
});
