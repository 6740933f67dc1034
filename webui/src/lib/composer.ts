/**
 * Keyboard handling of the message box, kept free of Preact so it can be unit-tested.
 *
 * Enter sends, Shift+Enter inserts a new line. With a Hangul (or any) IME, the Enter that commits
 * the composition must not send: browsers flag it with `isComposing` (and Safari, which fires
 * `compositionend` before that keydown, with keyCode 229). We also track composition ourselves via
 * the composition events as a third signal. Independently, a send is refused while another one is in
 * flight, so an IME's extra Enter, a key repeat or a double click can never send a message twice.
 */

export interface KeyLike {
  key: string;
  shiftKey?: boolean;
  altKey?: boolean;
  ctrlKey?: boolean;
  metaKey?: boolean;
  isComposing?: boolean;
  keyCode?: number;
  repeat?: boolean;
  preventDefault(): void;
}

/** Guards one send at a time: `begin` returns false while a previous send has not ended. */
export class SendGuard {
  private busy = false;
  get sending(): boolean {
    return this.busy;
  }
  begin(): boolean {
    if (this.busy) return false;
    this.busy = true;
    return true;
  }
  end(): void {
    this.busy = false;
  }
}

export class ComposerKeys {
  private composing = false;
  /** Time of the last compositionend; an Enter right after it belongs to the composition (Safari). */
  private lastCompositionEnd = -Infinity;

  constructor(
    /** Called when Enter should send; it must decide itself whether there is anything to send. */
    private readonly submit: () => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  onCompositionStart = (): void => {
    this.composing = true;
  };

  onCompositionEnd = (): void => {
    this.composing = false;
    this.lastCompositionEnd = this.now();
  };

  /** True when this Enter is part of an IME composition and must be left to the IME. */
  isImeEnter(e: KeyLike): boolean {
    if (e.isComposing || this.composing || e.keyCode === 229) return true;
    return this.now() - this.lastCompositionEnd < 30;
  }

  onKeyDown = (e: KeyLike): void => {
    if (e.key !== "Enter") return;
    if (this.isImeEnter(e)) return;
    if (e.shiftKey || e.altKey) return; // a new line
    e.preventDefault();
    if (e.repeat) return; // a held-down Enter sends once
    this.submit();
  };
}
