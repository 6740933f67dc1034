// Accounts: the first-run setup (1), signing out and in (2), isolation between users (15), CSRF on
// every state change (21), and the sign-in rate limit (2, last: it may lock the address out).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Session, screenshot, startSuite, withDiagnostics } from "./harness.mjs";
import { assertCsrfOnAll, assertNoPageErrors } from "./ui.mjs";

const ADMIN = { username: "admin", password: "correct horse battery" };
const BOB = { username: "bob", password: "bobs secret password" };

let suite;
let s; // the admin's session
let bob; // bob's session (scenario 15)
let adminConvId;

before(async () => {
  suite = await startSuite({ admin: false });
  s = suite.session;
});

after(async () => {
  await bob?.close().catch(() => {});
  const exit = await suite?.stop();
  if (exit) assert.equal(exit.code, 0, `daehwa serve did not exit cleanly on SIGTERM: ${JSON.stringify(exit)}`);
});

const scenario = (name, body) =>
  test(name, { timeout: 180_000 }, () => withDiagnostics(name, suite.server, [s.page, bob?.page].filter(Boolean), body));

scenario("1 first run creates the admin", async () => {
  const state0 = await s.api("GET", "/api/auth/state");
  assert.equal(state0.status, 200);
  assert.equal(state0.body.needs_setup, true, "a fresh store needs setup");

  await s.goto("#/");
  const form = s.tid("setup-form");
  await form.waitFor();
  await screenshot(s.page, "01-setup");
  await form.locator('input[name="username"]').fill(ADMIN.username);
  await form.locator('input[name="password"]').fill(ADMIN.password);
  await form.locator('input[name="password-repeat"]').fill(`${ADMIN.password}!`);
  await form.locator('button[type="submit"]').click();
  await s.tid("auth-error").waitFor();
  assert.equal((await s.api("GET", "/api/auth/state")).body.needs_setup, true, "a mismatch created nothing");

  await form.locator('input[name="password-repeat"]').fill(ADMIN.password);
  const setupDone = s.page.waitForResponse((r) => r.url().endsWith("/api/auth/setup"));
  await form.locator('button[type="submit"]').click();
  assert.ok((await setupDone).ok(), "POST /api/auth/setup succeeded");
  await s.tid("chat").waitFor();
  await s.tid("composer-input").waitFor();
  const state1 = await s.api("GET", "/api/auth/state");
  assert.equal(state1.body.needs_setup, false);
  assert.equal(state1.body.user?.username, ADMIN.username);
  assert.equal(state1.body.user?.is_admin, true);
  await screenshot(s.page, "02-empty-chat");

  // The setup route is closed once an admin exists, for anyone.
  const again = await s.api("POST", "/api/auth/setup", { username: "mallory", password: "another password" });
  assert.ok(again.status >= 400 && again.status < 500, `a second setup answered ${again.status}`);
  assertNoPageErrors(s);
});

scenario("2 sign out, wrong password, sign in", async () => {
  await s.tid("sign-out").click();
  const form = s.tid("login-form");
  await form.waitFor();
  assert.equal((await s.api("GET", "/api/auth/state")).body.user, null, "signed out on the server too");
  await screenshot(s.page, "02-sign-in");

  await form.locator('input[name="username"]').fill(ADMIN.username);
  await form.locator('input[name="password"]').fill("not the password");
  const wrong = s.page.waitForResponse((r) => r.url().endsWith("/api/auth/login"));
  await form.locator('button[type="submit"]').click();
  assert.equal((await wrong).status(), 401);
  await s.tid("auth-error").waitFor();
  assert.match(await s.tid("auth-error").textContent(), /wrong/i);

  await form.locator('input[name="password"]').fill(ADMIN.password);
  await form.locator('button[type="submit"]').click();
  await s.tid("chat").waitFor();
  await s.page.reload();
  await s.tid("chat").waitFor(); // the session cookie survives a reload
  assertNoPageErrors(s);
});

