/**
 * Client-side export of a conversation. Markdown is the branch on screen (what a reader expects to
 * get); JSON is the whole message tree with every branch, so nothing is lost.
 */
import { buildTree, currentPath, type Selections } from "./tree";
import type { Conversation } from "./types";

export interface ExportLabels {
  user: string;
  assistant: string;
  system: string;
}

const DEFAULT_LABELS: ExportLabels = { user: "User", assistant: "Assistant", system: "System" };

export function toMarkdown(conv: Conversation, selections: Selections = {}, labels: ExportLabels = DEFAULT_LABELS): string {
  const out: string[] = [`# ${conv.title || "Conversation"}`, ""];
  if (conv.model) out.push(`*Model: ${conv.model}*`, "");
  if (conv.system_prompt && conv.system_prompt.trim()) {
    out.push(`## ${labels.system}`, "", conv.system_prompt.trim(), "");
  }
  for (const m of currentPath(buildTree(conv.messages), selections)) {
    const who = m.role === "user" ? labels.user : m.role === "assistant" ? labels.assistant : labels.system;
    out.push(`## ${who}`, "", m.content.trimEnd(), "");
  }
  return out.join("\n").trimEnd() + "\n";
}

export const EXPORT_FORMAT = "daehwa.conversation.v1";

export function toJson(conv: Conversation): string {
  const doc = {
    format: EXPORT_FORMAT,
    id: conv.id,
    title: conv.title,
    model: conv.model,
    system_prompt: conv.system_prompt,
    settings: conv.settings,
    messages: conv.messages.map((m) => ({
      id: m.id,
      parent_id: m.parent_id,
      role: m.role,
      content: m.content,
      status: m.status,
      created_at: m.created_at,
      model: m.model ?? null,
    })),
  };
  return JSON.stringify(doc, null, 2) + "\n";
}

/** A file name from the title: keeps letters of any script (Hangul too), drops path characters. */
export function exportFileName(title: string, ext: "md" | "json"): string {
  const base = title.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, " ").replace(/\s+/g, " ").trim().slice(0, 80) || "conversation";
  return `${base}.${ext}`;
}

/** Starts a download of `text` in the browser. */
export function download(text: string, fileName: string, mime: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: `${mime};charset=utf-8` }));
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
