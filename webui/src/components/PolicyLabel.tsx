/** The chat view's label: the use-case policy the user's conversations run under (none: no label). */
import { useEffect, useState } from "preact/hooks";
import { policiesApi, type MyPolicy } from "../lib/policies";
import { useI18n, type MessageKey } from "../i18n";

interface Props {
  /** Changes when the label should be read again (after an answer: today's tokens moved). */
  refresh: unknown;
}

export function PolicyLabel({ refresh }: Props) {
  const { t } = useI18n();
  const [policy, setPolicy] = useState<MyPolicy | null>(null);
  useEffect(() => {
    let live = true;
    const read = () =>
      policiesApi
        .mine()
        .then((p) => live && setPolicy(p))
        .catch(() => live && setPolicy(null));
    void read();
    // The server counts an answer's tokens just after it ends: read once more a moment later.
    const again = setTimeout(() => void read(), 1500);
    return () => {
      live = false;
      clearTimeout(again);
    };
  }, [refresh]);
  if (!policy) return null;
  const lines: string[] = [t("policies.labelTitle", { name: policy.name })];
  const limit = (key: MessageKey, n: number | null) => n != null && lines.push(t(key, { n: String(n) }));
  limit("policies.labelPerAnswer", policy.max_tokens_per_answer);
  if (policy.max_tokens_per_day != null) {
    lines.push(t("policies.labelPerDay", { used: String(policy.tokens_today), n: String(policy.max_tokens_per_day) }));
  }
  if (policy.allowed_models.length > 0) lines.push(t("policies.labelModels", { models: policy.allowed_models.join(", ") }));
  return (
    <span class="badge policy-label" title={lines.join("\n")} data-testid="policy-label">
      {t("policies.label", { name: policy.name })}
    </span>
  );
}
