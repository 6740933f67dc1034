// Settings and the conversation panel, without waiting for the model: import a ChatGPT export (19),
// the conversation settings (17), export (18), API keys (16), themes and the phone layout (20), and a
// password change that signs other browsers out and revokes the API keys when asked (21).
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { FIXTURES, Session, screenshot, sleep, startSuite, withDiagnostics } from "./harness.mjs";
import { assertCsrfOnAll, assertNoPageErrors, readMessages, routeId } from "./ui.mjs";

const EXPORT_FILE = join(FIXTURES, "chatgpt-conversations.json");
const TITLE = "서울 여행";

let suite;
let s;
let phone;
let imported; // the imported conversation's id

before(async () => {
  suite = await startSuite();
  s = suite.session;
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  await phone?.close().catch(() => {});
  const exit = await suite?.stop();
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) =>
  test(name, { timeout: 120_000 }, () => withDiagnostics(name, suite.server, [s.page, phone?.page].filter(Boolean), body));

const conversation = async (id) => {
  const r = await s.api("GET", `/api/conversations/${encodeURIComponent(id)}`);
  assert.equal(r.status, 200, `GET /api/conversations/${id}`);
  return r.body;
};

scenario("19 import a ChatGPT export", async () => {
  await s.goto("#/settings");
  await s.tid("import").waitFor();
  await s.tid("import-file").setInputFiles(EXPORT_FILE);
  await s.tid("import-submit").waitFor();
  assert.match(await s.tid("import").textContent(), /1 conversations with 4 messages/, "the preview counts");
  await s.tid("import-submit").click();
  await s.tid("import-message").waitFor();
  assert.match(await s.tid("import-message").textContent(), /Imported 1 conversation/);

  const item = s.page.locator('[data-testid="conversation-item"]').filter({ hasText: TITLE });
  await item.waitFor();
  imported = await item.getAttribute("data-id");
  await screenshot(s.page, "19-settings-imported");

  await item.locator(".conv-title").click();
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="messages"] [data-testid^="message-"]').length === 2);
  let shown = await readMessages(s.page);
  assert.deepEqual(shown.map((m) => m.role), ["user", "assistant"]);
  assert.equal(shown[0].text.trim(), "서울에서 어디 갈까?", "the current branch: the edited question");
  assert.match(shown[1].text, /경복궁과\s*북촌 한옥마을\./);
  assert.equal(shown[0].branch, "2 / 2", "the edited question shows < 2/2 >");
  assert.equal((await s.tid("chat-title").textContent()).trim(), TITLE);

  await s.page.locator('[data-testid="message-user"] [data-testid="branch-prev"]').click();
  await s.page.waitForFunction(() => document.querySelector('[data-testid="branch-pos"]')?.textContent?.trim() === "1 / 2");
  shown = await readMessages(s.page);
  assert.equal(shown[0].text.trim(), "Where should I go in Seoul?");
  assert.equal(shown[1].text.trim(), "Gyeongbokgung Palace, first of all.");

  const stored = await conversation(imported);
  assert.equal(stored.messages.length, 4, "system and tool nodes are dropped, the rest kept");
  const questions = stored.messages.filter((m) => m.role === "user");
  assert.equal(questions.length, 2);
  assert.equal(questions[0].parent_id ?? null, questions[1].parent_id ?? null, "the question and its edit are siblings");
  assertNoPageErrors(s);
});

