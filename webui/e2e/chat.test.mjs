// The chat itself, on one server and one conversation as far as possible: a streamed answer (3), the
// automatic title (4), stop (5), regenerate (6), edit and branches (7), reload and the sidebar (8),
// search (9), rename with a Hangul IME and delete (10); the energy of the answers in Settings (23).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ANSWER_TIMEOUT, screenshot, sleep, startSuite, withDiagnostics } from "./harness.mjs";
import {
  Ime,
  assertCsrfOnAll,
  assertNoPageErrors,
  assertStreamed,
  followAnswer,
  readMessages,
  routeId,
  sendAndWait,
  sidebarIds,
  typeAndSend,
} from "./ui.mjs";

const FIRST = "Hello! Tell me about the moon in a few sentences.";
const EDITED = "Hello! Tell me about the sun in a few sentences.";
const LONG = "Write a very long story about a dragon who learns to bake bread, in many chapters.";
const RARE = "zanzibarite";

let suite;
let s;
let conv1; // scenarios 3, 4, 6-10
let conv2; // the stopped answer (5, 8, 10)
const answers = {}; // message ids and texts seen along the way

before(async () => {
  // Sampled answers from the 135M model occasionally run on for a thousand tokens; with room for
  // that, a later question in conversation 1 is never refused for length (scenario 9 was, once).
  suite = await startSuite({ serverOptions: { ctx: 8192 } });
  s = suite.session;
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  const exit = await suite?.stop();
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) =>
  test(name, { timeout: ANSWER_TIMEOUT * 2 }, () => withDiagnostics(name, suite.server, [s.page], body));

const conversation = async (id) => {
  const r = await s.api("GET", `/api/conversations/${encodeURIComponent(id)}`);
  assert.equal(r.status, 200, `GET /api/conversations/${id}`);
  return r.body;
};

scenario("3 send a message and see the streamed answer", async () => {
  await s.goto("#/");
  await s.tid("composer-input").waitFor();
  const followed = await sendAndWait(s, FIRST);
  assertStreamed(followed);
  const shown = await readMessages(s.page);
  assert.deepEqual(
    shown.map((m) => m.role),
    ["user", "assistant"],
    "exactly one user message and one answer",
  );
  assert.equal(shown[0].text.trim(), FIRST);
  assert.ok(shown[1].text.trim().length > 0, "the answer has text");
  assert.ok(!shown[1].text.includes("\uFFFD"), "no U+FFFD in the answer");

  conv1 = routeId(s.page);
  assert.ok(conv1, `the URL names the conversation: ${s.page.url()}`);
  // Later answers in this conversation stay short, so its context never fills up.
  const capped = await s.api("PATCH", `/api/conversations/${encodeURIComponent(conv1)}`, { settings: { max_tokens: 200 } });
  assert.equal(capped.status, 200, "PATCH settings.max_tokens");
  await s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"]`).waitFor();

  const stored = await conversation(conv1);
  assert.equal(stored.messages.length, 2);
  const [u, a] = [stored.messages.find((m) => m.role === "user"), stored.messages.find((m) => m.role === "assistant")];
  assert.equal(u.content, FIRST);
  assert.equal(String(a.parent_id), String(u.id));
  assert.equal(a.status, "complete");
  assert.equal(String(a.id), shown[1].id);
  answers.first = { id: shown[1].id, text: shown[1].text };
  // The energy the answer took: stored with it, shown under it, the tooltip says how it was measured.
  assert.ok(a.energy && a.energy.joules > 0 && ["rapl", "estimate"].includes(a.energy.method), `stored energy: ${JSON.stringify(a.energy)}`);
  const badge = s.page.locator(`[data-testid="message-assistant"][data-id="${shown[1].id}"] [data-testid="energy"]`);
  await badge.waitFor();
  assert.match((await badge.textContent()).trim(), /^[\d.]+ (mJ|J|kJ)$/, "the figure under the answer");
  const tip = await badge.getAttribute("title");
  assert.match(tip, a.energy.method === "rapl" ? /RAPL/ : /estimate/i, `the tooltip: ${tip}`);
  await screenshot(s.page, "03-chat-answer");
  assertNoPageErrors(s);
});

scenario("4 the conversation gets a title by itself", async () => {
  assert.ok(conv1, "needs scenario 3");
  const item = s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"] .conv-title`);
  // The UI polls the title for about 13 s after the first exchange; no reload here.
  await s.page.waitForFunction(
    (id) => {
      const title = document.querySelector('[data-testid="chat-title"]')?.textContent?.trim() ?? "";
      const side = document.querySelector(`[data-testid="conversation-item"][data-id="${id}"] .conv-title`)?.textContent?.trim() ?? "";
      return title && title !== "New conversation" && side === title;
    },
    conv1,
    { timeout: 30_000 },
  );
  const title = (await s.tid("chat-title").textContent()).trim();
  assert.equal((await item.textContent()).trim(), title);
  assert.equal((await conversation(conv1)).title, title, "the title is stored");
  assert.ok(!title.includes("\uFFFD"));
});

scenario("23 Settings shows the energy of today's answers", async () => {
  assert.ok(answers.first, "needs scenario 3");
  await s.goto("#/settings");
  await s.tid("energy-section").waitFor();
  await s.tid("energy-day").first().waitFor();
  const report = (await s.api("GET", "/api/energy")).body;
  assert.equal(report.days.length, 1, `one day of answers: ${JSON.stringify(report)}`);
  assert.ok(report.days[0].answers >= 1 && report.total_joules > 0, JSON.stringify(report));
  const row = (await s.tid("energy-day").first().textContent()).trim();
  assert.ok(row.startsWith(report.days[0].date), `the row names the day: ${row}`);
  assert.match(await s.tid("energy-total").textContent(), /(mJ|J|kJ)/);
  await screenshot(s.page, "23-energy-settings");
  // Back to the conversation for the scenarios that follow.
  await s.goto(`#/c/${encodeURIComponent(conv1)}`);
  await s.tid("composer-input").waitFor();
  assertNoPageErrors(s);
});

scenario("5 stop a stream: the answer stays, incomplete", async () => {
  await s.tid("new-chat").click();
  await s.page.waitForFunction(() => !location.hash.startsWith("#/c/"));
  await s.tid("composer-input").waitFor();
  await typeAndSend(s, LONG);
  const followed = await followAnswer(s, { until: (x) => x.stop && x.text.length > 60 });
  assert.ok(followed.last.stop, "the answer was still streaming");
  await s.tid("stop").click();
  conv2 = routeId(s.page);
  assert.ok(conv2 && conv2 !== conv1);
  await s.tid("send").waitFor(); // the composer is back
  const id = followed.last.id;
  const row = s.page.locator(`[data-testid="message-assistant"][data-id="${id}"]`);
  await s.page.waitForFunction((mid) => document.querySelector(`[data-testid="message-assistant"][data-id="${mid}"]`)?.dataset.status === "incomplete", id, {
    timeout: 15_000,
  });
  assert.match(await row.locator(".message-body").textContent(), /interrupted/i, "the interrupted note is shown");
  const atStop = await row.locator(".md").textContent();
  assert.ok(atStop.length >= 60, "the text written before the stop stays");

  // The server stopped generating: the stored answer is final, incomplete, and stops growing.
  let stored = await conversation(conv2);
  const deadline = Date.now() + 15_000;
  while (stored.messages.find((m) => String(m.id) === id)?.status === "streaming" && Date.now() < deadline) {
    await sleep(250);
    stored = await conversation(conv2);
  }
  const answer = stored.messages.find((m) => String(m.id) === id);
  assert.equal(answer.status, "incomplete");
  await sleep(1500);
  const later = (await conversation(conv2)).messages.find((m) => String(m.id) === id);
  assert.equal(later.content, answer.content, "the stopped answer does not keep growing");
  assert.ok(!answer.content.includes("\uFFFD"), "the stored text is not corrupt");
  assert.equal(stored.messages.length, 2, "one question, one answer: nothing duplicated");
  const squash = (t) => t.replace(/\s+/g, " ").trim();
  assert.ok(
    squash(answer.content).startsWith(squash(atStop).slice(0, 40)),
    `the stored answer begins with what was on screen:\n${atStop}\n---\n${answer.content}`,
  );

  // Without a reload the page comes to show the server's final record (a fresh page shows it).
  const fresh = await s.context.newPage();
  await fresh.goto(`${suite.server.base}/#/c/${encodeURIComponent(conv2)}`);
  const stored_ = fresh.locator(`[data-testid="message-assistant"][data-id="${id}"]`);
  await stored_.waitFor();
  const finalText = await stored_.locator(".md").textContent();
  await fresh.close();
  await s.page.waitForFunction(
    ([mid, text]) => document.querySelector(`[data-testid="message-assistant"][data-id="${mid}"] .md`)?.textContent === text,
    [id, finalText],
    { timeout: 10_000 },
  );
  assert.equal(await row.getAttribute("data-status"), "incomplete");

  await s.page.reload();
  await row.waitFor();
  assert.equal(await row.getAttribute("data-status"), "incomplete");
  assert.match(await row.locator(".message-body").textContent(), /interrupted/i);
  assert.equal(await row.locator(".md").textContent(), finalText, "after a reload the same text");
  await screenshot(s.page, "05-stopped");
  assertNoPageErrors(s);
});

scenario("6 regenerate the last answer", async () => {
  assert.ok(conv1, "needs scenario 3");
  await s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"] .conv-title`).click();
  await s.page.waitForFunction((id) => location.hash === `#/c/${encodeURIComponent(id)}`, conv1);
  const answer = s.page.locator(`[data-testid="message-assistant"][data-id="${answers.first.id}"]`);
  await answer.waitFor();
  assert.deepEqual((await readMessages(s.page)).map((m) => m.role), ["user", "assistant"]);
  await answer.locator('[data-testid="regenerate"]').click();
  const followed = await followAnswer(s);
  // A regenerated answer is sampled anew: a very short one can arrive in one read of the page
  // (seen in CI: 9 characters), so streaming is asserted only for one long enough to be read
  // growing (scenario 3 always checks it).
  if (followed.last.text.length >= 40) assertStreamed(followed);
  else assert.ok(followed.sawStop, "the stop button was shown during the answer");
  assert.equal(followed.last.status, "complete");
  assert.notEqual(followed.last.id, answers.first.id, "a new answer");
  answers.second = { id: followed.last.id, text: followed.last.text };

  const last = s.page.locator('[data-testid="message-assistant"]').last();
  assert.equal((await last.locator('[data-testid="branch-pos"]').textContent()).trim(), "2 / 2");
  await last.locator('[data-testid="branch-prev"]').click();
  await s.page.waitForFunction((id) => !!document.querySelector(`[data-testid="message-assistant"][data-id="${id}"]`), answers.first.id);
  const first = s.page.locator(`[data-testid="message-assistant"][data-id="${answers.first.id}"]`);
  assert.equal((await first.locator('[data-testid="branch-pos"]').textContent()).trim(), "1 / 2");
  assert.equal(await first.locator(".md").textContent(), answers.first.text);
  await first.locator('[data-testid="branch-next"]').click();
  const second = s.page.locator(`[data-testid="message-assistant"][data-id="${answers.second.id}"]`);
  await second.waitFor();
  assert.equal((await second.locator('[data-testid="branch-pos"]').textContent()).trim(), "2 / 2");
  assert.deepEqual((await readMessages(s.page)).map((m) => m.role), ["user", "assistant"]);
  const stored = await conversation(conv1);
  assert.equal(stored.messages.length, 3, "question + two answers");
  await screenshot(s.page, "06-regenerated");
  assertNoPageErrors(s);
});

scenario("7 edit the question and switch between the branches", async () => {
  const user = s.page.locator('[data-testid="message-user"]').first();
  answers.question = await user.getAttribute("data-id");
  await user.locator('[data-testid="edit"]').click();
  await s.tid("edit-input").fill(EDITED);
  await s.tid("edit-save").click();
  const followed = await followAnswer(s);
  assertStreamed(followed);
  assert.equal(followed.last.status, "complete");
  answers.edited = { id: followed.last.id, text: followed.last.text };

  let shown = await readMessages(s.page);
  assert.deepEqual(shown.map((m) => m.role), ["user", "assistant"]);
  assert.equal(shown[0].text.trim(), EDITED);
  assert.notEqual(shown[0].id, answers.question, "the edit is a new message");
  assert.equal(shown[0].branch, "2 / 2");
  assert.equal(shown[1].id, answers.edited.id);
  assert.equal(shown[1].branch, null, "the new question has one answer");

  // Back to the original question: its answers come back with it, still two of them.
  await s.page.locator('[data-testid="message-user"]').first().locator('[data-testid="branch-prev"]').click();
  await s.page.waitForFunction((id) => !!document.querySelector(`[data-testid="message-user"][data-id="${id}"]`), answers.question);
  shown = await readMessages(s.page);
  assert.equal(shown[0].text.trim(), FIRST);
  assert.equal(shown[0].branch, "1 / 2");
  assert.equal(shown[1].id, answers.second.id, "the newest of the original answers");
  assert.equal(shown[1].branch, "2 / 2");
  await screenshot(s.page, "07-branches");

  await s.page.locator('[data-testid="message-user"]').first().locator('[data-testid="branch-next"]').click();
  await s.page.waitForFunction((id) => !!document.querySelector(`[data-testid="message-assistant"][data-id="${id}"]`), answers.edited.id);
  const stored = await conversation(conv1);
  assert.equal(stored.messages.length, 5, "two questions, three answers");
  const editedUser = stored.messages.find((m) => m.content === EDITED);
  const original = stored.messages.find((m) => String(m.id) === answers.question);
  assert.equal(editedUser.parent_id ?? null, original.parent_id ?? null, "the edit is a sibling of the first question");
  assertNoPageErrors(s);
});

scenario("8 reload and find the conversation again", async () => {
  const before = await readMessages(s.page);
  await s.page.reload();
  await s.page.locator(`[data-testid="message-assistant"][data-id="${answers.edited.id}"]`).waitFor();
  assert.equal(routeId(s.page), conv1);
  const afterReload = await readMessages(s.page);
  assert.deepEqual(
    afterReload.map((m) => [m.id, m.role, m.text, m.status]),
    before.map((m) => [m.id, m.role, m.text, m.status]),
    "the same messages after a reload",
  );
  const listed = await sidebarIds(s);
  assert.ok(listed.includes(conv1) && listed.includes(conv2), `both conversations are listed: ${listed}`);

  await s.page.locator(`[data-testid="conversation-item"][data-id="${conv2}"] .conv-title`).click();
  await s.page.locator('[data-testid="message-assistant"][data-status="incomplete"]').waitFor();
  assert.equal(routeId(s.page), conv2);
  assert.equal((await readMessages(s.page))[0].text.trim(), LONG);

  await s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"] .conv-title`).click();
  await s.page.locator(`[data-testid="message-assistant"][data-id="${answers.edited.id}"]`).waitFor();
  assert.deepEqual((await readMessages(s.page)).map((m) => m.id), before.map((m) => m.id));
  assertNoPageErrors(s);
});

scenario("9 search finds words inside messages", async () => {
  await sendAndWait(s, `Have you ever heard the word ${RARE}?`);
  const title = (await conversation(conv1)).title;
  assert.ok(!title.toLowerCase().includes(RARE), `the word must be in a message only, not the title (${title})`);

  await s.tid("search").fill(RARE);
  await s.page.waitForFunction(
    (id) => {
      const ids = [...document.querySelectorAll('[data-testid="conversation-item"]')].map((el) => el.dataset.id);
      return ids.length === 1 && ids[0] === id;
    },
    conv1,
    { timeout: 10_000 },
  );
  await screenshot(s.page, "09-search");

  await s.tid("search").fill("qqxnowherezz");
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation-item"]').length === 0, null, { timeout: 10_000 });
  assert.match(await s.tid("conversation-list").textContent(), /No conversation matches/);

  await s.tid("search").fill("");
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="conversation-item"]').length === 2, null, { timeout: 10_000 });
  assertNoPageErrors(s);
});

