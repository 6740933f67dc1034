/**
 * The root: language and theme, the auth state (sign-in / first-run setup / the app), the sidebar
 * with the conversation list, and the routed pane (a chat or the settings page).
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, onUnauthorized } from "../lib/api";
import { chatHref, navigate, useRoute } from "../lib/route";
import { applyTheme, storedTheme, storeTheme, type ThemeChoice } from "../lib/theme";
import type { AuthState, ConversationSummary, ModelInfo, User } from "../lib/types";
import { I18nContext, initialLang, storeLang, translator, type I18n, type Lang } from "../i18n";
import { AuthPage } from "./AuthPage";
import { Chat } from "./Chat";
import { SettingsPage } from "./Settings";
import { Sidebar } from "./Sidebar";

export function App() {
  const [lang, setLangState] = useState<Lang>(initialLang);
  const i18n = useMemo<I18n>(
    () => ({
      lang,
      t: translator(lang),
      setLang: (l: Lang) => {
        storeLang(l);
        setLangState(l);
      },
    }),
    [lang],
  );
  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);

  const [theme, setThemeState] = useState<ThemeChoice>(storedTheme);
  useEffect(() => applyTheme(theme), [theme]);
  const setTheme = useCallback((c: ThemeChoice) => {
    storeTheme(c);
    setThemeState(c);
  }, []);

  const [auth, setAuth] = useState<AuthState | null>(null);
  const [authError, setAuthError] = useState<string | null>(null);
  const loadAuth = useCallback(() => {
    api
      .authState()
      .then((s) => {
        setAuth(s);
        setAuthError(null);
      })
      .catch((e: unknown) => setAuthError(e instanceof ApiError ? e.message : String(e)));
  }, []);
  useEffect(loadAuth, [loadAuth]);
  useEffect(() => onUnauthorized(() => setAuth((a) => (a ? { ...a, user: null } : a))), []);

  let body;
  if (auth === null) {
    body = (
      <div class="center-page" data-testid="loading">
        {authError ? i18n.t("common.error", { message: authError }) : i18n.t("common.loading")}
      </div>
    );
  } else if (!auth.user) {
    body = <AuthPage setup={auth.needs_setup} onSignedIn={(user) => setAuth({ needs_setup: false, user })} />;
  } else {
    body = (
      <Main
        user={auth.user}
        theme={theme}
        setTheme={setTheme}
        onSignedOut={() => setAuth({ needs_setup: false, user: null })}
      />
    );
  }
  return <I18nContext.Provider value={i18n}>{body}</I18nContext.Provider>;
}

interface MainProps {
  user: User;
  theme: ThemeChoice;
  setTheme: (c: ThemeChoice) => void;
  onSignedOut: () => void;
}

function Main({ user, theme, setTheme, onSignedOut }: MainProps) {
  const route = useRoute();
  const [models, setModels] = useState<ModelInfo[]>([]);
  const [conversations, setConversations] = useState<ConversationSummary[]>([]);
  const [query, setQuery] = useState("");
  const [drawerOpen, setDrawerOpen] = useState(false);
  const queryRef = useRef(query);
  queryRef.current = query;

  const refreshModels = useCallback(() => {
    api.models().then(setModels).catch(() => setModels([]));
  }, []);
  useEffect(refreshModels, [refreshModels]);

  const refreshList = useCallback(() => {
    const q = queryRef.current;
    api
      .conversations(q)
      .then((list) => {
        if (queryRef.current === q) setConversations(list);
      })
      .catch(() => {});
  }, []);
  // Search as the user types, debounced.
  useEffect(() => {
    const timer = setTimeout(refreshList, query ? 250 : 0);
    return () => clearTimeout(timer);
  }, [query, refreshList]);

  // On a phone the drawer closes when the user goes somewhere.
  useEffect(() => setDrawerOpen(false), [route]);

  const signOut = useCallback(() => {
    api
      .logout()
      .catch(() => {})
      .finally(onSignedOut);
  }, [onSignedOut]);

  const activeId = route.name === "chat" ? route.id : null;
  return (
    <div class={`layout${drawerOpen ? " drawer-open" : ""}`}>
      <Sidebar
        user={user}
        conversations={conversations}
        activeId={activeId}
        query={query}
        onQuery={setQuery}
        onNew={() => navigate(chatHref(null))}
        onChanged={refreshList}
        onDeleted={(id) => {
          if (id === activeId) navigate(chatHref(null));
          refreshList();
        }}
        onSignOut={signOut}
        onClose={() => setDrawerOpen(false)}
      />
      <div class="backdrop" onClick={() => setDrawerOpen(false)} />
      <main class="pane">
        {route.name === "settings" ? (
          <SettingsPage
            user={user}
            theme={theme}
            setTheme={setTheme}
            onOpenMenu={() => setDrawerOpen(true)}
            onImported={refreshList}
          />
        ) : (
          <Chat
            routeId={route.id}
            models={models}
            onRefreshModels={refreshModels}
            onOpenMenu={() => setDrawerOpen(true)}
            onListChanged={refreshList}
          />
        )}
      </main>
    </div>
  );
}
