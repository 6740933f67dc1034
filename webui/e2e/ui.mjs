/**
 * Reading and driving the chat UI by `data-testid` (never by translated text): messages on the
 * current branch, sending, waiting for the streamed answer while sampling its growth, and the CSRF
 * check every file runs over the requests its UI made.
 */
import assert from "node:assert/strict";
import { ANSWER_TIMEOUT, CSRF_HEADER, sleep } from "./harness.mjs";

/** The messages shown on the current branch: role, id, status, text, `i / n` position if any. */
export async function readMessages(page) {
  return page.$$eval('[data-testid="messages"] [data-testid^="message-"]', (els) =>
    els.map((el) => ({
      role: el.dataset.testid.replace("message-", ""),
      id: el.dataset.id,
      status: el.dataset.status,
      text: el.querySelector(".md")?.textContent ?? "",
      body: el.querySelector(".message-body")?.textContent ?? "",
      branch: el.querySelector('[data-testid="branch-pos"]')?.textContent?.trim() ?? null,
    })),
  );
}

export async function lastOf(page, role) {
  const all = (await readMessages(page)).filter((m) => m.role === role);
  return all[all.length - 1] ?? null;
}

/** Types `text` into the composer and presses Enter. */
export async function typeAndSend(session, text) {
  const input = session.tid("composer-input");
  await input.fill(text);
  await input.press("Enter");
}

/**
 * Follows the answer now streaming (the last assistant message) until it ends, sampling its text
 * every ~40 ms: returns the distinct text lengths seen while `stop` was shown, the texts seen, and
 * the final message. `until(sample)` may end the wait early (then the stream may still run).
 */
export async function followAnswer(session, { timeout = ANSWER_TIMEOUT, until } = {}) {
  const page = session.page;
  const started = Date.now();
  const deadline = started + timeout;
  const lengths = [];
  const texts = [];
  let sawStop = false;
  for (;;) {
    const s = await page.evaluate(() => {
      const els = document.querySelectorAll('[data-testid="messages"] [data-testid="message-assistant"]');
      const el = els[els.length - 1];
      return {
        stop: !!document.querySelector('[data-testid="stop"]'),
        id: el?.dataset.id ?? null,
        status: el?.dataset.status ?? null,
        text: el?.querySelector(".md")?.textContent ?? "",
      };
    });
    if (s.stop) sawStop = true;
    if (s.stop && s.id) {
      if (lengths[lengths.length - 1] !== s.text.length) lengths.push(s.text.length);
      if (texts[texts.length - 1] !== s.text) texts.push(s.text);
    }
    if (until && until(s)) return { lengths, texts, sawStop, last: s };
    if (sawStop && !s.stop && s.status !== "streaming") break;
    // An answer that was over before the first sample: nothing streams, stop never shows.
    if (!sawStop && s.status && s.status !== "streaming" && Date.now() - started > 5_000) break;
    if (Date.now() > deadline) throw new Error(`the answer did not end within ${timeout} ms (last: ${JSON.stringify(s)})`);
    await sleep(40);
  }
  // The `done` event replaces the row; wait until the UI has settled on a final status.
  await page.waitForFunction(
    () => {
      const els = document.querySelectorAll('[data-testid="messages"] [data-testid="message-assistant"]');
      const el = els[els.length - 1];
      return !document.querySelector('[data-testid="stop"]') && el && el.dataset.status !== "streaming";
    },
    null,
    { timeout: 30_000 },
  );
  return { lengths, texts, sawStop, last: await lastOf(page, "assistant") };
}

/** Asserts the answer streamed: it grew at least twice while `stop` was shown. */
export function assertStreamed(followed) {
  assert.ok(followed.sawStop, "the stop button was never shown during the answer");
  const grew = followed.lengths.filter((n, i) => i > 0 && n > followed.lengths[i - 1]).length;
  assert.ok(
    grew >= 2,
    `the answer text did not grow while streaming (lengths seen: ${JSON.stringify(followed.lengths)})`,
  );
}

/** Sends `text` and waits for the complete answer (asserting that it streamed). */
export async function sendAndWait(session, text, opts = {}) {
  const before = (await readMessages(session.page)).filter((m) => m.role === "assistant").map((m) => m.id);
  await typeAndSend(session, text);
  await session.page.waitForFunction(
    (ids) => {
      const els = [...document.querySelectorAll('[data-testid="messages"] [data-testid="message-assistant"]')];
      return els.some((el) => !ids.includes(el.dataset.id));
    },
    before,
    { timeout: ANSWER_TIMEOUT },
  );
  const followed = await followAnswer(session, opts);
  assert.equal(followed.last?.status, "complete", `the answer ended ${followed.last?.status}`);
  return followed;
}

