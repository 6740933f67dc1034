/**
 * The chat pane: loads a conversation (or starts a new one on the first message), shows the current
 * branch of its message tree, and runs the answer streams (send, stop, regenerate, edit).
 *
 * One stream at a time: `SendGuard` is taken synchronously before any await, so a second Enter, a
 * double click or an IME's extra key event can never post a message twice.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError } from "../lib/api";
import { SendGuard } from "../lib/composer";
import { effectiveModel } from "../lib/models";
import { download, exportFileName, toJson, toMarkdown } from "../lib/exporting";
import { chatHref, navigate } from "../lib/route";
import { consumeChatStream, type ChatStreamEvent } from "../lib/stream";
import { buildTree, currentPath, selectMessage, selectSibling, siblings, type Selections } from "../lib/tree";
import type { Conversation, Message, ModelInfo } from "../lib/types";
import { useI18n } from "../i18n";
import { IconMenu, IconSettings } from "./Icons";
import { Composer } from "./Composer";
import { ConversationPanel, type ConversationOptions } from "./ConversationPanel";
import { MessageView } from "./MessageView";
import { PolicyLabel } from "./PolicyLabel";

const DEFAULT_TEMPERATURE = 0.7;
/** Reads of the conversation after a stop before the server's record counts as final (~6 s). */
const SETTLE_TRIES = 5;

interface Props {
  routeId: string | null;
  models: ModelInfo[];
  /** Asks for the model list again (their states change as models load and unload). */
  onRefreshModels?: () => void;
  onOpenMenu: () => void;
  onListChanged: () => void;
}

interface State {
  conv: Conversation | null;
  selections: Selections;
}

function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

