// console.spec.mjs: hookline's operations console in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core). Started by run_console.py, which
// sets the stage and passes everything in the environment. Each step asserts what
// an operator would notice; screenshots of each view go to $ARTIFACTS.
import assert from "node:assert/strict";
import path from "node:path";

const env = process.env;
const {chromium} = await import(env.PLAYWRIGHT_CORE);
const BASE = env.BASE_URL;
const shots = (name) => path.join(env.ARTIFACTS, name + ".png");

const browser = await chromium.launch({
  executablePath: env.CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"],
});
let failed = false;
const consoleErrors = [];

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed = true;
    console.log(`FAIL ${name}\n${e.stack || e}\npage messages so far: ${JSON.stringify(consoleErrors)}`);
  }
}

async function newPage(context, width = 1280, height = 900) {
  const page = await context.newPage();
  await page.setViewportSize({width, height});
  page.on("dialog", async (d) => { consoleErrors.push("dialog: " + d.message()); await d.dismiss(); });
  page.on("pageerror", (e) => consoleErrors.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push("console: " + m.text()); });
  page.on("response", (r) => { if (r.status() === 404) consoleErrors.push("404: " + r.url()); });
  return page;
}

async function signIn(page, token, role) {
  await page.goto(BASE + "/console/");
  await page.waitForSelector("#token", {state: "visible"});
  await page.fill("#token", token);
  await page.press("#token", "Enter");
  await page.waitForFunction((r) => document.getElementById("role").textContent.startsWith(r), role);
  await page.waitForSelector("#view-title");
}

// Nothing any sender controls became markup or ran.
async function assertInert(page, where) {
  const r = await page.evaluate(() => ({
    pwned: window.__pwned,
    imgs: document.querySelectorAll("img").length,
    scripts: Array.from(document.scripts).map((s) => s.getAttribute("src")),
    jsLinks: Array.from(document.querySelectorAll("a")).filter((a) => /^\s*javascript:/i.test(a.getAttribute("href") || "")).length,
    onAttrs: Array.from(document.querySelectorAll("*")).filter((e) => Array.from(e.attributes).some((a) => a.name.startsWith("on"))).length,
  }));
  assert.equal(r.pwned, undefined, where + ": a payload ran");
  assert.equal(r.imgs, 0, where + ": an <img> was injected");
  assert.deepEqual(r.scripts, ["app.js"], where + ": a <script> was injected");
  assert.equal(r.jsLinks, 0, where + ": a javascript: link was made");
  assert.equal(r.onAttrs, 0, where + ": an on* attribute was made");
}

async function tokenNowhere(page, token, where) {
  const r = await page.evaluate(() => ({
    local: JSON.stringify(Object.assign({}, localStorage)),
    session: JSON.stringify(Object.assign({}, sessionStorage)),
    cookie: document.cookie,
    url: location.href,
    html: document.documentElement.outerHTML,
    input: document.getElementById("token").value,
  }));
  for (const [k, v] of Object.entries(r)) assert.ok(!v.includes(token), `${where}: the token is in ${k}`);
  assert.ok(!r.cookie.includes("hookline_session"), where + ": the session cookie is readable by scripts");
}

// ---------------- viewer ----------------
const viewerCtx = await browser.newContext();
const vp = await newPage(viewerCtx);

await step("sign-in page and a wrong token", async () => {
  await vp.goto(BASE + "/console/");
  await vp.waitForSelector("#token", {state: "visible"});
  assert.equal(await vp.getAttribute("#token", "type"), "password");
  const label = await vp.textContent("label[for=token]");
  assert.equal(label.trim(), "Token");
  await vp.fill("#token", "not-the-token-at-all");
  await vp.press("#token", "Enter");
  await vp.waitForFunction(() => document.getElementById("signin-error").textContent.length > 0);
  assert.match(await vp.textContent("#signin-error"), /neither admin.token nor admin.viewer_token/);
  await vp.screenshot({path: shots("signin")});
});

await step("sign in as viewer: the token is kept nowhere", async () => {
  await signIn(vp, env.VIEWER_TOKEN, "viewer");
  await tokenNowhere(vp, env.VIEWER_TOKEN, "viewer");
  const cookies = await viewerCtx.cookies();
  const c = cookies.find((x) => x.name === "hookline_session");
  assert.ok(c, "no session cookie");
  assert.equal(c.httpOnly, true);
  assert.equal(c.sameSite, "Strict");
});

