/** Sign-in, or on a server without users the first-run form that creates the admin account. */
import { useState } from "preact/hooks";
import { api, ApiError } from "../lib/api";
import type { User } from "../lib/types";
import { LANG_NAMES, LANGS, useI18n, type Lang } from "../i18n";

const MIN_PASSWORD = 8;

export function AuthPage({ setup, onSignedIn }: { setup: boolean; onSignedIn: (u: User) => void }) {
  const { t, lang, setLang } = useI18n();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [repeat, setRepeat] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setError(null);
    if (setup) {
      if (password.length < MIN_PASSWORD) return setError(t("auth.passwordTooShort", { min: MIN_PASSWORD }));
      if (password !== repeat) return setError(t("auth.passwordMismatch"));
    }
    setBusy(true);
    try {
      const user = setup ? await api.setup(username.trim(), password) : await api.login(username.trim(), password);
      onSignedIn(user);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setError(t("auth.wrong"));
      else if (err instanceof ApiError && err.status === 429) setError(t("auth.rateLimited"));
      else if (err instanceof ApiError && err.status === 0) setError(t("common.networkError"));
      else setError(t("common.error", { message: err instanceof Error ? err.message : String(err) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="center-page">
      <form class="auth-card" onSubmit={submit} data-testid={setup ? "setup-form" : "login-form"}>
        <h1>{setup ? t("auth.setupTitle") : t("auth.signInTitle")}</h1>
        {setup && <p class="muted">{t("auth.setupIntro")}</p>}
        <label>
          {t("auth.username")}
          <input
            name="username"
            autoComplete="username"
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label>
          {t("auth.password")}
          <input
            name="password"
            type="password"
            autoComplete={setup ? "new-password" : "current-password"}
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        {setup && (
          <label>
            {t("auth.passwordRepeat")}
            <input
              name="password-repeat"
              type="password"
              autoComplete="new-password"
              required
              value={repeat}
              onInput={(e) => setRepeat(e.currentTarget.value)}
            />
          </label>
        )}
        {error && (
          <p class="error" role="alert" data-testid="auth-error">
            {error}
          </p>
        )}
        <button class="primary" type="submit" disabled={busy}>
          {setup ? t("auth.setupSubmit") : t("auth.signIn")}
        </button>
        <select
          class="lang-select"
          aria-label={t("settings.language")}
          value={lang}
          onChange={(e) => setLang(e.currentTarget.value as Lang)}
          data-testid="auth-lang"
        >
          {LANGS.map((l) => (
            <option value={l}>{LANG_NAMES[l]}</option>
          ))}
        </select>
      </form>
    </div>
  );
}
