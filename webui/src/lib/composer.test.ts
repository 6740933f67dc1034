import { describe, expect, it } from "vitest";
import { ComposerKeys, SendGuard, type KeyLike } from "./composer";

function key(init: Partial<KeyLike> & { key: string }): KeyLike & { prevented: boolean } {
  const e = { ...init, prevented: false, preventDefault() { e.prevented = true; } };
  return e;
}

/** A composer wired like the real one: the guard refuses a second send while the first is in flight. */
function setup() {
  let clock = 1000;
  const sent: string[] = [];
  const guard = new SendGuard();
  let text = "";
  const keys = new ComposerKeys(
    () => {
      if (!text.trim() || !guard.begin()) return;
      sent.push(text);
      text = "";
    },
    () => clock,
  );
  return {
    keys,
    guard,
    sent,
    type: (s: string) => (text = s),
    tick: (ms: number) => (clock += ms),
  };
}

describe("Enter and the IME", () => {
  it("a keydown Enter with isComposing: true does not send", () => {
    const c = setup();
    c.type("안녕");
    const e = key({ key: "Enter", isComposing: true, keyCode: 229 });
    c.keys.onKeyDown(e);
    expect(c.sent).toEqual([]);
    expect(e.prevented).toBe(false); // the IME gets its Enter
  });

  it("Enter during composition events (no isComposing flag) does not send", () => {
    const c = setup();
    c.type("한글");
    c.keys.onCompositionStart();
    c.keys.onKeyDown(key({ key: "Enter" }));
    expect(c.sent).toEqual([]);
    c.keys.onCompositionEnd();
    // Safari: the committing keydown arrives right after compositionend.
    c.keys.onKeyDown(key({ key: "Enter", keyCode: 229 }));
    c.keys.onKeyDown(key({ key: "Enter" }));
    expect(c.sent).toEqual([]);
    c.tick(200);
    c.keys.onKeyDown(key({ key: "Enter" }));
    expect(c.sent).toEqual(["한글"]);
  });

  it("a single Enter sends once; Shift+Enter does not send", () => {
    const c = setup();
    c.type("hello");
    const shift = key({ key: "Enter", shiftKey: true });
    c.keys.onKeyDown(shift);
    expect(c.sent).toEqual([]);
    expect(shift.prevented).toBe(false);
    const enter = key({ key: "Enter" });
    c.keys.onKeyDown(enter);
    expect(enter.prevented).toBe(true);
    expect(c.sent).toEqual(["hello"]);
  });

  it("a Korean message is never sent twice (extra Enter, repeat, second click while in flight)", () => {
    const c = setup();
    c.type("안녕하세요");
    c.keys.onCompositionStart();
    c.keys.onKeyDown(key({ key: "Enter", isComposing: true }));
    c.keys.onCompositionEnd();
    c.tick(100);
    c.keys.onKeyDown(key({ key: "Enter" }));
    // The IME's extra Enter, a repeat, and the text typed again while the answer streams.
    c.keys.onKeyDown(key({ key: "Enter" }));
    c.keys.onKeyDown(key({ key: "Enter", repeat: true }));
    c.type("안녕하세요");
    c.keys.onKeyDown(key({ key: "Enter" }));
    expect(c.sent).toEqual(["안녕하세요"]);
    // After the answer ends the next message goes.
    c.guard.end();
    c.keys.onKeyDown(key({ key: "Enter" }));
    expect(c.sent).toEqual(["안녕하세요", "안녕하세요"]);
  });

  it("ignores other keys and keyup-like events", () => {
    const c = setup();
    c.type("x");
    c.keys.onKeyDown(key({ key: "a" }));
    c.keys.onKeyDown(key({ key: "Process" }));
    expect(c.sent).toEqual([]);
  });
});
