/**
 * The message box. Enter sends and Shift+Enter makes a new line, but never while an IME composes
 * (see lib/composer.ts); `onSend` returns false when it refuses (a send already in flight), in which
 * case the text stays in the box.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ComposerKeys } from "../lib/composer";
import { useI18n } from "../i18n";
import { IconStop } from "./Icons";

interface Props {
  streaming: boolean;
  onSend: (text: string) => boolean;
  onStop: () => void;
}

export function Composer({ streaming, onSend, onStop }: Props) {
  const { t } = useI18n();
  const [text, setText] = useState("");
  const textRef = useRef(text);
  textRef.current = text;
  const areaRef = useRef<HTMLTextAreaElement>(null);
  const sendRef = useRef(onSend);
  sendRef.current = onSend;

  const submit = () => {
    const value = areaRef.current?.value ?? textRef.current;
    if (!value.trim()) return;
    if (sendRef.current(value)) {
      textRef.current = "";
      setText("");
    }
  };
  const keys = useMemo(() => new ComposerKeys(() => submit()), []);

  // Composition events are attached directly: their names are not lower-cased DOM properties.
  useEffect(() => {
    const el = areaRef.current;
    if (!el) return;
    el.addEventListener("compositionstart", keys.onCompositionStart);
    el.addEventListener("compositionend", keys.onCompositionEnd);
    return () => {
      el.removeEventListener("compositionstart", keys.onCompositionStart);
      el.removeEventListener("compositionend", keys.onCompositionEnd);
    };
  }, [keys]);

  // Grow with the text up to a limit.
  useEffect(() => {
    const el = areaRef.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [text]);

  return (
    <div class="composer">
      <textarea
        ref={areaRef}
        rows={1}
        value={text}
        placeholder={t("chat.placeholder")}
        aria-label={t("chat.placeholder")}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={keys.onKeyDown}
        data-testid="composer-input"
      />
      {streaming ? (
        <button class="stop" onClick={onStop} data-testid="stop">
          <IconStop /> {t("chat.stop")}
        </button>
      ) : (
        <button class="primary send" onClick={submit} disabled={!text.trim()} data-testid="send">
          {t("chat.send")}
        </button>
      )}
    </div>
  );
}