scenario("17 conversation settings are kept", async () => {
  assert.ok(imported, "needs scenario 19");
  await s.goto(`#/c/${encodeURIComponent(imported)}`);
  await s.page.locator('[data-testid="message-assistant"]').waitFor();
  await s.tid("conversation-settings").click();
  await s.tid("conversation-panel").waitFor();

  const patched = () => s.page.waitForResponse((r) => r.request().method() === "PATCH" && r.url().includes("/api/conversations/"));
  let done = patched();
  await s.tid("system-prompt").fill("Answer in Korean");
  await s.tid("chat-title").click(); // blur
  assert.ok((await done).ok(), "PATCH system_prompt");

  const models = (await s.api("GET", "/api/models")).body;
  const ids = (models.models ?? models).map((m) => m.id);
  assert.ok(ids.length >= 1, "the server lists its model");
  const options = await s.tid("model-select").locator("option").evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual(options, ids, "the model list is the server's");
  done = patched();
  await s.tid("model-select").selectOption(ids[ids.length - 1]);
  assert.ok((await done).ok(), "PATCH model");

  done = patched();
  await s.tid("temperature").evaluate((el) => {
    const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    set.call(el, "0.3");
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  });
  assert.ok((await done).ok(), "PATCH settings");

  await s.page.reload();
  await s.page.locator('[data-testid="message-assistant"]').waitFor();
  await s.tid("conversation-settings").click();
  assert.equal(await s.tid("system-prompt").inputValue(), "Answer in Korean");
  assert.equal(await s.tid("model-select").inputValue(), ids[ids.length - 1]);
  assert.equal(Number(await s.tid("temperature").inputValue()), 0.3);
  const stored = await conversation(imported);
  assert.equal(stored.system_prompt, "Answer in Korean");
  assert.equal(stored.model, ids[ids.length - 1]);
  assert.equal(stored.settings?.temperature, 0.3);
  assert.equal(stored.title, TITLE, "the other fields are untouched");
  await screenshot(s.page, "17-conversation-settings");
  assertNoPageErrors(s);
});

scenario("18 export as Markdown and JSON", async () => {
  // The panel is open on the imported conversation, on its current (newest) branch.
  const md = s.page.waitForEvent("download");
  await s.tid("export-md").click();
  const mdFile = await md;
  assert.match(mdFile.suggestedFilename(), /\.md$/);
  const markdown = await readFile(await mdFile.path(), "utf8");
  assert.ok(markdown.startsWith(`# ${TITLE}\n`), `the Markdown starts with the title:\n${markdown}`);
  assert.ok(markdown.includes("서울에서 어디 갈까?"), "the shown question");
  assert.ok(markdown.includes("북촌 한옥마을."), "the shown answer");
  assert.ok(!markdown.includes("Where should I go in Seoul?"), "not the other branch");
  assert.ok(markdown.includes("Answer in Korean"), "the system prompt");

  const js = s.page.waitForEvent("download");
  await s.tid("export-json").click();
  const jsonFile = await js;
  assert.match(jsonFile.suggestedFilename(), /\.json$/);
  const doc = JSON.parse(await readFile(await jsonFile.path(), "utf8"));
  assert.equal(doc.title, TITLE);
  assert.equal(doc.messages.length, 4, "every message of every branch");
  for (const m of doc.messages) assert.ok("parent_id" in m, "each message has parent_id");
  const ids = new Set(doc.messages.map((m) => String(m.id)));
  for (const m of doc.messages) if (m.parent_id !== null) assert.ok(ids.has(String(m.parent_id)), "parents are in the file");
  assertNoPageErrors(s);
});

scenario("16 personal API keys", async () => {
  await s.goto("#/settings");
  await s.tid("api-keys").waitFor();
  await s.tid("key-name").fill("laptop");
  await s.tid("create-key").click();
  await s.tid("created-key").waitFor();
  const secret = (await s.tid("created-key").locator("code").textContent()).trim();
  assert.ok(secret.length >= 20, `a real secret: ${secret}`);
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="key-item"]').length === 1);
  await screenshot(s.page, "16-api-key-created");

  // The key works on the OpenAI API, without any cookie.
  const models = await fetch(`${suite.server.base}/v1/models`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(models.status, 200, "the key opens /v1/models");
  const bad = await fetch(`${suite.server.base}/v1/models`, { headers: { Authorization: `Bearer ${secret}x` } });
  assert.equal(bad.status, 401, "a wrong key does not");

  // After a reload the secret is nowhere on the page.
  await s.page.reload();
  await s.tid("key-item").waitFor();
  assert.equal(await s.tid("created-key").count(), 0);
  assert.ok(!(await s.page.content()).includes(secret), "the secret is not shown again");
  const listed = (await s.api("GET", "/api/keys")).body;
  assert.ok(!JSON.stringify(listed).includes(secret), "GET /api/keys does not return the secret");

  await s.tid("revoke-key").click();
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="key-item"]').length === 0);
  const revoked = await fetch(`${suite.server.base}/v1/models`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(revoked.status, 401, "a revoked key is refused");
  assertNoPageErrors(s);
});