await step("overview shows rates, queue, DIDWW answers and charts", async () => {
  await vp.goto(BASE + "/console/#/overview");
  await vp.waitForSelector(".stat");
  const text = await vp.textContent("#content");
  for (const w of ["Webhooks received", "Queue depth", "Delivery", "Rule version", "DIDWW answers by status", "422"]) {
    assert.ok(text.includes(w), "overview lacks " + w);
  }
  assert.ok(await vp.$$eval("svg.chart", (s) => s.length) >= 3);
  await vp.screenshot({path: shots("overview"), fullPage: true});
});

await step("a DID's story found by a number typed as a person writes it", async () => {
  await vp.goto(BASE + "/console/#/did");
  await vp.waitForSelector("#did-q");
  await vp.focus("#did-q");
  await vp.keyboard.type(env.NUMBER_TYPED, {delay: 20});
  await vp.waitForSelector("#timeline li");
  const kinds = await vp.$$eval("#timeline .kind", (k) => k.map((x) => x.textContent));
  for (const k of ["event.received", "rule.decided", "job.queued", "job.attempt", "job.done", "job.dead"]) {
    assert.ok(kinds.includes(k), "story lacks " + k + ": " + kinds.join(","));
  }
  assert.ok(await vp.$$eval(".sides", (s) => s.length) >= 1, "no before/after side by side");
  // the URL holds the query: the view is linkable
  const hash = await vp.evaluate(() => location.hash);
  assert.ok(decodeURIComponent(hash.replace(/\+/g, " ")).includes(env.NUMBER_TYPED), hash);
  const times = await vp.$$eval("#timeline time", (t) => t.map((x) => x.getAttribute("title")));
  assert.ok(times.length > 0 && times.every((t) => t.startsWith("UTC ")), "no UTC title on times");
  await vp.screenshot({path: shots("did-story"), fullPage: true});
  // the same link opened fresh, and by DID id
  await vp.goto(BASE + "/console/" + hash);
  await vp.waitForSelector("#timeline li");
  await vp.goto(BASE + "/console/#/did?q=" + env.DID);
  await vp.waitForSelector("#timeline li");
  const p = await newPage(viewerCtx, 390, 844);
  await p.goto(BASE + "/console/" + hash);
  await p.waitForSelector("#timeline li");
  const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, "the story is wider than a phone screen by " + overflow + " px");
  await p.screenshot({path: shots("did-story-phone"), fullPage: true});
  await p.close();
});

await step("hostile event shown as text: headers, body, id, skip reason, rule failure", async () => {
  await vp.goto(BASE + "/console/#/event?id=" + encodeURIComponent(env.XSS_EVENT));
  await vp.waitForSelector(".event-body");
  const body = await vp.textContent(".event-body");
  assert.ok(body.includes("<script>window.__pwned='script'</script>"), body);
  assert.ok(body.includes("javascript:window.__pwned='link'"), body);
  const headers = await vp.textContent("table.headers");
  assert.ok(headers.includes("<img src=x onerror="), headers);
  const text = await vp.textContent("#content");
  assert.ok(text.includes("rule.skipped"), "no rule outcome");
  assert.ok(text.includes("reason: <img src=x onerror="), "the skip reason is not shown as text");
  await vp.click("text=Dry run with the rule in force");
  await vp.waitForSelector("text=Dry run: nothing was stored or sent.");
  assert.ok((await vp.textContent("#content")).includes("skipped"));
  await assertInert(vp, "event view");
  await vp.screenshot({path: shots("event"), fullPage: true});
  await vp.goto(BASE + "/console/#/tail");
  await vp.waitForSelector("#tail-list li");
  await vp.waitForFunction(() => document.getElementById("tail-list").textContent.includes("rule.failed"));
  const tail = await vp.textContent("#tail-list");
  assert.ok(tail.includes("<script>window.__pwned='script'</script>"), "rule failure not shown as text");
  await assertInert(vp, "live tail");
  await vp.fill("#tail-kind", "rule.*");
  await vp.press("#tail-kind", "Enter");
  await vp.waitForFunction(() => location.hash.includes("kind=rule."));
  // The unfiltered list stays on screen until the filtered answer arrives: wait
  // for the redraw (bounded by the step's timeout), then assert on what it shows.
  await vp.waitForFunction(() => {
    const k = [...document.querySelectorAll("#tail-list .kind")].map((x) => x.textContent);
    return k.length > 0 && k.every((x) => x.startsWith("rule."));
  });
  const kinds = await vp.$$eval("#tail-list .kind", (k) => k.map((x) => x.textContent));
  assert.ok(kinds.length > 0 && kinds.every((k) => k.startsWith("rule.")), kinds.join(","));
  await assertInert(vp, "filtered tail");
  await vp.screenshot({path: shots("tail"), fullPage: true});
});

