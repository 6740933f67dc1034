// Korean: the labels (11), the Hangul IME in the composer (12), and streamed Korean text (13).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ANSWER_TIMEOUT, Session, screenshot, sleep, startSuite, withDiagnostics } from "./harness.mjs";
import { Ime, assertCsrfOnAll, assertNoPageErrors, countPosts, followAnswer, readMessages, routeId } from "./ui.mjs";

let suite;
let s;
const extra = [];

before(async () => {
  suite = await startSuite();
  s = suite.session;
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  for (const e of extra) await e.close().catch(() => {});
  const exit = await suite?.stop();
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) =>
  test(name, { timeout: ANSWER_TIMEOUT * 2 }, () => withDiagnostics(name, suite.server, [s.page, ...extra.map((e) => e.page)], body));

const HANGUL = /[\uAC00-\uD7A3]/;
const QUESTION_TAIL = "! Please write a long story about a cat in Seoul, in many chapters.";

scenario("11 switch to Korean and see Korean labels", async () => {
  await s.goto("#/");
  await s.tid("new-chat").waitFor();
  assert.match(await s.tid("new-chat").textContent(), /New chat/);
  await s.tid("open-settings").click();
  await s.tid("language-select").selectOption("ko");
  await s.page.waitForFunction(() => document.documentElement.lang === "ko");
  assert.match(await s.tid("new-chat").textContent(), /새 대화/);
  assert.match(await s.tid("open-settings").textContent(), /설정/);
  await screenshot(s.page, "11-settings-korean");

  await s.page.locator('a[href="#/"]').last().click(); // back to the chat
  await s.tid("composer-input").waitFor();
  assert.ok(HANGUL.test(await s.tid("composer-input").getAttribute("placeholder")), "the composer placeholder is Korean");
  await s.page.reload();
  await s.tid("composer-input").waitFor();
  assert.match(await s.tid("new-chat").textContent(), /새 대화/, "still Korean after a reload");
  assert.ok(HANGUL.test(await s.tid("composer-input").getAttribute("placeholder")));
  assert.ok(HANGUL.test(await s.page.locator(".welcome").textContent()), "the welcome line is Korean");
  await screenshot(s.page, "11-chat-korean");

  // A fresh browser follows its own language until the user picks one.
  const { cookies } = await s.context.storageState();
  for (const [locale, label] of [
    ["ko-KR", /새 대화/],
    ["en-US", /New chat/],
  ]) {
    const other = await Session.open(suite.server, suite.browser, { locale, storageState: { cookies, origins: [] } });
    extra.push(other);
    await other.goto("#/");
    await other.tid("new-chat").waitFor();
    assert.match(await other.tid("new-chat").textContent(), label, `a ${locale} browser`);
  }
  const anon = await Session.open(suite.server, suite.browser, { locale: "ko-KR" });
  extra.push(anon);
  await anon.goto("#/");
  await anon.tid("login-form").waitFor();
  assert.ok(HANGUL.test(await anon.tid("login-form").locator("h1").textContent()), "the sign-in page is Korean too");
  await screenshot(anon.page, "11-sign-in-korean");
  assertNoPageErrors(s);
});

scenario("12 Enter while a Hangul IME composes does not send", async () => {
  await s.goto("#/");
  const input = s.tid("composer-input");
  await input.waitFor();
  await input.focus();
  const posts = () => countPosts(s, "/messages");
  assert.equal(posts(), 0);

  // As the scenario list says: composition events and a keydown flagged isComposing / keyCode 229.
  await input.dispatchEvent("compositionstart", { data: "" });
  await s.page.keyboard.insertText("안녕");
  await input.evaluate((el) =>
    el.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", isComposing: true, keyCode: 229, bubbles: true, cancelable: true })),
  );
  await sleep(500);
  assert.equal(await s.tid("message-user").count(), 0, "nothing was sent mid-composition");
  assert.equal(posts(), 0, "no POST .../messages mid-composition");
  assert.equal(await input.inputValue(), "안녕");

  // And as a real IME does it (DevTools protocol): a composition, Enter (keyCode 229), a commit.
  const ime = new Ime(s);
  await input.dispatchEvent("compositionend", { data: "안녕" });
  await input.press("End");
  await ime.compose("하");
  await ime.compose("하세");
  await ime.enterWhileComposing();
  await ime.compose("하세요");
  await ime.enterWhileComposing();
  await sleep(500);
  assert.equal(posts(), 0, "no POST while the IME composes");
  await ime.commit("하세요");
  assert.equal(await input.inputValue(), "안녕하세요");
  // A question with a long answer, so that the stream is still running for the checks below.
  await input.press("End");
  await s.page.keyboard.insertText(QUESTION_TAIL);
  await sleep(100); // past the window in which an Enter still belongs to the IME

  // Enter, a click on send and another Enter in the same moment (before the UI re-renders): one send.
  await input.evaluate((el) => {
    const enter = () => el.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", keyCode: 13, bubbles: true, cancelable: true }));
    enter();
    document.querySelector('[data-testid="send"]')?.click();
    enter();
  });
  await s.tid("stop").waitFor({ timeout: ANSWER_TIMEOUT });
  await sleep(300);
  assert.equal(posts(), 1, "Enter after the composition sends once");
  // During the stream: a typed Enter is refused and the text stays; send is replaced by stop.
  await input.fill("또 보내기");
  await input.press("Enter");
  assert.equal(await s.tid("send").count(), 0, "no send button while the answer streams");
  await sleep(300);
  assert.equal(await s.tid("stop").count(), 1, "the answer was still streaming (else this check proves nothing)");
  assert.equal(posts(), 1, "still one POST during the stream");
  assert.equal(await input.inputValue(), "또 보내기", "the refused text stays in the box");
  await s.tid("stop").click(); // the long answer is not needed
  await s.tid("send").waitFor();
  const shown = await readMessages(s.page);
  assert.equal(shown.filter((m) => m.role === "user").length, 1, "one user message");
  assert.equal(shown[0].text.trim(), `안녕하세요${QUESTION_TAIL}`);
  assert.equal(posts(), 1);
  const conv = await s.api("GET", `/api/conversations/${encodeURIComponent(routeId(s.page))}`);
  assert.equal(conv.body.messages.filter((m) => m.role === "user").length, 1, "the server has one question");
  assertNoPageErrors(s);
});

scenario("13 streamed Korean is never broken", async () => {
  await s.tid("new-chat").click();
  await s.page.waitForFunction(() => !location.hash.startsWith("#/c/"));
  // A steady answer: temperature 0 and a Korean system prompt, set before the first message.
  await s.tid("conversation-settings").click();
  await s.tid("system-prompt").fill("항상 한국어로 대답하세요. Always answer in Korean.");
  await s.tid("composer-input").click(); // blur: the draft takes the prompt
  await s.tid("temperature").evaluate((el) => {
    const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    set.call(el, "0");
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  });
  const input = s.tid("composer-input");
  await input.fill("다음 문장을 그대로 따라 쓰세요: 안녕하세요, 만나서 반갑습니다. 서울은 대한민국의 수도입니다.");
  await input.press("Enter");
  const followed = await followAnswer(s);
  assert.equal(followed.last.status, "complete");
  for (const text of followed.texts) assert.ok(!text.includes("\uFFFD"), `U+FFFD while streaming: ${JSON.stringify(text)}`);
  assert.ok(followed.texts.length >= 2, "the answer was seen while streaming");
  const finalText = followed.last.text;
  assert.ok(HANGUL.test(finalText), `the answer has Korean text to test: ${JSON.stringify(finalText)}`);
  assert.ok(!finalText.includes("\uFFFD"));
  const conv = await s.api("GET", `/api/conversations/${encodeURIComponent(routeId(s.page))}`);
  const stored = conv.body.messages.find((m) => m.role === "assistant");
  assert.ok(!stored.content.includes("\uFFFD"), "the stored answer is valid UTF-8 text");
  assert.equal(conv.body.settings?.temperature, 0);
  // A Korean question gets a Korean title, even from a model that mostly writes English.
  await s.page.waitForFunction(
    () => {
      const title = document.querySelector('[data-testid="chat-title"]')?.textContent?.trim() ?? "";
      return title !== "새 대화" && /[\uAC00-\uD7A3]/.test(title);
    },
    null,
    { timeout: 30_000 },
  );
  await screenshot(s.page, "13-korean-answer");
  assertNoPageErrors(s);
});