scenario("10 rename with a Hangul IME, then delete", async () => {
  const NEW_TITLE = "서울 여행 계획";
  const item = s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"]`);
  await item.hover();
  await item.locator('[data-testid="rename"]').click();
  const input = s.tid("rename-input");
  await input.waitFor();
  await input.fill("");
  const patches = () => s.requests.filter((r) => r.method === "PATCH").length;
  const patchesBefore = patches();

  const ime = new Ime(s);
  await ime.compose("서");
  await ime.compose("서울");
  await ime.enterWhileComposing();
  await sleep(300);
  assert.equal(await input.isVisible(), true, "Enter while composing does not end the rename");
  assert.equal(patches(), patchesBefore, "nothing was saved mid-composition");
  await ime.commit("서울");
  await input.press("End");
  await s.page.keyboard.insertText(" 여행 계획");
  await sleep(100); // past the IME's own Enter window
  await input.press("Enter");
  await s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"] .conv-title`).filter({ hasText: NEW_TITLE }).waitFor();
  assert.equal(patches(), patchesBefore + 1, "one PATCH for the rename");
  await s.page.reload();
  await s.page.locator(`[data-testid="conversation-item"][data-id="${conv1}"] .conv-title`).filter({ hasText: NEW_TITLE }).waitFor();
  assert.equal((await conversation(conv1)).title, NEW_TITLE);
  assert.equal((await s.tid("chat-title").textContent()).trim(), NEW_TITLE);

  const other = s.page.locator(`[data-testid="conversation-item"][data-id="${conv2}"]`);
  await other.hover();
  await other.locator('[data-testid="delete"]').click();
  await other.waitFor({ state: "detached" });
  assert.ok(s.dialogs.some((d) => d.type === "confirm"), "deleting asks first");
  assert.equal((await s.api("GET", `/api/conversations/${encodeURIComponent(conv2)}`)).status, 404);
  await s.goto(`#/c/${encodeURIComponent(conv2)}`);
  await s.page.reload();
  await s.page.locator('[data-testid="messages"] .notice').waitFor();
  assert.match(await s.page.locator('[data-testid="messages"] .notice').textContent(), /does not exist/);
  assertNoPageErrors(s);
});