/** The conversation id of the URL (`#/c/<id>`), or null. */
export function routeId(page) {
  const m = /#\/c\/([^/?#]+)$/.exec(page.url());
  return m ? decodeURIComponent(m[1]) : null;
}

/** Ids of the conversations listed in the sidebar, top to bottom. */
export async function sidebarIds(session) {
  return session.page.$$eval('[data-testid="conversation-item"]', (els) => els.map((el) => el.dataset.id));
}

/** The documented routes a state-changing request of the UI may go to. */
const STATE_ROUTES = [
  ["POST", /^\/api\/auth\/(setup|login|logout|password)$/],
  ["POST", /^\/api\/conversations$/],
  ["PATCH", /^\/api\/conversations\/[^/]+$/],
  ["DELETE", /^\/api\/conversations\/[^/]+$/],
  ["POST", /^\/api\/conversations\/[^/]+\/(messages|regenerate)$/],
  ["POST", /^\/api\/keys$/],
  ["DELETE", /^\/api\/keys\/[^/]+$/],
  ["POST", /^\/api\/users$/],
  ["DELETE", /^\/api\/users\/[^/]+$/],
  ["POST", /^\/api\/import$/],
  ["POST", /^\/api\/admin\/pulls$/],
  ["POST", /^\/api\/policies(\/assign)?$/],
  ["PUT", /^\/api\/policies\/\d+$/],
  ["DELETE", /^\/api\/policies\/\d+$/],
];

/**
 * Scenario 21, for the requests of one session: every state-changing request carries the CSRF
 * header and goes to a documented `/api/...` route of this server. Returns how many were checked.
 */
export function assertCsrfOnAll(session) {
  const base = new URL(session.server.base);
  const changing = session.stateChanging();
  for (const r of changing) {
    const url = new URL(r.url);
    if (url.protocol === "blob:" || url.protocol === "data:") continue;
    assert.equal(url.host, base.host, `a state-changing request went to another host: ${r.method} ${r.url}`);
    const documented = STATE_ROUTES.some(([method, re]) => method === r.method && re.test(url.pathname));
    assert.ok(documented, `the UI made an undocumented state-changing request: ${r.method} ${url.pathname}`);
    assert.equal(r.headers[CSRF_HEADER.toLowerCase()], "1", `${r.method} ${url.pathname} was sent without ${CSRF_HEADER}: 1`);
  }
  return changing.length;
}

/** Counts recorded POSTs whose path ends with `suffix`. */
export function countPosts(session, suffix) {
  return session.requests.filter((r) => r.method === "POST" && new URL(r.url).pathname.endsWith(suffix)).length;
}

/** No uncaught error was thrown in the page. */
export function assertNoPageErrors(session) {
  assert.deepEqual(session.pageErrors, [], "uncaught errors in the page");
}

/**
 * A real IME composition through the DevTools protocol, as a Hangul IME drives the page: the
 * composition events, `isComposing` input events, and key events with keyCode 229 while composing.
 */
export class Ime {
  constructor(session) {
    this.session = session;
    this.cdp = null;
  }

  async client() {
    this.cdp ??= await this.session.context.newCDPSession(this.session.page);
    return this.cdp;
  }

  /** Sets the text being composed (starts a composition if none is running). */
  async compose(text) {
    await (await this.client()).send("Input.imeSetComposition", { text, selectionStart: text.length, selectionEnd: text.length });
  }

  /** Presses Enter while composing: the browser reports it as keyCode 229 with `isComposing`. */
  async enterWhileComposing() {
    const cdp = await this.client();
    const key = { key: "Enter", code: "Enter", windowsVirtualKeyCode: 229, nativeVirtualKeyCode: 229 };
    await cdp.send("Input.dispatchKeyEvent", { type: "rawKeyDown", ...key });
    await cdp.send("Input.dispatchKeyEvent", { type: "keyUp", ...key });
  }

  /** Commits `text` and ends the composition. */
  async commit(text) {
    await (await this.client()).send("Input.insertText", { text });
  }
}
