/** The settings page: language, theme, password, API keys, ChatGPT import, and (for admins) users. */
import { useEffect, useState } from "preact/hooks";
import { api } from "../lib/api";
import { parseChatGptExport } from "../lib/chatgpt";
import { chatHref } from "../lib/route";
import type { ThemeChoice } from "../lib/theme";
import type { ApiKey, CreatedApiKey, PullsState, User } from "../lib/types";
import { humanSize, modelDetails } from "../lib/models";
import { LANG_NAMES, LANGS, useI18n, type Lang } from "../i18n";
import { IconMenu } from "./Icons";
import { copyText } from "./Markdown";
import { EnergySection } from "./EnergySection";
import { PoliciesSection } from "./PoliciesSection";
import { SourceSearch } from "./SourceSearch";

interface Props {
  user: User;
  theme: ThemeChoice;
  setTheme: (c: ThemeChoice) => void;
  onOpenMenu: () => void;
  onImported: () => void;
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

export function SettingsPage({ user, theme, setTheme, onOpenMenu, onImported }: Props) {
  const { t, lang, setLang } = useI18n();
  return (
    <div class="settings" data-testid="settings">
      <header class="chat-head">
        <button class="icon only-mobile" onClick={onOpenMenu} aria-label={t("sidebar.openMenu")}>
          <IconMenu />
        </button>
        <h2 class="chat-title">{t("settings.title")}</h2>
        <a class="button" href={chatHref(null)}>
          {t("settings.back")}
        </a>
      </header>
      <div class="settings-body">
        <section>
          <h3>{t("settings.account")}</h3>
          <p>{t("settings.signedInAs", { username: user.username })}</p>
          <div class="row wrap">
            <label>
              {t("settings.language")}
              <select value={lang} onChange={(e) => setLang(e.currentTarget.value as Lang)} data-testid="language-select">
                {LANGS.map((l) => (
                  <option value={l}>{LANG_NAMES[l]}</option>
                ))}
              </select>
            </label>
            <label>
              {t("settings.theme")}
              <select value={theme} onChange={(e) => setTheme(e.currentTarget.value as ThemeChoice)} data-testid="theme-select">
                <option value="system">{t("settings.themeSystem")}</option>
                <option value="light">{t("settings.themeLight")}</option>
                <option value="dark">{t("settings.themeDark")}</option>
              </select>
            </label>
          </div>
        </section>
        <ChangePassword />
        <ApiKeys />
        <EnergySection />
        <Import onImported={onImported} />
        {user.is_admin && <Users me={user} />}
        {user.is_admin && <Models />}
        {user.is_admin && <PoliciesSection />}
        {user.is_admin && <SourceSearch />}
      </div>
    </div>
  );
}

function ChangePassword() {
  const { t } = useI18n();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [revokeKeys, setRevokeKeys] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await api.changePassword(current, next, revokeKeys);
      setDone(t(revokeKeys ? "settings.passwordChangedKeys" : "settings.passwordChanged"));
      setCurrent("");
      setNext("");
      setRevokeKeys(false);
      setError(null);
    } catch (err) {
      setDone(null);
      setError(errorText(err));
    }
  };

  return (
    <section data-testid="change-password">
      <h3>{t("settings.password")}</h3>
      <form class="row wrap" onSubmit={submit}>
        <input
          type="password"
          autoComplete="current-password"
          placeholder={t("settings.currentPassword")}
          aria-label={t("settings.currentPassword")}
          value={current}
          required
          onInput={(e) => setCurrent(e.currentTarget.value)}
          data-testid="current-password"
        />
        <input
          type="password"
          autoComplete="new-password"
          placeholder={t("settings.newPassword")}
          aria-label={t("settings.newPassword")}
          value={next}
          required
          onInput={(e) => setNext(e.currentTarget.value)}
          data-testid="changed-password"
        />
        <label class="inline">
          <input type="checkbox" checked={revokeKeys} onChange={(e) => setRevokeKeys(e.currentTarget.checked)} data-testid="revoke-keys" />{" "}
          {t("settings.revokeKeys")}
        </label>
        <button class="primary" type="submit" data-testid="change-password-submit">
          {t("settings.changePassword")}
        </button>
      </form>
      {done && <p class="muted small" data-testid="password-changed">{done}</p>}
      {error && <p class="error">{t("common.error", { message: error })}</p>}
    </section>
  );
}

