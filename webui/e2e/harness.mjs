/**
 * The browser suite's harness: the real `daehwa serve` binary with the real SmolLM2 model on a free
 * port and a fresh data directory, Debian's chromium driven by playwright-core, screenshots, and a
 * `Session` (one browser context + page) that records every request the UI makes.
 *
 * Environment:
 * - `DAEHWA_BIN`: the binary (default `target/release/daehwa`)
 * - `DAEHWA_E2E_MODEL` or `DAEHWA_SMOLLM2_GGUF`: the GGUF (default: `smollm2.gguf` in
 *   `$DAEHWA_MODELS_DIR` or `${XDG_DATA_HOME:-~/.local/share}/daehwa/models`)
 * - `DAEHWA_CHROMIUM`: the browser (default `/usr/bin/chromium`)
 * - `DAEHWA_E2E_SCREENSHOTS`: where screenshots go (default `target/e2e-screenshots`)
 * - `DAEHWA_E2E_THREADS`: model threads of the server (default 2)
 * - `DAEHWA_E2E_VERBOSE=1`: echo the server's stderr; `DAEHWA_E2E_KEEP=1`: keep the data directory
 * - `DAEHWA_E2E_UI_FROM_DIST=1`: the browser gets `/` and `/assets/*` from `webui/dist` instead of
 *   the binary (with the binary's headers), to iterate on the UI without rebuilding daehwa; the
 *   real runs (tests/webui_e2e.rs) never set it
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

/** The repository root. */
export const REPO = fileURLToPath(new URL("../../", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
export const CSRF_HEADER = "X-Daehwa-CSRF";
export const CSRF = { [CSRF_HEADER]: "1" };

/** Milliseconds one model answer may take on a busy 2-core machine (generous, but bounded). */
export const ANSWER_TIMEOUT = Number(process.env.DAEHWA_E2E_ANSWER_TIMEOUT_MS || 180_000);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function binPath() {
  return process.env.DAEHWA_BIN || join(REPO, "target/release/daehwa");
}

export function modelPath() {
  const explicit = process.env.DAEHWA_E2E_MODEL || process.env.DAEHWA_SMOLLM2_GGUF;
  if (explicit) return explicit;
  const data = process.env.XDG_DATA_HOME || join(homedir(), ".local/share");
  const dir = process.env.DAEHWA_MODELS_DIR || join(data, "daehwa/models");
  return join(dir, "smollm2.gguf");
}

export function chromiumPath() {
  return process.env.DAEHWA_CHROMIUM || "/usr/bin/chromium";
}

export function screenshotDir() {
  return process.env.DAEHWA_E2E_SCREENSHOTS || join(REPO, "target/e2e-screenshots");
}

/** Fails early and clearly when something the suite needs is not there. */
export function checkPrerequisites() {
  const missing = [];
  if (!existsSync(binPath())) missing.push(`the daehwa binary at ${binPath()} (cargo build --release, or set DAEHWA_BIN)`);
  if (!existsSync(modelPath())) missing.push(`the model at ${modelPath()} (daehwa pull smollm2)`);
  if (!existsSync(chromiumPath())) missing.push(`chromium at ${chromiumPath()} (apt-get install chromium)`);
  if (missing.length) throw new Error(`the browser tests cannot run; missing:\n  ${missing.join("\n  ")}`);
}

/**
 * A running `daehwa serve`. `base` is `http://127.0.0.1:PORT`; `log` keeps the server's last stderr
 * lines for failure reports.
 */
export class Server {
  constructor(child, base, dataDir, log) {
    this.child = child;
    this.base = base;
    this.dataDir = dataDir;
    this.log = log;
    this.exit = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
      else child.once("exit", (code, signal) => resolve({ code, signal }));
    });
  }

  /** The server's last stderr lines. */
  tail(n = 40) {
    return this.log.slice(-n).join("\n");
  }

  /**
   * Stops the server with SIGTERM (graceful drain), SIGKILL after 15 s; returns how it exited and
   * removes the data directory unless DAEHWA_E2E_KEEP is set.
   */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 15_000);
    const result = await this.exit;
    clearTimeout(timer);
    if (!process.env.DAEHWA_E2E_KEEP) await rm(this.dataDir, { recursive: true, force: true });
    return result;
  }
}