export function Chat({ routeId, models, onRefreshModels, onOpenMenu, onListChanged }: Props) {
  const { t } = useI18n();
  const [state, setState] = useState<State>({ conv: null, selections: {} });
  const [draft, setDraft] = useState<ConversationOptions>({ system_prompt: "", model: null, temperature: DEFAULT_TEMPERATURE });
  const [loading, setLoading] = useState(false);
  const [notFound, setNotFound] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [streamingId, setStreamingId] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [pending, setPending] = useState<string | null>(null);
  const [panelOpen, setPanelOpen] = useState(false);
  const guard = useRef(new SendGuard()).current;
  const controllerRef = useRef<AbortController | null>(null);
  const convIdRef = useRef<string | null>(null);
  convIdRef.current = state.conv?.id ?? null;
  const scrollRef = useRef<HTMLDivElement>(null);

  // Follow the route: a different conversation (or none) aborts any stream and loads it.
  useEffect(() => {
    if (routeId !== null && routeId === convIdRef.current) return;
    controllerRef.current?.abort();
    setError(null);
    setNotFound(false);
    setPanelOpen(false);
    if (routeId === null) {
      setState({ conv: null, selections: {} });
      setDraft({ system_prompt: "", model: null, temperature: DEFAULT_TEMPERATURE });
      return;
    }
    let cancelled = false;
    setLoading(true);
    api
      .conversation(routeId)
      .then((conv) => !cancelled && setState({ conv: { ...conv, messages: conv.messages ?? [] }, selections: {} }))
      .catch((e: unknown) => {
        if (cancelled) return;
        if (e instanceof ApiError && (e.status === 404 || e.status === 403)) setNotFound(true);
        else setError(e instanceof Error ? e.message : String(e));
      })
      .finally(() => !cancelled && setLoading(false));
    return () => {
      cancelled = true;
    };
  }, [routeId]);

  const tree = useMemo(() => buildTree(state.conv?.messages ?? []), [state.conv?.messages]);
  const path = useMemo(() => currentPath(tree, state.selections).filter((m) => m.role !== "system"), [tree, state.selections]);

  // Keep the newest text in view while it streams, unless the user scrolled up to read.
  useEffect(() => {
    const el = scrollRef.current;
    if (!el) return;
    if (el.scrollHeight - el.scrollTop - el.clientHeight < 160) el.scrollTop = el.scrollHeight;
  }, [path, pending]);

  /** Inserts or updates a message of conversation `convId`; `select` moves the path onto it. */
  const upsert = useCallback((convId: string, m: Message, select: boolean) => {
    setState((s) => {
      if (!s.conv || s.conv.id !== convId || !m || !m.id) return s;
      const i = s.conv.messages.findIndex((x) => x.id === m.id);
      const messages = i < 0 ? [...s.conv.messages, m] : s.conv.messages.map((x, j) => (j === i ? { ...x, ...m } : x));
      const selections = select ? selectMessage(buildTree(messages), s.selections, m.id) : s.selections;
      return { conv: { ...s.conv, messages }, selections };
    });
  }, []);

  const update = useCallback((convId: string, id: string, f: (m: Message) => Message) => {
    setState((s) => {
      if (!s.conv || s.conv.id !== convId) return s;
      return { ...s, conv: { ...s.conv, messages: s.conv.messages.map((m) => (m.id === id ? f(m) : m)) } };
    });
  }, []);

  /** Re-reads the title a few times after the first exchange: the server names the chat in the background. */
  const pollTitle = useCallback(
    (convId: string) => {
      let tries = 0;
      const tick = () => {
        if (convIdRef.current !== convId) return;
        api
          .conversation(convId)
          .then((c) => {
            setState((s) => (s.conv && s.conv.id === convId && c.title !== s.conv.title ? { ...s, conv: { ...s.conv, title: c.title } } : s));
            onListChanged();
            if (!c.title && ++tries < 4) setTimeout(tick, 2000 * tries);
          })
          .catch(() => {});
      };
      setTimeout(tick, 800);
    },
    [onListChanged],
  );

  /**
   * After a stop or an error: re-reads the conversation until the server has closed the answer.
   * The server notices a client that went away only at its next write, and saves the text every
   * fraction of a second, so a read right after the stop can still hold an open, shorter answer;
   * taking that would show less than was on screen and no "interrupted" note. The local copy
   * (already marked incomplete) stays until the server's final record arrives; an answer the server
   * still calls streaming after the last try is shown as incomplete, which it is for this client.
   */
  const settleFromServer = useCallback((convId: string, answerId: string | null) => {
    let tries = 0;
    const tick = () => {
      if (convIdRef.current !== convId) return;
      api
        .conversation(convId)
        .then((c) => {
          const open = answerId !== null && (c.messages ?? []).some((m) => m.id === answerId && m.status === "streaming");
          if (open && ++tries < SETTLE_TRIES) {
            setTimeout(tick, 200 * 2 ** tries);
            return;
          }
          const messages = (c.messages ?? []).map((m) => (open && m.id === answerId ? { ...m, status: "incomplete" as const } : m));
          setState((s) => (s.conv?.id === convId ? { conv: { ...c, messages }, selections: s.selections } : s));
        })
        .catch(() => {});
    };
    setTimeout(tick, 100);
  }, []);

  /** Runs one answer stream; the caller has already taken the guard. */
  const runStream = useCallback(
    async (open: (signal: AbortSignal) => Promise<{ convId: string; res: Response }>, firstExchange: boolean) => {
      const controller = new AbortController();
      controllerRef.current = controller;
      setBusy(true);
      setError(null);
      let convId: string | null = null;
      let assistantId: string | null = null;
      let failed = false;
      try {
        const opened = await open(controller.signal);
        convId = opened.convId;
        const id = convId;
        await consumeChatStream(opened.res, (e: ChatStreamEvent) => {
          switch (e.type) {
            case "user":
              setPending(null);
              upsert(id, e.message, true);
              break;
            case "assistant":
              setPending(null);
              assistantId = e.message.id;
              setStreamingId(assistantId);
              upsert(id, { ...e.message, content: e.message.content ?? "" }, true);
              break;
            case "delta":
              if (assistantId) update(id, assistantId, (m) => ({ ...m, content: m.content + e.content }));
              break;
            case "done":
              upsert(id, e.message, false);
              break;
            case "error":
              break; // consumeChatStream throws it after the stream ends
          }
        });
      } catch (err) {
        failed = true;
        const aid = assistantId;
        if (convId && aid) update(convId, aid, (m) => ({ ...m, status: m.status === "complete" ? m.status : "incomplete" }));
        if (!isAbort(err) && !controller.signal.aborted) {
          setError(err instanceof ApiError && err.status === 0 ? t("common.networkError") : err instanceof Error ? err.message : String(err));
        }
      } finally {
        if (controllerRef.current === controller) controllerRef.current = null;
        guard.end();
        setBusy(false);
        setStreamingId(null);
        setPending(null);
        onListChanged();
        // After a stop or an error, take the server's record (it marks the answer incomplete).
        if (failed && convId) settleFromServer(convId, assistantId);
        if (firstExchange && convId && !failed) pollTitle(convId);
      }
    },
    [guard, upsert, update, onListChanged, pollTitle, settleFromServer, t],
  );

  const options: ConversationOptions = state.conv
    ? {
        system_prompt: state.conv.system_prompt ?? "",
        model: effectiveModel(models, state.conv.model),
        temperature: state.conv.settings?.temperature ?? DEFAULT_TEMPERATURE,
      }
    : { ...draft, model: effectiveModel(models, draft.model) };

  const send = (text: string): boolean => {
    if (!text.trim() || !guard.begin()) return false;
    const last = path[path.length - 1];
    const parentId = last ? last.id : null;
    const existing = state.conv;
    setPending(text);
    void runStream(async (signal) => {
      let convId = existing?.id;
      if (!convId) {
        const created = await api.createConversation({
          system_prompt: options.system_prompt || undefined,
          model: options.model ?? undefined,
          settings: { temperature: options.temperature },
        });
        convId = created.id;
        convIdRef.current = convId;
        setState({ conv: { ...created, messages: created.messages ?? [] }, selections: {} });
        navigate(chatHref(convId));
        onListChanged();
      }
      return { convId, res: await api.postMessage(convId, parentId, text, signal) };
    }, !existing || existing.messages.length === 0);
    return true;
  };

  const regenerate = (m: Message) => {
    const conv = state.conv;
    if (!conv || !guard.begin()) return;
    void runStream(async (signal) => ({ convId: conv.id, res: await api.regenerate(conv.id, m.id, signal) }), false);
  };

  const edit = (m: Message, content: string): boolean => {
    const conv = state.conv;
    if (!conv || !content.trim() || !guard.begin()) return false;
    void runStream(async (signal) => ({ convId: conv.id, res: await api.postMessage(conv.id, m.parent_id, content, signal) }), false);
    return true;
  };

  const stop = () => controllerRef.current?.abort();

  const changeOptions = (patch: Partial<ConversationOptions>) => {
    const conv = state.conv;
    if (!conv) return setDraft((d) => ({ ...d, ...patch }));
    const body: Parameters<typeof api.patchConversation>[1] = {};
    if (patch.system_prompt !== undefined) body.system_prompt = patch.system_prompt;
    if (patch.model !== undefined) body.model = patch.model;
    if (patch.temperature !== undefined) body.settings = { ...(conv.settings ?? {}), temperature: patch.temperature };
    setState((s) => (s.conv?.id === conv.id ? { ...s, conv: { ...s.conv, ...body } } : s));
    api.patchConversation(conv.id, body).then(onListChanged).catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)));
  };

  const exportAs = (format: "md" | "json") => {
    const conv = state.conv;
    if (!conv) return;
    const title = conv.title || t("sidebar.untitled");
    if (format === "md") {
      const labels = { user: t("chat.you"), assistant: t("chat.assistant"), system: t("conv.systemPrompt") };
      download(toMarkdown({ ...conv, title }, state.selections, labels), exportFileName(title, "md"), "text/markdown");
    } else {
      download(toJson(conv), exportFileName(title, "json"), "application/json");
    }
  };

  const title = state.conv ? state.conv.title || t("sidebar.untitled") : t("sidebar.newChat");
  return (
    <div class="chat" data-testid="chat">
      <header class="chat-head">
        <button class="icon only-mobile" onClick={onOpenMenu} aria-label={t("sidebar.openMenu")} data-testid="open-menu">
          <IconMenu />
        </button>
        <h2 class="chat-title" data-testid="chat-title">
          {title}
        </h2>
        {models.length > 1 && options.model && (
          <span class="muted small chat-model" title={t("conv.modelInUse", { model: options.model })} data-testid="chat-model">
            {options.model}
          </span>
        )}
        <PolicyLabel refresh={`${state.conv?.id ?? ""}:${busy}`} />
        <button
          class={`icon${panelOpen ? " on" : ""}`}
          onClick={() => {
            if (!panelOpen) onRefreshModels?.();
            setPanelOpen((o) => !o);
          }}
          title={t("conv.settings")}
          aria-label={t("conv.settings")}
          aria-expanded={panelOpen}
          data-testid="conversation-settings"
        >
          <IconSettings />
        </button>
      </header>
      {panelOpen && (
        <ConversationPanel options={options} models={models} canExport={!!state.conv} onChange={changeOptions} onExport={exportAs} />
      )}
      <div class="messages" ref={scrollRef} data-testid="messages">
        {notFound && <p class="notice">{t("chat.notFound")}</p>}
        {loading && <p class="muted">{t("common.loading")}</p>}
        {!loading && !notFound && path.length === 0 && !pending && <p class="welcome">{t("chat.welcome")}</p>}
        {path.map((m) => (
          <MessageView
            key={m.id}
            message={m}
            siblings={siblings(tree, m.id)}
            streaming={m.id === streamingId}
            busy={busy}
            onSwitch={(delta) => setState((s) => ({ ...s, selections: selectSibling(tree, s.selections, m.id, delta) }))}
            onRegenerate={() => regenerate(m)}
            onEdit={(content) => edit(m, content)}
          />
        ))}
        {pending !== null && (
          <MessageView
            key="pending"
            message={{ id: "pending", parent_id: null, role: "user", content: pending, status: "complete", created_at: "" }}
            siblings={{ index: 0, count: 1, ids: [] }}
            streaming={false}
            busy={true}
            onSwitch={() => {}}
            onRegenerate={() => {}}
            onEdit={() => false}
          />
        )}
        {error && (
          <p class="error" role="alert" data-testid="chat-error">
            {t("common.error", { message: error })}
          </p>
        )}
      </div>
      {!notFound && <Composer streaming={busy} onSend={send} onStop={stop} />}
      <p class="hint muted small">{t("chat.hint")}</p>
    </div>
  );
}
