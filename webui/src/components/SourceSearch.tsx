/** Settings (admins): find the stored answers a pasted text is an exact or edited copy of. */
import { useState } from "preact/hooks";
import { api } from "../lib/api";
import { similarityText, sortMatches } from "../lib/provenance";
import { chatHref } from "../lib/route";
import type { AnswerMatch } from "../lib/types";
import { useI18n } from "../i18n";

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function SourceSearch() {
  const { t } = useI18n();
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [results, setResults] = useState<AnswerMatch[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  const search = async (e: Event) => {
    e.preventDefault();
    if (!text.trim()) return;
    setBusy(true);
    setError(null);
    try {
      setResults(sortMatches(await api.matchAnswers(text)));
    } catch (err) {
      setResults(null);
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section data-testid="source-search">
      <h3>{t("settings.source")}</h3>
      <p class="muted small">{t("settings.sourceIntro")}</p>
      <form onSubmit={search}>
        <textarea
          rows={5}
          class="source-text"
          value={text}
          placeholder={t("settings.sourcePlaceholder")}
          onInput={(e) => setText(e.currentTarget.value)}
          data-testid="source-text"
        />
        <div class="row">
          <button type="submit" disabled={busy || !text.trim()} data-testid="source-submit">
            {t("settings.sourceSearch")}
          </button>
        </div>
      </form>
      {error && <p class="error">{t("common.error", { message: error })}</p>}
      {results && results.length === 0 && <p class="muted small" data-testid="source-none">{t("settings.sourceNone")}</p>}
      {results && results.length > 0 && (
        <ul class="source-results">
          {results.map((m) => (
            <li data-testid="source-result">
              <a href={chatHref(m.conversation_id)}>{t("settings.sourceResult", { owner: m.owner })}</a>{" "}
              <span class="muted small">{similarityText(m, t)}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
