import { describe, expect, it } from "vitest";
import { mapConversation, parseChatGptExport } from "./chatgpt";
import { buildTree, currentPath, siblings } from "./tree";
import type { Message } from "./types";

/** A conversation shaped like ChatGPT's export: a null root, a hidden system node, an edit branch, a tool call. */
const EXPORT = [
  {
    title: "서울 여행",
    create_time: 1700000000.5,
    update_time: 1700000100,
    current_node: "n-a2",
    mapping: {
      "root": { id: "root", message: null, parent: null, children: ["n-sys"] },
      "n-sys": {
        id: "n-sys",
        message: {
          id: "m-sys",
          author: { role: "system" },
          content: { content_type: "text", parts: [""] },
          metadata: { is_visually_hidden_from_conversation: true },
          create_time: null,
        },
        parent: "root",
        children: ["n-u1", "n-u1b"],
      },
      "n-u1": {
        id: "n-u1",
        message: {
          id: "m-u1",
          author: { role: "user" },
          content: { content_type: "text", parts: ["Where to go in Seoul?"] },
          create_time: 1700000001,
          metadata: {},
        },
        parent: "n-sys",
        children: ["n-a1"],
      },
      "n-a1": {
        id: "n-a1",
        message: {
          id: "m-a1",
          author: { role: "assistant" },
          content: { content_type: "text", parts: ["Gyeongbokgung."] },
          create_time: 1700000002,
          metadata: { model_slug: "gpt-4o" },
        },
        parent: "n-u1",
        children: [],
      },
      "n-u1b": {
        id: "n-u1b",
        message: {
          id: "m-u1b",
          author: { role: "user" },
          content: { content_type: "multimodal_text", parts: [{ content_type: "image_asset_pointer" }, "서울에서 어디 갈까?"] },
          create_time: 1700000010,
        },
        parent: "n-sys",
        children: ["n-tool"],
      },
      "n-tool": {
        id: "n-tool",
        message: {
          id: "m-tool",
          author: { role: "tool", name: "browser" },
          content: { content_type: "text", parts: ["search results"] },
          create_time: 1700000011,
        },
        parent: "n-u1b",
        children: ["n-a2"],
      },
      "n-a2": {
        id: "n-a2",
        message: {
          id: "m-a2",
          author: { role: "assistant" },
          content: { content_type: "text", parts: ["경복궁과 ", "북촌 한옥마을."] },
          create_time: 1700000012,
          metadata: { model_slug: "gpt-4o" },
        },
        parent: "n-tool",
        children: [],
      },
    },
  },
];

describe("ChatGPT export mapping", () => {
  it("maps the node tree to messages, skipping empty/system/tool nodes and re-parenting their children", () => {
    const { conversations, raw } = parseChatGptExport(JSON.stringify(EXPORT));
    expect(raw).toHaveLength(1);
    const c = conversations[0]!;
    expect(c.title).toBe("서울 여행");
    expect(c.created_at).toBe(new Date(1700000000500).toISOString());
    expect(c.messages.map((m) => [m.id, m.parent_id, m.role])).toEqual([
      ["m-u1", null, "user"],
      ["m-u1b", null, "user"],
      ["m-a1", "m-u1", "assistant"],
      ["m-a2", "m-u1b", "assistant"],
    ]);
    expect(c.messages.find((m) => m.id === "m-u1b")?.content).toBe("서울에서 어디 갈까?");
    expect(c.messages.find((m) => m.id === "m-a2")?.content).toBe("경복궁과 \n북촌 한옥마을.");
    expect(c.messages.find((m) => m.id === "m-a2")?.model).toBe("gpt-4o");
    expect(c.current_message_id).toBe("m-a2");
  });

  it("keeps the edit as a branch the UI's tree shows with < 2/2 >", () => {
    const c = mapConversation(EXPORT[0]);
    const messages: Message[] = c.messages.map((m) => ({
      ...m,
      status: "complete",
      created_at: m.created_at ?? "",
    }));
    const tree = buildTree(messages);
    expect(currentPath(tree, {}).map((m) => m.id)).toEqual(["m-u1b", "m-a2"]);
    expect(siblings(tree, "m-u1b")).toMatchObject({ index: 1, count: 2 });
  });

  it("maps current_node on a dropped node to its nearest kept ancestor", () => {
    const c = mapConversation({ ...EXPORT[0], current_node: "n-tool" });
    expect(c.current_message_id).toBe("m-u1b");
  });

  it("rejects files that are not ChatGPT exports", () => {
    expect(() => parseChatGptExport('{"a":1}')).toThrow();
    expect(() => parseChatGptExport("[{}]")).toThrow();
    expect(() => parseChatGptExport("not json")).toThrow();
  });
});
