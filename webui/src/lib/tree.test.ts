import { describe, expect, it } from "vitest";
import { buildTree, currentPath, ROOT, selectMessage, selectSibling, siblings } from "./tree";
import type { Message } from "./types";

let clock = 0;
function msg(id: string, parent: string | null, role: Message["role"], content = id): Message {
  clock += 1000;
  return { id, parent_id: parent, role, content, status: "complete", created_at: new Date(clock).toISOString() };
}

/**
 * u1 -> a1 -> u2 -> a2
 *          \-> u2b (an edit of u2) -> a2b, a2c (a regenerate)
 * u1 -> a1b (a regenerate of a1)
 */
function conversation(): Message[] {
  clock = 0;
  const list = [
    msg("u1", null, "user"),
    msg("a1", "u1", "assistant"),
    msg("u2", "a1", "user"),
    msg("a2", "u2", "assistant"),
    msg("u2b", "a1", "user"),
    msg("a2b", "u2b", "assistant"),
    msg("a2c", "u2b", "assistant"),
    msg("a1b", "u1", "assistant"),
  ];
  // The server may list them in any order.
  return [list[7], list[3], list[0], list[5], list[1], list[6], list[2], list[4]] as Message[];
}

const ids = (ms: Message[]) => ms.map((m) => m.id);

describe("message tree", () => {
  it("follows the latest child at each fork by default", () => {
    const tree = buildTree(conversation());
    expect(ids(currentPath(tree, {}))).toEqual(["u1", "a1b"]);
  });

  it("reports siblings for the < i/n > control", () => {
    const tree = buildTree(conversation());
    expect(siblings(tree, "a1")).toEqual({ index: 0, count: 2, ids: ["a1", "a1b"] });
    expect(siblings(tree, "u2b")).toEqual({ index: 1, count: 2, ids: ["u2", "u2b"] });
    expect(siblings(tree, "u1")).toEqual({ index: 0, count: 1, ids: ["u1"] });
    expect(siblings(tree, "nope").count).toBe(0);
  });

  it("< and > switch branches and the path below follows the new branch's latest children", () => {
    const tree = buildTree(conversation());
    let sel = selectSibling(tree, {}, "a1b", -1);
    expect(sel).toEqual({ u1: "a1" });
    expect(ids(currentPath(tree, sel))).toEqual(["u1", "a1", "u2b", "a2c"]);
    sel = selectSibling(tree, sel, "u2b", -1);
    expect(ids(currentPath(tree, sel))).toEqual(["u1", "a1", "u2", "a2"]);
    // Clamped at the ends: no change.
    expect(selectSibling(tree, sel, "u2", -1)).toBe(sel);
    sel = selectSibling(tree, sel, "u2", +1);
    sel = selectSibling(tree, sel, "a2c", -1);
    expect(ids(currentPath(tree, sel))).toEqual(["u1", "a1", "u2b", "a2b"]);
    expect(siblings(tree, "a2b")).toMatchObject({ index: 0, count: 2 });
  });

  it("selectMessage pins the path through a new message (an edit creates a branch)", () => {
    const messages = conversation();
    const edited = msg("u2c", "a1", "user", "edited");
    const tree = buildTree([...messages, edited]);
    // The user was looking at the u2 branch, then edited u2: the new sibling is shown.
    const before = { u1: "a1", a1: "u2" };
    const sel = selectMessage(tree, before, "u2c");
    expect(ids(currentPath(tree, sel))).toEqual(["u1", "a1", "u2c"]);
    expect(siblings(tree, "u2c")).toEqual({ index: 2, count: 3, ids: ["u2", "u2b", "u2c"] });
    expect(sel[ROOT]).toBe("u1");
  });

  it("keeps server order for equal timestamps and survives a missing parent or a cycle", () => {
    const t = "2025-01-01T00:00:00Z";
    const base = { role: "user" as const, status: "complete" as const, created_at: t, content: "" };
    const tree = buildTree([
      { ...base, id: "x", parent_id: null },
      { ...base, id: "y", parent_id: null },
      { ...base, id: "orphan", parent_id: "gone" },
    ]);
    expect(siblings(tree, "y")).toEqual({ index: 1, count: 3, ids: ["x", "y", "orphan"] });
    const cyc = buildTree([
      { ...base, id: "p", parent_id: "q" },
      { ...base, id: "q", parent_id: "p" },
    ]);
    expect(currentPath(cyc, {}).length).toBeLessThanOrEqual(2);
  });
});