scenario("15 a second user cannot see or touch the first user's conversations", async () => {
  const created = await s.api("POST", "/api/conversations", { title: "Admin secret plans" });
  assert.ok(created.status < 300, `POST /api/conversations answered ${created.status}`);
  adminConvId = String(created.body.id);

  // The admin adds bob in the settings.
  await s.tid("open-settings").click();
  await s.tid("users").waitFor();
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="user-item"]').length === 1);
  await s.tid("new-username").fill(BOB.username);
  await s.tid("new-password").fill(BOB.password);
  await s.tid("add-user").click();
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="user-item"]').length === 2);
  await screenshot(s.page, "15-settings-users");

  // Bob signs in in his own browser context.
  bob = await Session.open(suite.server, suite.browser);
  await bob.goto("#/");
  const form = bob.tid("login-form");
  await form.waitFor();
  await form.locator('input[name="username"]').fill(BOB.username);
  await form.locator('input[name="password"]').fill(BOB.password);
  await form.locator('button[type="submit"]').click();
  await bob.tid("chat").waitFor();
  await bob.page.waitForLoadState("networkidle");
  assert.equal(await bob.tid("conversation-item").count(), 0, "bob's sidebar is empty");
  await bob.tid("open-settings").click();
  await bob.tid("api-keys").waitFor();
  assert.equal(await bob.tid("users").count(), 0, "bob is no admin: no user management");

  await bob.goto(`#/c/${encodeURIComponent(adminConvId)}`);
  await bob.page.locator('[data-testid="messages"] .notice').waitFor();
  assert.equal(await bob.tid("composer-input").count(), 0, "no composer on a conversation that is not his");

  const path = `/api/conversations/${encodeURIComponent(adminConvId)}`;
  assert.equal((await bob.api("GET", path)).status, 404, `GET ${path} as bob`);
  assert.equal((await bob.api("PATCH", path, { title: "pwned" })).status, 404, `PATCH ${path} as bob`);
  assert.equal((await bob.api("POST", `${path}/messages`, { parent_id: null, content: "hi" })).status, 404, "POST messages as bob");
  assert.equal((await bob.api("DELETE", path)).status, 404, `DELETE ${path} as bob`);
  const search = await bob.api("GET", "/api/conversations?q=secret");
  assert.equal(search.status, 200);
  assert.equal((search.body.conversations ?? search.body).length, 0, "bob's search finds nothing of the admin's");
  assert.ok([401, 403].includes((await bob.api("GET", "/api/users")).status), "bob is no admin: GET /api/users refused");

  // The admin's conversation is untouched.
  const mine = await s.api("GET", path);
  assert.equal(mine.status, 200);
  assert.equal(mine.body.title, "Admin secret plans");

  // The admin removes bob: bob's next request shows the sign-in page.
  const bobItem = s.tid("user-item").filter({ hasText: BOB.username });
  await bobItem.locator('[data-testid="remove-user"]').click();
  await s.page.waitForFunction(() => document.querySelectorAll('[data-testid="user-item"]').length === 1);
  assert.ok(s.dialogs.some((d) => d.type === "confirm"), "removing a user asks first");
  await bob.goto("#/");
  await bob.tid("search").fill("anything");
  await bob.tid("login-form").waitFor({ timeout: 10_000 });
  assert.equal((await bob.api("GET", "/api/auth/state")).body.user, null, "bob's session is gone");
  assertNoPageErrors(s);
  assertNoPageErrors(bob);
});

scenario("21 every state change carries the CSRF header; without it the server refuses", async () => {
  const checked = assertCsrfOnAll(s) + (bob ? assertCsrfOnAll(bob) : 0);
  assert.ok(checked >= 5, `too few state-changing requests recorded (${checked})`);

  const before = (await s.api("GET", "/api/conversations")).body;
  const count = (b) => (b.conversations ?? b).length;
  // Same-origin fetches from the page, with the session cookie but without the header.
  const results = await s.page.evaluate(async (id) => {
    const send = async (method, path, body, type = "application/json") => {
      const r = await fetch(path, {
        method,
        credentials: "same-origin",
        headers: body === undefined ? {} : { "Content-Type": type },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return r.status;
    };
    return {
      create: await send("POST", "/api/conversations", { title: "forged" }),
      createPlain: await send("POST", "/api/conversations", { title: "forged" }, "text/plain"),
      patch: await send("PATCH", `/api/conversations/${encodeURIComponent(id)}`, { title: "forged" }),
      del: await send("DELETE", `/api/conversations/${encodeURIComponent(id)}`),
      key: await send("POST", "/api/keys", { name: "forged" }),
      logout: await send("POST", "/api/auth/logout"),
    };
  }, adminConvId);
  for (const [what, status] of Object.entries(results)) {
    assert.ok(status >= 400 && status < 500, `${what} without ${"X-Daehwa-CSRF"} answered ${status}`);
  }
  const afterList = (await s.api("GET", "/api/conversations")).body;
  assert.equal(count(afterList), count(before), "no conversation was created or deleted");
  const conv = await s.api("GET", `/api/conversations/${encodeURIComponent(adminConvId)}`);
  assert.equal(conv.body.title, "Admin secret plans", "the forged PATCH changed nothing");
  assert.equal((await s.api("GET", "/api/keys")).body.keys?.length ?? 0, 0, "no key was created");
  assert.notEqual((await s.api("GET", "/api/auth/state")).body.user, null, "the forged logout did not sign out");
});

scenario("2 many wrong passwords hit the rate limit", async () => {
  await s.tid("sign-out").click();
  const form = s.tid("login-form");
  await form.waitFor();
  await form.locator('input[name="username"]').fill(ADMIN.username);
  await form.locator('input[name="password"]').fill("guessing wrong");
  const statuses = [];
  for (let i = 0; i < 40 && !statuses.includes(429); i++) {
    const answer = s.page.waitForResponse((r) => r.url().endsWith("/api/auth/login"));
    await form.locator('button[type="submit"]').click();
    statuses.push((await answer).status());
    await s.page.waitForFunction(() => !document.querySelector('[data-testid="login-form"] button[type="submit"]')?.disabled);
  }
  assert.ok(statuses.includes(429), `40 wrong passwords in a row were never rate limited: ${statuses.join(",")}`);
  assert.ok(statuses.slice(0, statuses.indexOf(429)).every((x) => x === 401), `before the limit: ${statuses.join(",")}`);
  await s.page.waitForFunction(() => /too many/i.test(document.querySelector('[data-testid="auth-error"]')?.textContent ?? ""));
  await screenshot(s.page, "02-rate-limited");
});