function ApiKeys() {
  const { t } = useI18n();
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => api.keys().then(setKeys).catch((e) => setError(errorText(e)));
  useEffect(() => void load(), []);

  const create = async (e: Event) => {
    e.preventDefault();
    if (!name.trim()) return;
    try {
      setCreated(await api.createKey(name.trim()));
      setName("");
      setError(null);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const revoke = async (k: ApiKey) => {
    if (!confirm(t("settings.revokeConfirm", { name: k.name }))) return;
    try {
      await api.deleteKey(k.id);
      if (created?.id === k.id) setCreated(null);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section data-testid="api-keys">
      <h3>{t("settings.apiKeys")}</h3>
      <p class="muted small">{t("settings.apiKeysIntro")}</p>
      <form class="row" onSubmit={create}>
        <input placeholder={t("settings.keyName")} aria-label={t("settings.keyName")} value={name} onInput={(e) => setName(e.currentTarget.value)} data-testid="key-name" />
        <button class="primary" type="submit" disabled={!name.trim()} data-testid="create-key">
          {t("settings.createKey")}
        </button>
      </form>
      {created && (
        <div class="notice" data-testid="created-key">
          <p>{t("settings.keyCreated")}</p>
          <div class="row">
            <code class="secret">{created.key}</code>
            <button onClick={() => void copyText(created.key)}>{t("chat.copy")}</button>
            <button onClick={() => setCreated(null)}>{t("common.close")}</button>
          </div>
        </div>
      )}
      {error && <p class="error">{t("common.error", { message: error })}</p>}
      {keys.length === 0 ? (
        <p class="muted small">{t("settings.noKeys")}</p>
      ) : (
        <ul class="plain-list">
          {keys.map((k) => (
            <li class="row" data-testid="key-item">
              <span class="grow">
                {k.name} <code>{k.prefix}…</code>
              </span>
              <button onClick={() => void revoke(k)} data-testid="revoke-key">
                {t("settings.revoke")}
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Import({ onImported }: { onImported: () => void }) {
  const { t } = useI18n();
  const [parsed, setParsed] = useState<{ raw: unknown[]; conversations: number; messages: number } | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const choose = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    setParsed(null);
    setMessage(null);
    if (!file) return;
    try {
      const { raw, conversations } = parseChatGptExport(await file.text());
      setParsed({ raw, conversations: conversations.length, messages: conversations.reduce((n, c) => n + c.messages.length, 0) });
    } catch {
      setMessage(t("settings.importInvalid"));
    }
  };
  const submit = async () => {
    if (!parsed || busy) return;
    setBusy(true);
    try {
      const { imported } = await api.importChatGpt(parsed.raw);
      setMessage(t("settings.importDone", { count: imported }));
      setParsed(null);
      onImported();
    } catch (err) {
      setMessage(t("common.error", { message: errorText(err) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section data-testid="import">
      <h3>{t("settings.import")}</h3>
      <p class="muted small">{t("settings.importIntro")}</p>
      <label class="button">
        {t("settings.importChoose")}
        <input type="file" accept=".json,application/json" class="visually-hidden" onChange={choose} data-testid="import-file" />
      </label>
      {parsed && (
        <div class="row">
          <span>{t("settings.importPreview", { conversations: parsed.conversations, messages: parsed.messages })}</span>
          <button class="primary" onClick={() => void submit()} disabled={busy} data-testid="import-submit">
            {t("settings.importSubmit")}
          </button>
        </div>
      )}
      {message && <p data-testid="import-message">{message}</p>}
    </section>
  );
}

function Users({ me }: { me: User }) {
  const { t } = useI18n();
  const [users, setUsers] = useState<User[]>([]);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [isAdmin, setIsAdmin] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const load = () => api.users().then(setUsers).catch((e) => setError(errorText(e)));
  useEffect(() => void load(), []);

  const add = async (e: Event) => {
    e.preventDefault();
    try {
      await api.createUser(username.trim(), password, isAdmin);
      setUsername("");
      setPassword("");
      setIsAdmin(false);
      setError(null);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const remove = async (u: User) => {
    if (!confirm(t("settings.removeUserConfirm", { username: u.username }))) return;
    try {
      await api.deleteUser(u.id);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section data-testid="users">
      <h3>{t("settings.users")}</h3>
      <ul class="plain-list">
        {users.map((u) => (
          <li class="row" data-testid="user-item">
            <span class="grow">
              {u.username} {u.is_admin && <span class="badge">{t("settings.admin")}</span>} {u.id === me.id && t("settings.you")}
            </span>
            {u.id !== me.id && (
              <button onClick={() => void remove(u)} data-testid="remove-user">
                {t("settings.removeUser")}
              </button>
            )}
          </li>
        ))}
      </ul>
      <form class="row wrap" onSubmit={add}>
        <input placeholder={t("auth.username")} aria-label={t("auth.username")} value={username} required onInput={(e) => setUsername(e.currentTarget.value)} data-testid="new-username" />
        <input
          type="password"
          autoComplete="new-password"
          placeholder={t("auth.password")}
          aria-label={t("auth.password")}
          value={password}
          required
          onInput={(e) => setPassword(e.currentTarget.value)}
          data-testid="new-password"
        />
        <label class="inline">
          <input type="checkbox" checked={isAdmin} onChange={(e) => setIsAdmin(e.currentTarget.checked)} /> {t("settings.admin")}
        </label>
        <button class="primary" type="submit" data-testid="add-user">
          {t("settings.addUser")}
        </button>
      </form>
      {error && <p class="error">{t("common.error", { message: error })}</p>}
    </section>
  );
}

/** Admins: the models directory's models, and pulls from Hugging Face with their progress. */
function Models() {
  const { t } = useI18n();
  const [state, setState] = useState<PullsState | null>(null);
  const [model, setModel] = useState("");
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    api
      .pulls()
      .then(setState)
      .catch((e) => setError(errorText(e)));
  useEffect(() => void load(), []);
  const running = state?.pulls.some((p) => p.state === "running") ?? false;
  // Poll while a pull runs (every second; it stops when the pull ends or the page closes).
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => void load(), 1000);
    return () => {
      clearInterval(timer);
      // Once more after the pull ended: the listing then has the new model.
      void load();
    };
  }, [running]);

  const pull = async (e: Event) => {
    e.preventDefault();
    try {
      await api.startPull(model.trim());
      setModel("");
      setError(null);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section data-testid="models">
      <h3>{t("settings.models")}</h3>
      <p>{t("settings.modelsIntro", { dir: state?.models_dir ?? "" })}</p>
      {state && state.models.length === 0 && <p>{t("settings.noModels")}</p>}
      <ul class="plain-list">
        {state?.models.map((m) => (
          <li class="row" data-testid="local-model">
            <span class="grow">
              {m.name} — {modelDetails({ size_bytes: m.size_bytes, quant: m.quant, context_length: m.context_length ?? 0 })}
              {m.source && <span class="badge">{m.source}</span>}
            </span>
          </li>
        ))}
      </ul>
      <form class="row wrap" onSubmit={pull}>
        <input
          class="grow"
          placeholder={t("settings.pullPlaceholder")}
          aria-label={t("settings.pullPlaceholder")}
          value={model}
          required
          onInput={(e) => setModel(e.currentTarget.value)}
          data-testid="pull-model"
        />
        <button class="primary" type="submit" disabled={running} data-testid="pull-start">
          {t("settings.pull")}
        </button>
      </form>
      <ul class="plain-list">
        {state?.pulls.map((p) => (
          <li data-testid="pull-item" data-state={p.state}>
            {p.state === "running" && (
              <>
                <progress max={p.total_bytes || 1} value={p.done_bytes} />{" "}
                {t("settings.pullRunning", { model: p.model, file: p.file ?? "", done: humanSize(p.done_bytes), total: humanSize(p.total_bytes) })}
              </>
            )}
            {p.state === "done" && t("settings.pullDone", { model: p.model, name: p.name ?? "" })}
            {p.state === "failed" && <span class="error">{t("settings.pullFailed", { model: p.model, error: p.error ?? "" })}</span>}
          </li>
        ))}
      </ul>
      {error && <p class="error">{t("common.error", { message: error })}</p>}
    </section>
  );
}