scenario("20 dark theme and the phone layout", async () => {
  await s.goto("#/settings");
  await s.tid("theme-select").selectOption("dark");
  await s.page.waitForFunction(() => document.documentElement.dataset.theme === "dark");
  await s.page.reload();
  await s.tid("settings").waitFor();
  assert.equal(await s.page.evaluate(() => document.documentElement.dataset.theme), "dark", "kept after a reload");
  const bg = await s.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 3 * 100, `the page is dark: ${bg}`);
  await s.goto(`#/c/${encodeURIComponent(imported)}`);
  await s.page.locator('[data-testid="message-assistant"]').waitFor();
  await screenshot(s.page, "20-dark-desktop");
  await s.goto("#/settings");
  await s.tid("theme-select").selectOption("light");

  phone = await Session.open(suite.server, suite.browser, {
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 2,
    storageState: await s.context.storageState(),
  });
  const p = phone.page;
  await phone.goto("#/");
  await phone.tid("composer-input").waitFor();
  const sidebarBox = () => phone.tid("sidebar").boundingBox();
  const hidden = async () => {
    const box = await sidebarBox();
    return !box || box.x + box.width <= 1;
  };
  assert.ok(await hidden(), "the sidebar is hidden on a phone");
  const composer = await phone.tid("composer-input").boundingBox();
  assert.ok(composer.x >= 0 && composer.x + composer.width <= 390, "the composer fits the screen");
  await screenshot(p, "20-phone-chat");

  await phone.tid("open-menu").click();
  await p.waitForFunction(() => {
    const box = document.querySelector('[data-testid="sidebar"]')?.getBoundingClientRect();
    return box && box.x >= 0 && box.width > 100;
  });
  await sleep(300); // the slide-in transition
  await screenshot(p, "20-phone-drawer");
  await p.locator(`[data-testid="conversation-item"][data-id="${imported}"] .conv-title`).click();
  await p.waitForFunction((id) => location.hash === `#/c/${encodeURIComponent(id)}`, imported);
  await p.waitForFunction(() => {
    const box = document.querySelector('[data-testid="sidebar"]')?.getBoundingClientRect();
    return box && box.x + box.width <= 1;
  });
  assert.equal(routeId(p), imported);
  await p.locator('[data-testid="message-assistant"]').waitFor();
  assertNoPageErrors(phone);
  assertNoPageErrors(s);
});

scenario("21 a password change signs other browsers out and can revoke the API keys", async () => {
  const created = await s.api("POST", "/api/keys", { name: "script" });
  assert.equal(created.status, 201);
  const secret = created.body.key;
  const v1 = () => fetch(`${suite.server.base}/v1/models`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal((await v1()).status, 200);

  await s.goto("#/settings");
  await s.tid("change-password").waitFor();
  await s.tid("current-password").fill(suite.credentials.password);
  await s.tid("changed-password").fill("a brand new password");
  await s.tid("revoke-keys").check();
  await screenshot(s.page, "21-change-password");
  await s.tid("change-password-submit").click();
  await s.tid("password-changed").waitFor();
  assert.match(await s.tid("password-changed").textContent(), /API keys are revoked/);

  assert.equal((await v1()).status, 401, "the key was revoked");
  assert.equal((await s.api("GET", "/api/conversations")).status, 200, "this browser stays signed in");
  if (phone) assert.equal((await phone.api("GET", "/api/conversations")).status, 401, "the other browser is signed out");
  const again = await s.api("POST", "/api/auth/login", { username: suite.credentials.username, password: "a brand new password" });
  assert.equal(again.status, 200, "the new password works");
  assertNoPageErrors(s);
});