await step("viewer: retry is disabled and the server refuses it", async () => {
  await vp.goto(BASE + "/console/#/jobs?state=dead");
  await vp.waitForSelector(`button[data-job="${env.DEAD_JOB}"]`);
  assert.equal(await vp.isDisabled(`button[data-job="${env.DEAD_JOB}"]`), true);
  assert.equal(await vp.isDisabled("#resume"), true);
  assert.equal(await vp.isDisabled("#pause"), true);
  const status = await vp.evaluate(async (job) => {
    const s = await (await fetch("/console/api/session")).json();
    const r = await fetch(`/v1/jobs/${job}/retry`, {method: "POST", headers: {"X-CSRF-Token": s.csrf}});
    return r.status;
  }, env.DEAD_JOB);
  assert.equal(status, 403);
  await vp.screenshot({path: shots("jobs-viewer"), fullPage: true});
});

await step("rules and integrity views", async () => {
  await vp.goto(BASE + "/console/#/rules");
  await vp.waitForSelector("#rule-version");
  assert.match(await vp.textContent("#rule-version"), /^[0-9a-f]{16}$/);
  assert.equal(await vp.isDisabled("#reload"), true);
  await vp.screenshot({path: shots("rules"), fullPage: true});
  await vp.goto(BASE + "/console/#/integrity");
  await vp.click("#verify");
  await vp.waitForSelector("#verify-result .ok");
  assert.match(await vp.textContent("#verify-result"), /Intact: \d+ records/);
  await vp.screenshot({path: shots("integrity"), fullPage: true});
});

await step("viewer: no replay page", async () => {
  assert.equal(await vp.isHidden("#nav-replay"), true);
  await vp.goto(BASE + "/console/#/replay");
  await vp.waitForFunction(() => /for the admin role/.test(document.getElementById("content").textContent));
  assert.equal(await vp.$("#candidate"), null);
});

await step("sign out ends the session", async () => {
  await vp.click("#signout");
  await vp.waitForSelector("#token", {state: "visible"});
  const status = await vp.evaluate(async () => (await fetch("/v1/jobs")).status);
  assert.equal(status, 401);
});

// ---------------- admin ----------------
const adminCtx = await browser.newContext();
const ap = await newPage(adminCtx);

await step("sign in as admin and retry a dead job (confirm first)", async () => {
  await signIn(ap, env.ADMIN_TOKEN, "admin");
  await tokenNowhere(ap, env.ADMIN_TOKEN, "admin");
  await ap.goto(BASE + "/console/#/jobs?state=dead");
  const sel = `button[data-job="${env.DEAD_JOB}"][data-action="retry"]`;
  await ap.waitForSelector(sel);
  // keyboard: focus the button and press Enter, twice (the confirm step)
  await ap.focus(sel);
  await ap.keyboard.press("Enter");
  await ap.waitForFunction((s) => document.querySelector(s).textContent.startsWith("Confirm retry"), sel);
  const before = await ap.evaluate(async (job) => (await (await fetch("/v1/jobs?state=dead")).json()).jobs.some((j) => String(j.id) === job), env.DEAD_JOB);
  assert.equal(before, true, "the first press already retried");
  await ap.keyboard.press("Enter");
  await ap.waitForFunction(() => /is now pending/.test(document.getElementById("jobs-status").textContent));
  await ap.screenshot({path: shots("jobs-admin"), fullPage: true});
});

