// Several models (issue 13, item 7), scenario 22: a server with SmolLM2 and a second copy of it
// under another name (`twin`, a symlink in a temporary directory, loaded on first use). The picker
// in the conversation panel lists both with their states; picking `twin` for a new conversation
// stores it with the conversation, the answer comes from `twin` (which the server loads then), and
// after a reload the conversation still shows `twin`.
import assert from "node:assert/strict";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { modelPath, screenshot, startSuite, withDiagnostics } from "./harness.mjs";
import { assertCsrfOnAll, assertNoPageErrors, readMessages, routeId, sendAndWait } from "./ui.mjs";

let suite;
let s;
let dir;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "daehwa-e2e-models-"));
  const twin = join(dir, "twin.gguf");
  await symlink(modelPath(), twin);
  suite = await startSuite({ serverOptions: { ctx: 512, extraArgs: ["-m", twin] } });
  s = suite.session;
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  const exit = await suite?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) => test(name, { timeout: 240_000 }, () => withDiagnostics(name, suite.server, [s.page], body));

const modelStates = async () => {
  const r = await s.api("GET", "/api/models");
  assert.equal(r.status, 200);
  return Object.fromEntries(r.body.models.map((m) => [m.id, m.state]));
};

scenario("22 pick the second model for a conversation and get its answer", async () => {
  assert.deepEqual(await modelStates(), { smollm2: "loaded", twin: "unloaded" });
  await s.goto("#/");
  await s.tid("composer-input").waitFor();
  await s.tid("conversation-settings").click();
  const select = s.tid("model-select");
  await select.waitFor();
  const options = await select.locator("option").evaluateAll((os) => os.map((o) => ({ value: o.value, label: o.textContent })));
  assert.deepEqual(options.map((o) => o.value), ["smollm2", "twin"], "the picker lists the served models, the default first");
  assert.equal(await select.inputValue(), "smollm2", "a new conversation starts on the default model");
  assert.ok(options[1].label.startsWith("twin (") && options[1].label !== "twin", `an unloaded model says so: ${options[1].label}`);
  await select.selectOption("twin");
  await s.tid("chat-model").waitFor();
  assert.equal((await s.tid("chat-model").textContent()).trim(), "twin", "the header shows the picked model");
  await screenshot(s.page, "22-model-picker");

  const posted = s.page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith("/api/conversations"));
  await sendAndWait(s, "Hello! Who are you?");
  const created = await posted;
  assert.equal(JSON.parse(created.request().postData() ?? "{}").model, "twin", "the conversation is created with the picked model");
  const id = routeId(s.page);
  assert.ok(id, "the URL names the new conversation");

  const conv = (await s.api("GET", `/api/conversations/${encodeURIComponent(id)}`)).body;
  assert.equal(conv.model, "twin", "stored with the conversation");
  const answer = conv.messages.find((m) => m.role === "assistant");
  assert.equal(answer?.model, "twin", "the answer came from the picked model");
  assert.ok((answer?.content ?? "").trim().length > 0, "the answer has text");
  assert.equal((await modelStates()).twin, "loaded", "the server loaded it for the answer");
  const shown = await readMessages(s.page);
  assert.equal(shown[shown.length - 1].role, "assistant");

  // After a reload the conversation still uses `twin`.
  await s.page.reload();
  await s.tid("chat-model").waitFor();
  assert.equal((await s.tid("chat-model").textContent()).trim(), "twin");
  await s.tid("conversation-settings").click();
  await s.tid("model-select").waitFor();
  assert.equal(await s.tid("model-select").inputValue(), "twin");
  await screenshot(s.page, "22-model-answer");
  assertNoPageErrors(s);
});
