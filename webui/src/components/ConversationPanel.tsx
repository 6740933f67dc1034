/** Per-conversation settings: system prompt, model, temperature, and export. */
import { useEffect, useState } from "preact/hooks";
import type { ModelInfo } from "../lib/types";
import { effectiveModel, modelLabel } from "../lib/models";
import { useI18n } from "../i18n";

export interface ConversationOptions {
  system_prompt: string;
  model: string | null;
  temperature: number;
}

interface Props {
  options: ConversationOptions;
  models: ModelInfo[];
  canExport: boolean;
  onChange: (patch: Partial<ConversationOptions>) => void;
  onExport: (format: "md" | "json") => void;
}

export function ConversationPanel({ options, models, canExport, onChange, onExport }: Props) {
  const { t } = useI18n();
  const [prompt, setPrompt] = useState(options.system_prompt);
  const [temperature, setTemperature] = useState(options.temperature);
  useEffect(() => setPrompt(options.system_prompt), [options.system_prompt]);
  useEffect(() => setTemperature(options.temperature), [options.temperature]);

  return (
    <section class="conv-panel" data-testid="conversation-panel">
      <label>
        {t("conv.systemPrompt")}
        <textarea
          rows={3}
          value={prompt}
          placeholder={t("conv.systemPromptHint")}
          onInput={(e) => setPrompt(e.currentTarget.value)}
          onBlur={() => prompt !== options.system_prompt && onChange({ system_prompt: prompt })}
          data-testid="system-prompt"
        />
      </label>
      <div class="row wrap">
        <label>
          {t("conv.model")}
          {models.length === 0 ? (
            <span class="muted small">{t("conv.noModels")}</span>
          ) : (
            <select
              value={effectiveModel(models, options.model) ?? ""}
              onChange={(e) => onChange({ model: e.currentTarget.value })}
              data-testid="model-select"
            >
              {models.map((m) => (
                <option value={m.id}>{modelLabel(m, t)}</option>
              ))}
            </select>
          )}
        </label>
        <label class="grow">
          {t("conv.temperature")} <output>{temperature.toFixed(2)}</output>
          <input
            type="range"
            min={0}
            max={2}
            step={0.05}
            value={temperature}
            onInput={(e) => setTemperature(Number(e.currentTarget.value))}
            onChange={(e) => onChange({ temperature: Number(e.currentTarget.value) })}
            data-testid="temperature"
          />
        </label>
      </div>
      {canExport && (
        <div class="row">
          <button onClick={() => onExport("md")} data-testid="export-md">
            {t("conv.exportMarkdown")}
          </button>
          <button onClick={() => onExport("json")} data-testid="export-json">
            {t("conv.exportJson")}
          </button>
        </div>
      )}
    </section>
  );
}
