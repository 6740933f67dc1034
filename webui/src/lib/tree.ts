/**
 * The message tree of a conversation. The server returns every message of every branch (each with its
 * parent); editing a user message or regenerating an answer adds a sibling. The UI shows one path from
 * the root: at each fork it follows the child the user picked with `< 1/2 >`, else the latest child.
 */
import type { Message } from "./types";

/** Parent key of root messages (parent_id null). */
export const ROOT = "";

/** Which child the user picked at each fork: parent key (ROOT for the first level) -> child id. */
export type Selections = Record<string, string>;

export interface MessageTree {
  byId: Map<string, Message>;
  /** Children of each parent key, oldest first. */
  children: Map<string, Message[]>;
}

function parentKey(m: Pick<Message, "parent_id">): string {
  return m.parent_id ?? ROOT;
}

/** Builds the tree. Siblings are ordered by creation time, ties kept in server order. */
export function buildTree(messages: readonly Message[]): MessageTree {
  const byId = new Map<string, Message>();
  const order = new Map<string, number>();
  messages.forEach((m, i) => {
    byId.set(m.id, m);
    order.set(m.id, i);
  });
  const children = new Map<string, Message[]>();
  for (const m of messages) {
    // A message whose parent is missing (should not happen) is shown as a root rather than lost.
    const key = m.parent_id !== null && byId.has(m.parent_id) ? m.parent_id : ROOT;
    const list = children.get(key);
    if (list) list.push(m);
    else children.set(key, [m]);
  }
  const time = (m: Message) => {
    const t = Date.parse(m.created_at);
    return Number.isNaN(t) ? 0 : t;
  };
  for (const list of children.values()) {
    list.sort((a, b) => time(a) - time(b) || (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
  }
  return { byId, children };
}

function keyInTree(tree: MessageTree, m: Message): string {
  return m.parent_id !== null && tree.byId.has(m.parent_id) ? m.parent_id : ROOT;
}

/** The path shown: from the root, the selected child at each fork, else the latest one. */
export function currentPath(tree: MessageTree, selections: Selections): Message[] {
  const path: Message[] = [];
  const seen = new Set<string>();
  let key = ROOT;
  for (;;) {
    const kids = tree.children.get(key);
    if (!kids || kids.length === 0) break;
    const picked = selections[key];
    const next = kids.find((k) => k.id === picked) ?? kids[kids.length - 1];
    if (!next || seen.has(next.id)) break; // a cycle would be a server bug; never loop
    seen.add(next.id);
    path.push(next);
    key = next.id;
  }
  return path;
}

export interface SiblingInfo {
  /** 0-based position among its siblings. */
  index: number;
  count: number;
  ids: string[];
}

/** Where a message stands among its siblings (for the `< 1/2 >` control). */
export function siblings(tree: MessageTree, messageId: string): SiblingInfo {
  const m = tree.byId.get(messageId);
  if (!m) return { index: 0, count: 0, ids: [] };
  const ids = (tree.children.get(keyInTree(tree, m)) ?? []).map((k) => k.id);
  return { index: ids.indexOf(messageId), count: ids.length, ids };
}

/**
 * Moves the fork of `messageId` by `delta` siblings (-1 for `<`, +1 for `>`), clamped at the ends.
 * Returns new selections; the path below the fork then follows that sibling's own latest children.
 */
export function selectSibling(tree: MessageTree, selections: Selections, messageId: string, delta: number): Selections {
  const m = tree.byId.get(messageId);
  if (!m) return selections;
  const info = siblings(tree, messageId);
  const index = Math.max(0, Math.min(info.count - 1, info.index + delta));
  const id = info.ids[index];
  if (id === undefined || index === info.index) return selections;
  return { ...selections, [keyInTree(tree, m)]: id };
}

/** Selections that make the path go through `messageId` (used when a new message arrives). */
export function selectMessage(tree: MessageTree, selections: Selections, messageId: string): Selections {
  const next = { ...selections };
  let m = tree.byId.get(messageId);
  const seen = new Set<string>();
  while (m && !seen.has(m.id)) {
    seen.add(m.id);
    next[keyInTree(tree, m)] = m.id;
    m = m.parent_id !== null ? tree.byId.get(m.parent_id) : undefined;
  }
  return next;
}

/** Parent key helper exported for callers that build selections themselves. */
export { parentKey };