// No server outlives the test process, also when the run is interrupted.
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    for (const child of running) child.kill("SIGKILL");
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

/**
 * Starts `daehwa serve` on 127.0.0.1 port 0 with a fresh `--data-dir` and the real model; resolves
 * once its first stdout line (the URL) is printed. `ctx` bounds context and so every answer.
 */
export async function startServer({ ctx = 1024, extraArgs = [] } = {}) {
  checkPrerequisites();
  const dataDir = await mkdtemp(join(tmpdir(), "daehwa-e2e-"));
  // The server reads DAEHWA_* settings from the environment: start from none of them.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DAEHWA_")));
  const args = [
    "serve",
    "--host", "127.0.0.1",
    "--port", "0",
    "--data-dir", dataDir,
    "-m", modelPath(),
    "-t", process.env.DAEHWA_E2E_THREADS || "2",
    "--ctx", String(ctx),
    "--drain-timeout", "5",
    ...extraArgs,
  ];
  const child = spawn(binPath(), args, { env, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const log = [];
  let partial = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    if (process.env.DAEHWA_E2E_VERBOSE) process.stderr.write(chunk);
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    log.push(...lines);
    if (log.length > 400) log.splice(0, log.length - 400);
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`daehwa serve printed no URL within 120 s:\n${log.join("\n")}`)), 120_000);
    child.stdout.setEncoding("utf8");
    const onData = (chunk) => {
      out += chunk;
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      child.stdout.off("data", onData);
      child.stdout.resume(); // keep draining later output
      resolve(out.slice(0, nl).trim());
    };
    child.stdout.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`daehwa serve exited (${code ?? signal}) before printing its URL:\n${log.concat(partial).join("\n")}`));
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  const m = /^(http:\/\/127\.0\.0\.1:\d+)\/v1$/.exec(url);
  if (!m) {
    child.kill("SIGKILL");
    throw new Error(`the first stdout line of daehwa serve is not its URL: ${JSON.stringify(url)}`);
  }
  return new Server(child, m[1], dataDir, log);
}

/** Debian's chromium, headless, through playwright-core. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

/** Writes `<dir>/<name>.png` of the page's viewport; returns the path. */
export async function screenshot(page, name) {
  const dir = screenshotDir();
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/**
 * One user's browser: a context (cookies, storage) and its page. Every request the page makes is
 * recorded (`requests`), every dialog too (`dialogs`: confirm dialogs are accepted), and so are
 * uncaught page errors (`pageErrors`).
 */
export class Session {
  constructor(server, context, page) {
    this.server = server;
    this.context = context;
    this.page = page;
    this.requests = [];
    this.dialogs = [];
    this.pageErrors = [];
    this.popups = [];
    page.on("request", (r) => this.requests.push({ method: r.method(), url: r.url(), headers: r.headers() }));
    page.on("dialog", (d) => {
      this.dialogs.push({ type: d.type(), message: d.message() });
      void d.accept().catch(() => {});
    });
    page.on("pageerror", (err) => this.pageErrors.push(String(err)));
    // Pages opened by a link (target=_blank) are recorded and closed; pages the test opens stay.
    context.on("page", async (p) => {
      if (!(await p.opener())) return;
      this.popups.push(p.url());
      p.on("framenavigated", (f) => {
        if (f === p.mainFrame()) this.popups.push(f.url());
      });
      await p.waitForLoadState("domcontentloaded", { timeout: 2_000 }).catch(() => {});
      this.popups.push(p.url());
      await p.close().catch(() => {});
    });
  }

  static async open(server, browser, options = {}) {
    const context = await browser.newContext({
      baseURL: server.base,
      locale: "en-US",
      viewport: { width: 1280, height: 800 },
      acceptDownloads: true,
      ...options,
    });
    context.setDefaultTimeout(30_000);
    if (process.env.DAEHWA_E2E_UI_FROM_DIST) await serveDist(context, server.base);
    const page = await context.newPage();
    return new Session(server, context, page);
  }

  /** The element with this `data-testid` (a Playwright locator). */
  tid(id) {
    return this.page.locator(`[data-testid="${id}"]`);
  }

  /** Opens the web UI at a hash route (`#/`, `#/c/ID`, `#/settings`). */
  async goto(hash = "#/") {
    await this.page.goto(`${this.server.base}/${hash}`);
  }

  /**
   * A JSON API call with this context's cookies (and the CSRF header unless `csrf: false`):
   * `{status, body}` with `body` parsed when it is JSON.
   */
  async api(method, path, data, { csrf = true, headers = {} } = {}) {
    const res = await this.context.request.fetch(`${this.server.base}${path}`, {
      method,
      data,
      headers: { ...(csrf ? CSRF : {}), ...headers },
      failOnStatusCode: false,
    });
    const text = await res.text();
    let body = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status(), body, headers: res.headers() };
  }

  /** Requests to `/api/...` and `/v1/...` recorded so far whose method changes state. */
  stateChanging() {
    return this.requests.filter((r) => !["GET", "HEAD", "OPTIONS"].includes(r.method));
  }

  async close() {
    await this.context.close();
  }
}