await step("CSRF: the page's own fetch without the token, and another site's page", async () => {
  const status = await ap.evaluate(async (job) => (await fetch(`/v1/jobs/${job}/retry`, {method: "POST"})).status, env.OTHER_DEAD_JOB);
  assert.equal(status, 403);
  const evil = await adminCtx.newPage(); // its own errors are not the console's
  await evil.goto(env.EVIL_URL);
  // the attacker's form posts to the console's origin: the browser does not send the
  // SameSite=Strict cookie with it, so hookline sees no session
  await evil.waitForURL((u) => u.toString().startsWith(BASE), {timeout: 10000});
  await evil.waitForLoadState();
  const landed = await evil.textContent("body");
  assert.ok(landed.includes('"status":401'), "the attacker's form was not refused: " + landed);
  await evil.close();
  const state = await ap.evaluate(async (job) => (await (await fetch("/v1/jobs?state=dead")).json()).jobs.some((j) => String(j.id) === job), env.OTHER_DEAD_JOB);
  assert.equal(state, true, "the other dead job is no longer dead");
});

await step("admin pauses delivery (confirm first, with a reason) then resumes it", async () => {
  await ap.goto(BASE + "/console/#/jobs");
  await ap.waitForSelector("#pause");
  assert.match(await ap.textContent("#delivery-state"), /Delivery running/);
  await ap.fill("#pause-reason", "browser maintenance <b>window</b>");
  await ap.click("#pause");
  await ap.waitForFunction(() => document.getElementById("pause").textContent.startsWith("Confirm"));
  // the service's own word (/console/api/overview; /readyz is 503 while paused)
  const paused = () => ap.evaluate(async () => (await (await fetch("/console/api/overview")).json()).paused);
  assert.equal(await paused(), false, "the first press already paused");
  await ap.click("#pause");
  await ap.waitForFunction(() => /paused/.test(document.getElementById("jobs-status").textContent));
  assert.equal(await paused(), true);
  assert.equal(await ap.textContent("#delivery-state"), "Delivery paused: browser maintenance <b>window</b> ");
  await assertInert(ap, "paused jobs view");
  await ap.screenshot({path: shots("jobs-paused"), fullPage: true});
  // a fresh load shows the pause and its reason
  await ap.reload();
  await ap.waitForSelector("#delivery-state");
  assert.match(await ap.textContent("#delivery-state"), /paused: browser maintenance <b>window<\/b>/);
  await ap.click("#resume");
  await ap.waitForFunction(() => /resumed/.test(document.getElementById("jobs-status").textContent));
  assert.equal(await paused(), false);
  assert.match(await ap.textContent("#delivery-state"), /Delivery running/);
});

await step("admin replays a candidate rule: summary and changed events as text", async () => {
  await ap.goto(BASE + "/console/#/replay");
  await ap.waitForSelector("#candidate");
  assert.equal(await ap.isVisible("#nav-replay"), true);
  await ap.fill("#candidate", env.CANDIDATE);
  await ap.click("#replay-run");
  await ap.waitForSelector("#replay-changed", {timeout: 30000});
  const n = async (sel) => Number(await ap.textContent(sel));
  assert.deepEqual([await n("#replay-events"), await n("#replay-unchanged"), await n("#replay-changed"), await n("#replay-failed")],
                   [5, 0, 4, 1]);
  const changed = await ap.$$eval("#replay-changes tbody tr", (rows) => rows.map((r) => r.dataset.event).sort());
  assert.deepEqual(changed, ["evt-boom", "evt-other", "evt-refused", "evt-route"]);
  assert.match(await ap.textContent("#replay-failures"), /candidate\.lua:2:/);
  await assertInert(ap, "replay result");
  await ap.screenshot({path: shots("replay"), fullPage: true});
  await ap.click('#replay-changes tr[data-event="evt-route"] a');
  await ap.waitForFunction(() => location.hash.startsWith("#/event?id=evt-route") &&
                                 Array.from(document.querySelectorAll("h2")).some((h) => h.textContent.endsWith("evt-route")));
});

await step("no page error, no dialog", async () => {
  assert.deepEqual(consoleErrors.filter((e) => !/status of 40[13]/.test(e)), []);
});

await browser.close();
process.exit(failed ? 1 : 0);
