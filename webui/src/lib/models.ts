/** The model picker's logic: which model a conversation uses and how each choice is labelled. */
import type { ModelInfo } from "./types";

/**
 * The model a conversation answers with: its stored model when the server still serves it,
 * else the server's default (the first listed), as the server itself falls back.
 */
export function effectiveModel(models: ModelInfo[], stored: string | null | undefined): string | null {
  if (stored && models.some((m) => m.id === stored)) return stored;
  return models[0]?.id ?? null;
}

/** The i18n key describing a model's state, or null when there is nothing to say. */
export function stateKey(m: ModelInfo): "conv.modelLoading" | "conv.modelUnloaded" | null {
  if (m.state === "loading") return "conv.modelLoading";
  if (m.state === "unloaded") return "conv.modelUnloaded";
  return null;
}

/** `98362432` => `93.8 MiB`. */
export function humanSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u + 1 < units.length) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${bytes} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** What the picker adds after a model's name when the server knows its file: size, quantization, context. */
export function modelDetails(m: Pick<ModelInfo, "size_bytes" | "quant" | "context_length">): string {
  if (m.size_bytes === undefined || m.size_bytes === null) return "";
  const parts = [humanSize(m.size_bytes)];
  if (m.quant) parts.push(m.quant);
  if (m.context_length) parts.push(`${m.context_length} ctx`);
  return parts.join(" · ");
}

/** An option's text: the model's name (its id when it has none), its file's details when known,
 * then its state if not loaded. */
export function modelLabel(m: ModelInfo, t: (key: "conv.modelLoading" | "conv.modelUnloaded") => string): string {
  const details = modelDetails(m);
  const name = details ? `${m.name || m.id} — ${details}` : m.name || m.id;
  const key = stateKey(m);
  return key ? `${name} (${t(key)})` : name;
}
