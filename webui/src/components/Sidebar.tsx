/** The conversations sidebar (a drawer on a phone): new chat, search, rename, delete, account links. */
import { useRef, useState } from "preact/hooks";
import { api } from "../lib/api";
import { chatHref } from "../lib/route";
import type { ConversationSummary, User } from "../lib/types";
import { useI18n } from "../i18n";
import { IconClose, IconEdit, IconTrash } from "./Icons";

interface Props {
  user: User;
  conversations: ConversationSummary[];
  activeId: string | null;
  query: string;
  onQuery: (q: string) => void;
  onNew: () => void;
  onChanged: () => void;
  onDeleted: (id: string) => void;
  onSignOut: () => void;
  onClose: () => void;
}

export function Sidebar(p: Props) {
  const { t } = useI18n();
  return (
    <aside class="sidebar" data-testid="sidebar">
      <div class="sidebar-head">
        <button class="primary new-chat" onClick={p.onNew} data-testid="new-chat">
          + {t("sidebar.newChat")}
        </button>
        <button class="icon only-mobile" onClick={p.onClose} aria-label={t("sidebar.closeMenu")}>
          <IconClose />
        </button>
      </div>
      <input
        class="search"
        type="search"
        placeholder={t("sidebar.search")}
        aria-label={t("sidebar.search")}
        value={p.query}
        onInput={(e) => p.onQuery(e.currentTarget.value)}
        data-testid="search"
      />
      <nav class="conv-list" data-testid="conversation-list">
        {p.conversations.length === 0 && (
          <p class="muted small">{p.query.trim() ? t("sidebar.noResults") : t("sidebar.empty")}</p>
        )}
        {p.conversations.map((c) => (
          <ConversationItem
            key={c.id}
            conv={c}
            active={c.id === p.activeId}
            onChanged={p.onChanged}
            onDeleted={p.onDeleted}
          />
        ))}
      </nav>
      <div class="sidebar-foot">
        <span class="user-name" title={p.user.username}>
          {p.user.username}
        </span>
        <a class="button" href="#/settings" data-testid="open-settings">
          {t("sidebar.settings")}
        </a>
        <button onClick={p.onSignOut} data-testid="sign-out">
          {t("auth.signOut")}
        </button>
      </div>
    </aside>
  );
}

function ConversationItem({
  conv,
  active,
  onChanged,
  onDeleted,
}: {
  conv: ConversationSummary;
  active: boolean;
  onChanged: () => void;
  onDeleted: (id: string) => void;
}) {
  const { t } = useI18n();
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(conv.title);
  // Ends one rename exactly once: Enter ends it, and the blur of the input leaving the page
  // must neither save it a second time nor save a rename that Escape cancelled.
  const ended = useRef(true);
  const shown = conv.title || t("sidebar.untitled");

  const save = () => {
    if (ended.current) return;
    ended.current = true;
    setEditing(false);
    const next = title.trim();
    if (!next || next === conv.title) return;
    api.patchConversation(conv.id, { title: next }).then(onChanged).catch(onChanged);
  };
  const remove = () => {
    if (!confirm(t("sidebar.deleteConfirm", { title: shown }))) return;
    api
      .deleteConversation(conv.id)
      .then(() => onDeleted(conv.id))
      .catch(onChanged);
  };

  if (editing) {
    return (
      <div class="conv-item active">
        <input
          class="rename"
          value={title}
          autoFocus
          aria-label={t("sidebar.rename")}
          onInput={(e) => setTitle(e.currentTarget.value)}
          onBlur={save}
          onKeyDown={(e) => {
            // The IME's committing Enter must not end the rename early.
            if (e.isComposing || e.keyCode === 229) return;
            if (e.key === "Enter") {
              e.preventDefault();
              save();
            } else if (e.key === "Escape") {
              ended.current = true;
              setTitle(conv.title);
              setEditing(false);
            }
          }}
          data-testid="rename-input"
        />
      </div>
    );
  }
  return (
    <div class={`conv-item${active ? " active" : ""}`} data-testid="conversation-item" data-id={conv.id}>
      <a href={chatHref(conv.id)} title={shown} class="conv-title">
        {shown}
      </a>
      <span class="conv-actions">
        <button
          class="icon"
          title={t("sidebar.rename")}
          aria-label={t("sidebar.rename")}
          onClick={() => {
            setTitle(conv.title);
            ended.current = false;
            setEditing(true);
          }}
          data-testid="rename"
        >
          <IconEdit />
        </button>
        <button class="icon" title={t("sidebar.delete")} aria-label={t("sidebar.delete")} onClick={remove} data-testid="delete">
          <IconTrash />
        </button>
      </span>
    </div>
  );
}
