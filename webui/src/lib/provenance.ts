/** Answer provenance in the UI: the "marked" label's wording and the source search's results. */
import type { Translate } from "../i18n";
import type { AnswerMatch, Message } from "./types";

/** Whether a message shows the "marked" label: a finished answer generated with marks on. */
export function showsMark(m: Message, streaming: boolean): boolean {
  return m.role === "assistant" && !streaming && m.marked === true;
}

/** How close a match is, for people: "exact copy" or "87% similar" (never 100% unless exact). */
export function similarityText(m: AnswerMatch, t: Translate): string {
  if (m.exact) return t("settings.sourceExact");
  const percent = Math.min(99, Math.max(0, Math.floor(m.similarity * 100)));
  return t("settings.sourceSimilar", { percent });
}

/** Matches best first (the server's order, kept stable): exact copies, then by similarity. */
export function sortMatches(ms: AnswerMatch[]): AnswerMatch[] {
  return [...ms].sort((a, b) => Number(b.exact) - Number(a.exact) || b.similarity - a.similarity);
}
