import { describe, expect, it } from "vitest";
import { effectiveModel, humanSize, modelDetails, modelLabel, stateKey } from "./models";
import type { ModelInfo } from "./types";
import { translator } from "../i18n";

const models: ModelInfo[] = [
  { id: "smollm2", name: "SmolLM2 135M", context_length: 4096, state: "loaded" },
  { id: "twin", name: "twin", context_length: 4096, state: "unloaded" },
  { id: "gemma", name: "", context_length: 1024, state: "loading" },
];

describe("the model picker", () => {
  it("uses the conversation's model when served, else the default", () => {
    expect(effectiveModel(models, "twin")).toBe("twin");
    expect(effectiveModel(models, null)).toBe("smollm2");
    expect(effectiveModel(models, undefined)).toBe("smollm2");
    expect(effectiveModel(models, "gone-model")).toBe("smollm2");
    expect(effectiveModel([], "twin")).toBeNull();
  });

  it("labels each model with its name and, unless loaded, its state in both languages", () => {
    const en = translator("en");
    const ko = translator("ko");
    expect(models.map((m) => modelLabel(m, en))).toEqual(["SmolLM2 135M", "twin (loads on first use)", "gemma (loading…)"]);
    expect(models.map((m) => modelLabel(m, ko))).toEqual(["SmolLM2 135M", "twin (처음 쓸 때 불러옴)", "gemma (불러오는 중…)"]);
    // A single-model server sends no state: nothing is added.
    expect(modelLabel({ id: "m", name: "M", context_length: 1 }, en)).toBe("M");
    expect(stateKey({ id: "m", name: "M", context_length: 1 })).toBeNull();
  });
});

describe("the picker's file details", () => {
  it("shows size, quantization and context for models the server has files for", () => {
    const en = translator("en");
    const pulled: ModelInfo = { id: "qwen3-8b", name: "Qwen3 8B", context_length: 40960, size_bytes: 5027783488, quant: "Q4_K_M" };
    expect(modelLabel(pulled, en)).toBe("Qwen3 8B — 4.7 GiB · Q4_K_M · 40960 ctx");
    expect(modelLabel({ ...pulled, state: "unloaded" }, en)).toBe("Qwen3 8B — 4.7 GiB · Q4_K_M · 40960 ctx (loads on first use)");
    expect(modelDetails({ context_length: 1 })).toBe("");
    expect(humanSize(98362432)).toBe("93.8 MiB");
    expect(humanSize(512)).toBe("512 B");
  });
});
