// Use-case policies (issue 17 item 3): the admin creates a policy in Settings, assigns it to a user,
// edits it and reads the audit trail (40); the user's chat shows the policy it runs under, the
// answer keeps to the policy's per-answer limit and shows no energy figure (41); deleting it lifts it (42).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Session, screenshot, signIn, startSuite, withDiagnostics } from "./harness.mjs";
import { assertCsrfOnAll, assertNoPageErrors, sendAndWait } from "./ui.mjs";

const CAROL = { username: "carol", password: "carol's password 1" };
const POLICY = "수업용";

let suite;
let s;
let carol;
let carolId;

before(async () => {
  suite = await startSuite();
  s = suite.session;
  const r = await s.api("POST", "/api/users", { ...CAROL, is_admin: false });
  assert.equal(r.status, 201, `POST /api/users: ${JSON.stringify(r.body)}`);
  carolId = String(r.body.id);
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  if (carol) assertCsrfOnAll(carol);
  await carol?.close().catch(() => {});
  const exit = await suite?.stop();
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body, timeout = 240_000) =>
  test(name, { timeout }, () => withDiagnostics(name, suite.server, [s.page, carol?.page].filter(Boolean), body));

scenario("40 an admin creates, assigns and edits a policy in Settings; the audit trail shows it", async () => {
  await s.goto("#/settings");
  await s.tid("policies").waitFor();
  assert.equal(await s.tid("policy-item").count(), 0);

  // A bad limit is refused in the form, naming the field's rule; nothing is sent.
  await s.tid("policy-name").fill(POLICY);
  await s.tid("policy-per-answer").fill("0");
  await s.tid("save-policy").click();
  assert.match(await s.tid("policy-error").textContent(), /whole number from 1/);
  assert.equal(s.requests.filter((r) => r.method === "POST" && r.url.endsWith("/api/policies")).length, 0);

  await s.tid("policy-system").fill("You are a tutor for a school class.");
  await s.tid("policy-models").fill("smollm2");
  await s.tid("policy-per-answer").fill("6");
  await s.tid("policy-per-day").fill("1000");
  await s.tid("policy-show-energy").uncheck();
  await s.tid("save-policy").click();
  await s.tid("policy-item").waitFor();
  assert.match(await s.tid("policy-item").textContent(), /수업용[\s\S]*per answer: 6[\s\S]*per day: 1000[\s\S]*energy hidden/);

  // Assign it to carol, picked by her subject id.
  await s.tid("assign-subject").fill(`user:${carolId}`);
  const option = await s.tid("assign-policy").locator("option", { hasText: POLICY }).getAttribute("value");
  await s.tid("assign-policy").selectOption(option);
  await s.tid("assign").click();
  await s.page.waitForFunction(() => /carol \(user:/.test(document.querySelector('[data-testid="policy-subjects"]')?.textContent ?? ""));

  // Edit: the per-answer limit goes to 5.
  await s.tid("edit-policy").click();
  assert.equal(await s.tid("policy-name").inputValue(), POLICY, "the form holds the policy");
  await s.tid("policy-per-answer").fill("5");
  await s.tid("save-policy").click();
  await s.page.waitForFunction(() => /per answer: 5/.test(document.querySelector('[data-testid="policy-item"]')?.textContent ?? ""));

  // The server has what the UI shows.
  const list = await s.api("GET", "/api/policies");
  assert.equal(list.status, 200);
  const p = list.body.policies[0];
  assert.deepEqual(
    [p.name, p.system_prompt, p.allowed_models, p.max_tokens_per_answer, p.max_tokens_per_day, p.show_energy, p.subjects],
    [POLICY, "You are a tutor for a school class.", ["smollm2"], 5, 1000, false, [`user:${carolId}`]],
  );

  await s.tid("show-audit").click();
  await s.tid("policy-audit").waitFor();
  const actions = await s.page.$$eval('[data-testid="audit-entry"] td:nth-child(3)', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(actions, ["update", "assign", "create"]);
  assert.match(await s.tid("audit-entry").first().textContent(), /admin[\s\S]*update[\s\S]*수업용/);
  await screenshot(s.page, "40-settings-policies");
  assertNoPageErrors(s);
});

scenario("41 the user's chat shows the policy it runs under and keeps to it", async () => {
  // The admin runs under no policy: no label.
  await s.goto("#/");
  await s.tid("chat").waitFor();
  await s.page.waitForLoadState("networkidle");
  assert.equal(await s.tid("policy-label").count(), 0, "no label without a policy");

  carol = await Session.open(suite.server, suite.browser);
  await signIn(carol, CAROL.username, CAROL.password);
  await carol.goto("#/");
  await carol.tid("chat").waitFor();
  const label = carol.tid("policy-label");
  await label.waitFor();
  assert.equal((await label.textContent()).trim(), `Policy: ${POLICY}`);
  assert.match(await label.getAttribute("title"), /At most 5 tokens per answer[\s\S]*0 of 1000 tokens used today/);

  const { last } = await sendAndWait(carol, "Say hello to the class.");
  assert.ok(last && last.text.trim().length > 0, "an answer came");
  // The answer is cut at the policy's 5 tokens, and shows no energy figure.
  const convId = new URL(carol.page.url()).hash.replace(/^#\/c\//, "");
  const conv = await carol.api("GET", `/api/conversations/${decodeURIComponent(convId)}`);
  assert.equal(conv.status, 200);
  const stored = conv.body.messages.filter((m) => m.role === "assistant");
  assert.equal(stored.length, 1);
  assert.ok(stored[0].completion_tokens >= 1 && stored[0].completion_tokens <= 5, `at most 5 tokens: ${JSON.stringify(stored[0])}`);
  assert.equal(stored[0].energy ?? null, null, "no energy stored for the UI");
  assert.equal(await carol.page.locator('[data-testid="energy"]').count(), 0, "the policy hides energy");
  // Today's tokens moved: the label says so after the answer.
  await carol.page.waitForFunction(() => !/ 0 of 1000/.test(document.querySelector('[data-testid="policy-label"]')?.getAttribute("title") ?? " 0 of 1000"), null, { timeout: 15_000 });
  await screenshot(carol.page, "41-chat-policy-label");
  assertNoPageErrors(carol);
});

scenario("42 deleting the policy in Settings lifts it: the label goes, the audit trail says so", async () => {
  await s.goto("#/settings");
  await s.tid("policy-item").waitFor();
  await s.tid("delete-policy").click();
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="policy-item"]').length === 0);
  assert.ok(s.dialogs.some((d) => d.type === "confirm" && d.message.includes(POLICY)), "asked to confirm, naming the policy");
  await s.tid("show-audit").click();
  await s.tid("policy-audit").waitFor();
  assert.match(await s.tid("audit-entry").first().textContent(), /delete[\s\S]*수업용/);

  // Carol's page is already at `#/`: a hash navigation does not reload it, and the label is
  // read when the chat view mounts, so reload to see what she sees on her next visit.
  await carol.goto("#/");
  await carol.page.reload();
  await carol.tid("chat").waitFor();
  await carol.page.waitForLoadState("networkidle");
  assert.equal(await carol.tid("policy-label").count(), 0, "no policy, no label");
  assertNoPageErrors(s);
});
