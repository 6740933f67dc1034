/**
 * Reading a ChatGPT data export (`conversations.json`). The file is sent to the server as is
 * (`POST /api/import`); the UI reads it first to refuse a wrong file and to show what will be imported.
 * The mapping here is the reference for how the export's tree becomes daehwa messages:
 *
 * - each conversation has `mapping: {node_id: {id, message, parent, children}}` and `current_node`;
 * - nodes without a message, system and tool messages, hidden messages and messages with no text are
 *   dropped, and their children are re-attached to the nearest kept ancestor (so branches survive);
 * - text is `content.parts` (strings only; images and other objects are skipped) joined with "\n",
 *   or `content.text` for `code`/`execution_output`-like content.
 */
import type { MessageRole } from "./types";

export interface ImportedMessage {
  id: string;
  parent_id: string | null;
  role: Extract<MessageRole, "user" | "assistant">;
  content: string;
  /** ISO 8601, or null when the export has no time. */
  created_at: string | null;
  model: string | null;
}

export interface ImportedConversation {
  title: string;
  created_at: string | null;
  updated_at: string | null;
  messages: ImportedMessage[];
  /** The last message of the branch ChatGPT showed, mapped to a kept message. */
  current_message_id: string | null;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function isoTime(v: unknown): string | null {
  return typeof v === "number" && Number.isFinite(v) ? new Date(v * 1000).toISOString() : null;
}

function textOf(message: Json): string {
  const content = message.content;
  if (!isObj(content)) return "";
  if (Array.isArray(content.parts)) {
    return content.parts.filter((p): p is string => typeof p === "string").join("\n");
  }
  return typeof content.text === "string" ? content.text : "";
}

function keptMessage(node: Json): ImportedMessage | null {
  const message = node.message;
  if (!isObj(message)) return null;
  const author = isObj(message.author) ? message.author : {};
  const role = author.role;
  if (role !== "user" && role !== "assistant") return null;
  const metadata = isObj(message.metadata) ? message.metadata : {};
  if (metadata.is_visually_hidden_from_conversation === true) return null;
  const content = textOf(message);
  if (!content.trim()) return null;
  return {
    id: String(message.id ?? node.id),
    parent_id: null,
    role,
    content,
    created_at: isoTime(message.create_time),
    model: typeof metadata.model_slug === "string" ? metadata.model_slug : null,
  };
}

/** Maps one exported conversation; throws if it has no `mapping`. */
export function mapConversation(conv: unknown): ImportedConversation {
  if (!isObj(conv) || !isObj(conv.mapping)) throw new Error("not a ChatGPT conversation");
  const mapping = conv.mapping as Record<string, unknown>;
  const kept = new Map<string, ImportedMessage>();
  for (const [nodeId, node] of Object.entries(mapping)) {
    if (!isObj(node)) continue;
    const m = keptMessage({ id: nodeId, ...node });
    if (m) kept.set(nodeId, m);
  }
  /** Nearest kept ancestor of a node (the node itself excluded), or null at the root. */
  const keptAncestor = (nodeId: string): string | null => {
    const seen = new Set<string>([nodeId]);
    let cur = mapping[nodeId];
    while (isObj(cur) && typeof cur.parent === "string" && !seen.has(cur.parent)) {
      const parent = cur.parent;
      seen.add(parent);
      if (kept.has(parent)) return parent;
      cur = mapping[parent];
    }
    return null;
  };
  const messages: ImportedMessage[] = [];
  for (const [nodeId, m] of kept) {
    const parentNode = keptAncestor(nodeId);
    messages.push({ ...m, parent_id: parentNode ? (kept.get(parentNode)?.id ?? null) : null });
  }
  // Parents before children, siblings by time: the order the server can insert them in.
  const depth = new Map<string, number>();
  const depthOf = (nodeId: string): number => {
    const known = depth.get(nodeId);
    if (known !== undefined) return known;
    const p = keptAncestor(nodeId);
    const d = p === null ? 0 : depthOf(p) + 1;
    depth.set(nodeId, d);
    return d;
  };
  const nodeOf = new Map(Array.from(kept, ([nodeId, m]) => [m.id, nodeId]));
  messages.sort(
    (a, b) =>
      depthOf(nodeOf.get(a.id) ?? "") - depthOf(nodeOf.get(b.id) ?? "") ||
      (a.created_at ?? "").localeCompare(b.created_at ?? ""),
  );
  let current: string | null = null;
  if (typeof conv.current_node === "string") {
    const c = kept.has(conv.current_node) ? conv.current_node : keptAncestor(conv.current_node);
    current = c ? (kept.get(c)?.id ?? null) : null;
  }
  return {
    title: typeof conv.title === "string" && conv.title.trim() ? conv.title : "",
    created_at: isoTime(conv.create_time),
    updated_at: isoTime(conv.update_time),
    messages,
    current_message_id: current,
  };
}

/** Parses the file text; throws if it is not a ChatGPT export (an array of conversations with mappings). */
export function parseChatGptExport(text: string): { raw: unknown[]; conversations: ImportedConversation[] } {
  const raw: unknown = JSON.parse(text);
  if (!Array.isArray(raw)) throw new Error("not an array");
  return { raw, conversations: raw.map(mapConversation) };
}
