// Pulling from Hugging Face (issue 18, item 4), scenario 30: an admin pulls a model from Settings and
// watches it finish, and the model picker shows the served models' size, quantization and context.
// The hub is tests/fake_hub.py on 127.0.0.1 (the hub's API shapes and URL layout) serving a tiny GGUF
// written by scripts/tiny_models.py; the server gets it through HF_ENDPOINT, as it would a mirror.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { REPO, modelPath, screenshot, startSuite, withDiagnostics } from "./harness.mjs";
import { assertCsrfOnAll, assertNoPageErrors } from "./ui.mjs";

let suite;
let s;
let dir;
let hub;

const python = process.env.DAEHWA_PYTHON || "python3";

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "daehwa-e2e-pull-"));
  const gen = spawnSync(python, [join(REPO, "scripts/tiny_models.py"), join(dir, "gen"), "llama"], { encoding: "utf8", timeout: 120_000 });
  assert.equal(gen.status, 0, `scripts/tiny_models.py: ${gen.stderr}`);
  const repo = join(dir, "hub/tiny/llama-GGUF");
  await mkdir(repo, { recursive: true });
  await copyFile(join(dir, "gen/llama.gguf"), join(repo, "tiny-llama-Q8_0.gguf"));
  await writeFile(join(repo, "README.md"), "# tiny\n");
  hub = spawn(python, [join(REPO, "tests/fake_hub.py"), join(dir, "hub")], { stdio: ["pipe", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tests/fake_hub.py printed no port within 30 s")), 30_000);
    createInterface({ input: hub.stdout }).once("line", (l) => {
      clearTimeout(timer);
      resolve(l);
    });
  });
  process.env.HF_ENDPOINT = `http://127.0.0.1:${line.split(" ")[0]}`;
  const models = join(dir, "models");
  await mkdir(models);
  // The default model is served from the models directory, so the picker knows its file.
  await symlink(modelPath(), join(models, "smollm2.gguf"));
  suite = await startSuite({ serverOptions: { ctx: 512, extraArgs: ["--models-dir", models] } });
  s = suite.session;
});

after(async () => {
  if (s) assertCsrfOnAll(s);
  const exit = await suite?.stop();
  hub?.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) => test(name, { timeout: 240_000 }, () => withDiagnostics(name, suite.server, [s.page], body));

scenario("30 an admin pulls a model from Settings and the picker shows size, quantization and context", async () => {
  await s.goto("#/settings");
  const section = s.tid("models");
  await section.waitFor();
  await s.tid("local-model").first().waitFor();
  const before = await s.tid("local-model").allTextContents();
  assert.equal(before.length, 1);
  assert.match(before[0], /^smollm2 — 93\.8 MiB · Q4_1 · \d+ ctx/, `the served model with its file's details: ${before[0]}`);

  await s.tid("pull-model").fill("hf:tiny/llama-GGUF:q8_0");
  await s.tid("pull-start").click();
  const item = s.tid("pull-item").first();
  await item.waitFor();
  await s.page.waitForFunction(() => document.querySelector('[data-testid="pull-item"]')?.getAttribute("data-state") === "done", null, { timeout: 60_000 });
  assert.match(await item.textContent(), /hf:tiny\/llama-GGUF:q8_0: pulled as tiny-llama-Q8_0/);
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="local-model"]').length === 2, null, { timeout: 10_000 });
  const after = await s.tid("local-model").allTextContents();
  assert.ok(after.some((t) => /^tiny-llama-Q8_0 — \d+\.\d KiB · Q8_0 · 512 ctx/.test(t) && t.includes("hf:tiny/llama-GGUF:Q8_0")), `the pulled model and its source: ${after}`);
  await screenshot(s.page, "30-settings-pull");

  // The picker: the served model's name with its file's details.
  await s.goto("#/");
  await s.tid("conversation-settings").click();
  const select = s.tid("model-select");
  await select.waitFor();
  const label = (await select.locator("option").first().textContent()) ?? "";
  assert.match(label, / — 93\.8 MiB · Q4_1 · \d+ ctx$/, `the picker's label: ${label}`);
  await screenshot(s.page, "30-model-picker-details");
  assertNoPageErrors(s);
});
