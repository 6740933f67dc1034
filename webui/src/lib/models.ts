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

/** An option's text: the model's name (its id when it has none), then its state if not loaded. */
export function modelLabel(m: ModelInfo, t: (key: "conv.modelLoading" | "conv.modelUnloaded") => string): string {
  const name = m.name || m.id;
  const key = stateKey(m);
  return key ? `${name} (${t(key)})` : name;
}
