/** One message of the path: rendered markdown, `< i/n >` between its versions, and its actions. */
import { useMemo, useState } from "preact/hooks";
import type { SiblingInfo } from "../lib/tree";
import type { Message } from "../lib/types";
import { useI18n } from "../i18n";
import { IconCheck, IconCopy, IconEdit, IconLeft, IconRegenerate, IconRight } from "./Icons";
import { copyText, Markdown } from "./Markdown";
import { energyTooltip, formatJoules } from "../lib/energy";
import { showsMark } from "../lib/provenance";

interface Props {
  message: Message;
  siblings: SiblingInfo;
  streaming: boolean;
  busy: boolean;
  onSwitch: (delta: number) => void;
  onRegenerate: () => void;
  onEdit: (content: string) => boolean;
}

export function MessageView({ message, siblings, streaming, busy, onSwitch, onRegenerate, onEdit }: Props) {
  const { t } = useI18n();
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(message.content);
  const [copied, setCopied] = useState(false);
  const isUser = message.role === "user";

  const saveEdit = () => {
    if (!draft.trim() || draft === message.content) return setEditing(false);
    if (onEdit(draft)) setEditing(false);
  };
  const nav = useMemo(
    () =>
      siblings.count > 1 ? (
        <span class="branch-nav" data-testid="branch-nav">
          <button class="icon" disabled={siblings.index <= 0} onClick={() => onSwitch(-1)} aria-label={t("chat.previous")} data-testid="branch-prev">
            <IconLeft />
          </button>
          <span data-testid="branch-pos">{t("chat.branch", { index: siblings.index + 1, count: siblings.count })}</span>
          <button
            class="icon"
            disabled={siblings.index >= siblings.count - 1}
            onClick={() => onSwitch(1)}
            aria-label={t("chat.next")}
            data-testid="branch-next"
          >
            <IconRight />
          </button>
        </span>
      ) : null,
    [siblings, onSwitch, t],
  );

  return (
    <div class={`message ${message.role}`} data-testid={`message-${message.role}`} data-id={message.id} data-status={message.status}>
      <div class="message-who">{isUser ? t("chat.you") : t("chat.assistant")}</div>
      {editing ? (
        <div class="edit-box">
          <textarea
            value={draft}
            autoFocus
            onInput={(e) => setDraft(e.currentTarget.value)}
            onKeyDown={(e) => {
              // Escape during composition cancels the composition, not the edit.
              if (e.isComposing || e.keyCode === 229) return;
              if (e.key === "Escape") setEditing(false);
            }}
            data-testid="edit-input"
          />
          <div class="row">
            <button onClick={() => setEditing(false)}>{t("common.cancel")}</button>
            <button class="primary" onClick={saveEdit} disabled={busy} data-testid="edit-save">
              {t("chat.editSave")}
            </button>
          </div>
        </div>
      ) : (
        <div class="message-body">
          <Markdown text={message.content} />
          {streaming && <span class="cursor" aria-hidden="true" />}
          {message.status === "incomplete" && !streaming && <p class="muted small">{t("chat.incomplete")}</p>}
        </div>
      )}
      {!editing && (
        <div class="message-actions">
          {nav}
          <button
            class="icon"
            title={copied ? t("chat.copied") : t("chat.copy")}
            aria-label={t("chat.copy")}
            onClick={() =>
              copyText(message.content)
                .then(() => {
                  setCopied(true);
                  setTimeout(() => setCopied(false), 1500);
                })
                .catch(() => {})
            }
          >
            {copied ? <IconCheck /> : <IconCopy />}
          </button>
          {isUser && (
            <button
              class="icon"
              title={t("chat.edit")}
              aria-label={t("chat.edit")}
              disabled={busy}
              onClick={() => {
                setDraft(message.content);
                setEditing(true);
              }}
              data-testid="edit"
            >
              <IconEdit />
            </button>
          )}
          {!isUser && !streaming && message.energy && (
            <span class="energy muted small" title={energyTooltip(message.energy, t)} data-testid="energy">
              {formatJoules(message.energy.joules)}
            </span>
          )}
          {showsMark(message, streaming) && (
            <span class="marked muted small" title={t("chat.markedTooltip")} data-testid="marked">
              {t("chat.marked")}
            </span>
          )}
          {!isUser && !streaming && (
            <button class="icon" title={t("chat.regenerate")} aria-label={t("chat.regenerate")} disabled={busy} onClick={onRegenerate} data-testid="regenerate">
              <IconRegenerate />
            </button>
          )}
        </div>
      )}
    </div>
  );
}