/** See DAEHWA_E2E_UI_FROM_DIST above. */
async function serveDist(context, base) {
  const dist = join(REPO, "webui/dist");
  await context.route(
    (url) => url.origin === base && (url.pathname === "/" || url.pathname.startsWith("/assets/")),
    async (route) => {
      const path = new URL(route.request().url()).pathname;
      const original = await route.fetch();
      const headers = { ...original.headers() };
      delete headers["content-length"];
      delete headers["content-type"];
      await route.fulfill({ path: join(dist, path === "/" ? "index.html" : path), headers, status: 200 });
    },
  );
}

/** Creates the first admin through the API (the setup page itself is tested in account.test.mjs). */
export async function createAdmin(session, username = "admin", password = "correct horse battery") {
  const r = await session.api("POST", "/api/auth/setup", { username, password });
  if (r.status >= 300) throw new Error(`POST /api/auth/setup answered ${r.status}: ${JSON.stringify(r.body)}`);
  return { username, password, user: r.body };
}

/** Signs a session in through the API. */
export async function signIn(session, username, password) {
  const r = await session.api("POST", "/api/auth/login", { username, password });
  if (r.status >= 300) throw new Error(`POST /api/auth/login answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * Everything one test file needs: a server, a browser and a signed-in admin session (unless
 * `admin: false`). Call `stop()` in `after`.
 */
export async function startSuite({ admin = true, serverOptions = {} } = {}) {
  const server = await startServer(serverOptions);
  let browser;
  try {
    const index = await (await fetch(`${server.base}/`)).text();
    if (!/<script[^>]+src="\/assets\//.test(index)) {
      throw new Error("this daehwa binary has no web UI built in: build webui/dist (cd webui && npm ci && npm run build), then rebuild daehwa");
    }
    browser = await launchBrowser();
    const session = await Session.open(server, browser);
    const credentials = admin ? await createAdmin(session) : null;
    return {
      server,
      browser,
      session,
      credentials,
      async stop() {
        await browser.close().catch(() => {});
        return server.stop();
      },
    };
  } catch (err) {
    await browser?.close().catch(() => {});
    await server.stop();
    throw err;
  }
}

/**
 * Runs one scenario body; on failure it saves a screenshot (`FAIL-<name>.png`) of each page given
 * and adds the server's last log lines to the error.
 */
export async function withDiagnostics(name, server, pages, body) {
  try {
    return await body();
  } catch (err) {
    for (const [i, page] of pages.entries()) {
      await screenshot(page, `FAIL-${name}${i ? `-${i}` : ""}`).catch(() => {});
    }
    if (err instanceof Error) err.message += `\n--- daehwa serve (last lines) ---\n${server.tail()}`;
    throw err;
  }
}
