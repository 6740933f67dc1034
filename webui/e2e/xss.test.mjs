// Scenario 14: markdown from the user or the model is rendered sanitized. Payloads typed into the
// composer, echoed by the model, and imported (as the model's own answers and in a title) are looked
// at in two browsers: an ordinary one, and one that ignores the server's Content-Security-Policy, so
// that only the sanitizer stands between a payload and its execution.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ANSWER_TIMEOUT, Session, screenshot, sleep, startSuite, withDiagnostics } from "./harness.mjs";
import { assertCsrfOnAll, assertNoPageErrors, followAnswer, readMessages, routeId } from "./ui.mjs";

let suite;
let s;
let noCsp;

before(async () => {
  suite = await startSuite();
  s = suite.session;
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  await noCsp?.close().catch(() => {});
  const exit = await suite?.stop();
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) =>
  test(name, { timeout: ANSWER_TIMEOUT * 2 }, () => withDiagnostics(name, suite.server, [s.page, noCsp?.page].filter(Boolean), body));

const TYPED = [
  'Repeat these exactly: <img src=x onerror="window.__xss=1;alert(1)">',
  "<script>window.__xss=2;alert(2)</script>",
  "[x](javascript:window.__xss=3)",
  '<a href="#" onclick="window.__xss=4">y</a>',
];

const EVIL_TITLE = '<img src=x onerror="window.__xss=10;alert(10)"> title';
const MODEL_MARKDOWN = [
  "Here you go:",
  "[click me](javascript:window.__xss=12;alert(12))",
  "[encoded](&#106;avascript:window.__xss=13)",
  "[spaced]( javascript:window.__xss=14 )",
  '<a href="javascript:window.__xss=15">raw link</a>',
  '<svg onload="window.__xss=16"><circle r=1></circle></svg>',
  '<iframe src="javascript:window.__xss=17"></iframe>',
  '<details open ontoggle="window.__xss=18">d</details>',
  "![pic](javascript:window.__xss=19)",
  '![x](x" onerror="window.__xss=20)',
  '<a href="#" onclick="window.__xss=21">y</a>',
  "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
  "[vb](vbscript:msgbox(1))",
  '<form action="javascript:window.__xss=22"><button>go</button></form>',
  "<style>body{display:none}</style>",
  '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=23">',
  "```html\n<script>window.__xss=24</script>\n```",
  '<object data="javascript:window.__xss=25"></object><embed src="javascript:window.__xss=26">',
  '<input autofocus onfocus="window.__xss=27">',
].join("\n\n");

/** A ChatGPT export whose title and messages carry the payloads. */
function evilExport() {
  const msg = (id, role, text, t) => ({ id, author: { role }, content: { content_type: "text", parts: [text] }, create_time: t, metadata: {} });
  return [
    {
      title: EVIL_TITLE,
      create_time: 1700000000,
      update_time: 1700000100,
      current_node: "a",
      mapping: {
        root: { id: "root", message: null, parent: null, children: ["u"] },
        u: { id: "u", message: msg("mu", "user", "<script>window.__xss=11</script>\n\nand **bold**", 1700000001), parent: "root", children: ["a"] },
        a: { id: "a", message: msg("ma", "assistant", MODEL_MARKDOWN, 1700000002), parent: "u", children: [] },
      },
    },
  ];
}

/** What the sanitizer must have removed from the messages and the sidebar. */
async function assertInert(session, label) {
  const page = session.page;
  const report = await page.evaluate(() => {
    const roots = [document.querySelector('[data-testid="messages"]'), document.querySelector('[data-testid="sidebar"]'), document.querySelector('[data-testid="chat-title"]')];
    const bad = [];
    for (const root of roots) {
      if (!root) continue;
      for (const el of root.querySelectorAll("*")) {
        const tag = el.tagName.toLowerCase();
        if (["script", "img", "iframe", "object", "embed", "svg", "math", "style", "form", "link", "meta", "base"].includes(tag) && !el.closest("button")) {
          // The UI's own icons are SVGs inside its buttons; anything else is from a payload.
          bad.push(`<${tag}>`);
        }
        for (const attr of el.getAttributeNames()) {
          if (/^on/i.test(attr)) bad.push(`${tag}[${attr}]`);
          if (["href", "src", "action", "formaction", "xlink:href", "data"].includes(attr) && /^\s*(javascript|vbscript|data):/i.test(el.getAttribute(attr))) {
            bad.push(`${tag}[${attr}=${el.getAttribute(attr)}]`);
          }
        }
      }
    }
    return { bad, xss: window.__xss, links: root_links() };
    function root_links() {
      return [...document.querySelectorAll('[data-testid="messages"] .md a')].map((a) => a.getAttribute("href"));
    }
  });
  assert.deepEqual(report.bad, [], `${label}: dangerous markup survived`);
  assert.equal(report.xss, undefined, `${label}: a payload ran`);
  return report;
}

/** Clicks every link inside the messages (popups are recorded and closed by the session). */
async function clickAllLinks(session) {
  const links = session.page.locator('[data-testid="messages"] .md a');
  const n = await links.count();
  const url = session.page.url();
  for (let i = 0; i < n; i++) {
    await links.nth(i).click({ timeout: 5_000 }).catch(() => {});
    await sleep(150);
    if (session.page.url() !== url) await session.page.goto(url);
  }
  await sleep(300);
  return n;
}

scenario("14 XSS payloads typed, echoed and imported never run", async () => {
  // Typed by the user, and (perhaps) repeated by the model.
  await s.goto("#/");
  const input = s.tid("composer-input");
  await input.waitFor();
  await input.fill(TYPED.join("\n"));
  await input.press("Enter");
  // Whatever the model echoes within its first few hundred characters is enough: stop it there.
  const followed = await followAnswer(s, { until: (x) => x.stop && x.text.length > 400 });
  // (The answer may end on its own meanwhile: then there is no stop to press. Scenario 5 tests stop.)
  if (followed.last.stop) await s.tid("stop").click({ timeout: 5_000 }).catch(() => {});
  await s.tid("send").waitFor();
  await s.page.waitForFunction(() => document.querySelector('[data-testid="message-assistant"]')?.dataset.status !== "streaming");
  const typedConv = routeId(s.page);
  const shown = await readMessages(s.page);
  const user = shown.find((m) => m.role === "user");
  assert.ok(user.text.includes("<script>window.__xss=2;alert(2)</script>"), "raw HTML is shown as text, not dropped or run");
  assert.ok(user.text.includes('<img src=x onerror="window.__xss=1;alert(1)">'));
  await assertInert(s, "typed");
  const clickedTyped = await clickAllLinks(s);
  await assertInert(s, "typed, after clicking links");

  // Imported: payloads in the title and in an assistant answer (markdown "from the model").
  const imported = await s.api("POST", "/api/import", evilExport());
  assert.ok(imported.status < 300, `POST /api/import answered ${imported.status}: ${JSON.stringify(imported.body)}`);
  assert.equal(imported.body.imported, 1);
  await s.page.reload();
  const list = (await s.api("GET", "/api/conversations")).body;
  const evil = (list.conversations ?? list).find((c) => c.title === EVIL_TITLE);
  assert.ok(evil, "the imported conversation is listed with its title as is");
  const evilId = String(evil.id);
  await s.goto(`#/c/${encodeURIComponent(evilId)}`);
  await s.page.locator('[data-testid="message-assistant"]').filter({ hasText: "Here you go:" }).waitFor();
  assert.equal((await s.tid("chat-title").textContent()).trim(), EVIL_TITLE, "the title is text");
  assert.equal(
    (await s.page.locator(`[data-testid="conversation-item"][data-id="${evilId}"] .conv-title`).textContent()).trim(),
    EVIL_TITLE,
  );
  const report = await assertInert(s, "imported");
  assert.ok(report.links.length >= 3, `the harmless parts of the links are still shown: ${JSON.stringify(report.links)}`);
  assert.ok(await s.page.locator('[data-testid="message-user"] strong').count(), "markdown still renders");
  const clicked = await clickAllLinks(s);
  await assertInert(s, "imported, after clicking links");
  await screenshot(s.page, "14-xss-imported");

  // Without the CSP, a surviving handler would run: first prove that the probe works there.
  noCsp = await Session.open(suite.server, suite.browser, { bypassCSP: true, storageState: await s.context.storageState() });
  await noCsp.goto(`#/c/${encodeURIComponent(evilId)}`);
  await noCsp.page.locator('[data-testid="message-assistant"]').filter({ hasText: "Here you go:" }).waitFor();
  await noCsp.page.evaluate(() => {
    const probe = document.createElement("div");
    probe.innerHTML = '<img src="x" onerror="window.__probe=1">';
    document.body.append(probe);
  });
  await noCsp.page.waitForFunction(() => window.__probe === 1, null, { timeout: 5_000 });
  await assertInert(noCsp, "imported, no CSP");
  await clickAllLinks(noCsp);
  await assertInert(noCsp, "imported, no CSP, after clicking links");
  await noCsp.goto(`#/c/${encodeURIComponent(typedConv)}`);
  await noCsp.page.locator(`[data-testid="message-user"][data-id="${user.id}"]`).waitFor();
  await assertInert(noCsp, "typed, no CSP");
  await clickAllLinks(noCsp);
  await assertInert(noCsp, "typed, no CSP, after clicking links");

  for (const session of [s, noCsp]) {
    assert.deepEqual(session.dialogs, [], "no dialog opened");
    const bad = session.popups.filter((u) => /^(javascript|vbscript|data):/i.test(u));
    assert.deepEqual(bad, [], "no link opened a script URL");
    assertNoPageErrors(session);
  }
  assert.ok(clicked + clickedTyped >= 3, "links were clicked");
});
