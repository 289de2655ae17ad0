// The console in a real browser (Debian's chromium via playwright-core) against a real
// server and real agents: sign in, add a project, trigger a build and watch its log lines
// and status arrive without a reload, upload a test run, and check that an anonymous
// browser cannot see a private project; test results show on a build's page (live, and a
// failed build's failing test with its message). Saves screenshots to docs/screenshots/, and
// prints how long a line printed by a step takes to show in the open page.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Kiln, browser, ROOT, ADMIN_PASSWORD } from "./kiln.mjs";

const SHOTS = process.env.SCREENSHOTS || path.join(ROOT, "docs/screenshots");

const WEBAPP = `jobs:
  lint:
    steps:
      - printf '\\033[1;34m==>\\033[0m checking style\\n'
      - printf 'style \\033[32mok\\033[0m (42 files checked)\\n'
  build:
    steps:
      - printf '\\033[1;34m==>\\033[0m compiling webapp\\n'
      - for i in 1 2 3 4 5 6 7 8 9 10; do echo "tick $(date +%s%3N) step-line-$i"; sleep 0.4; done
      - printf '\\033[33mwarning\\033[0m unused variable \\033[1mcolour\\033[0m in src/theme.rs\\n'
      - printf '\\033[32m✔ build finished\\033[0m\\n'
  test:
    needs: [build]
    matrix:
      python: ["3.11", "3.12"]
    steps:
      - echo "collecting tests for $KILN_JOB_NAME"
      - cp junit/unit.xml "$KILN_JUNIT_DIR/unit.xml"
      - printf '\\033[32m3 passed\\033[0m, \\033[33m1 skipped\\033[0m in 1.9s\\n'
  deploy:
    needs: [lint, test]
    steps: [echo "deploying build $KILN_BUILD_ID to staging"]
`;

const API = `jobs:
  check:
    steps:
      - echo "running the API suite"
      - sleep 0.$(( KILN_BUILD_ID % 7 + 2 ))
      - if [ $(( KILN_BUILD_ID % 4 )) -eq 0 ]; then cp junit/fail.xml "$KILN_JUNIT_DIR/"; else cp junit/pass.xml "$KILN_JUNIT_DIR/"; fi
      - test $(( KILN_BUILD_ID % 4 )) -ne 0 || { printf '\\033[31mFAILED\\033[0m test_orders::test_refund\\n'; exit 1; }
`;

// JUnit reports the jobs copy into $KILN_JUNIT_DIR (as a test runner would write them).
const junit = (cases) => `<?xml version="1.0"?>\n<testsuite name="pytest">\n${cases.join("\n")}\n</testsuite>\n`;
const pass = (cls, name, time) => `<testcase classname="${cls}" name="${name}" time="${time}"/>`;
const UNIT_XML = junit([pass("tests.test_views", "test_index", "0.412"), pass("tests.test_views", "test_login", "0.118"),
  pass("tests.test_theme", "test_colours", "0.031"), '<testcase classname="tests.test_theme" name="test_dark" time="0"><skipped message="no display"/></testcase>']);
const API_CASES = [pass("tests.test_orders", "test_create", "0.214"), pass("tests.test_orders", "test_list", "0.093"), pass("tests.test_auth", "test_login", "0.051")];
const API_PASS = junit([...API_CASES, pass("tests.test_orders", "test_refund", "0.342")]);
const API_FAIL = junit([...API_CASES, '<testcase classname="tests.test_orders" name="test_refund" time="0.342"><failure message="AssertionError: refund of 12.50 EUR came back as 0.00 &lt;Money&gt;">' +
  'Traceback (most recent call last):\n  File "tests/test_orders.py", line 88, in test_refund\n    assert refund.amount == Money("12.50")\nAssertionError: refund of 12.50 EUR came back as 0.00</failure></testcase>']);

const ML = `jobs:
  train:
    requires: { gpu: "a100" }
    steps: [python train.py]
`;

function save(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  return page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

test("the console, end to end in a browser", { timeout: 240_000 }, async (t) => {
  const k = await new Kiln().start();
  const b = await browser();
  t.after(async () => { await b.close(); k.stop(); });
  k.agent("linux-1", "--label", "python=3.12");
  k.agent("linux-2", "--label", "python=3.11", "--label", "pool=fast");

  // Some history for the charts, a private project whose job waits for a GPU agent.
  const apiRepo = k.repo("api-server", { ".kiln.yml": API, "junit/pass.xml": API_PASS, "junit/fail.xml": API_FAIL });
  k.cli("project", "add", "api-server", "--repo", apiRepo, "--public");
  const mlRepo = k.repo("ml-models", { ".kiln.yml": ML, "train.py": "print('train')\n" });
  k.cli("project", "add", "ml-models", "--repo", mlRepo, "--private");
  const apiBuilds = [];
  for (let i = 0; i < 7; i++) {
    k.commit(apiRepo, ["Add refunds endpoint", "Fix pagination of orders", "Bump serde to 1.0.228", "Retry payment webhooks",
      "Cache product lookups", "Speed up the order index", "Log slow queries"][i], { "notes.txt": `change ${i}\n` });
    apiBuilds.push(JSON.parse(k.cli("trigger", "api-server", "--json")).id);
    await new Promise((r) => setTimeout(r, 150));
  }
  const mlBuild = JSON.parse(k.cli("trigger", "ml-models", "--json")).id;

  const ctx = await b.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error("# page error:", e.message));
  page.on("requestfailed", (r) => { if (!r.url().includes("/api/v1/events")) console.error("# request failed:", r.url(), r.failure()?.errorText); });
  // Record when each log line first shows in the page (for the latency figure).
  await ctx.addInitScript(() => {
    window.__seen = {};
    document.addEventListener("DOMContentLoaded", () => {
      const box = document.getElementById("log");
      if (!box) return;
      new MutationObserver(() => {
        for (const m of box.innerText.matchAll(/tick (\d+) (step-line-\d+)/g)) {
          if (!window.__seen[m[2]]) window.__seen[m[2]] = { printed: +m[1], shown: Date.now() };
        }
      }).observe(box, { childList: true, subtree: true, characterData: true });
    });
  });

  await t.test("sign in", async () => {
    await page.goto(k.url + "/login");
    await save(page, "login");
    await page.fill("input[name=name]", "admin");
    await page.fill("input[name=password]", ADMIN_PASSWORD);
    await page.click("form.stack button[type=submit]");
    await page.waitForURL(k.url + "/");
    assert.match(await page.textContent(".me"), /admin/);
    assert.match(await page.textContent("main"), /ml-models/, "a signed-in user sees private projects");
  });

  let buildId;
  await t.test("add a project and watch a build live", async () => {
    const repo = k.repo("webapp", { ".kiln.yml": WEBAPP, "README.md": "# webapp\n", "junit/unit.xml": UNIT_XML });
    await page.click("text=Add project");
    await page.fill("input[name=name]", "webapp");
    await page.fill("input[name=repo]", repo);
    await page.check("input[value=public]");
    await page.click("form.stack button[type=submit]");
    await page.waitForURL(k.url + "/projects/webapp");
    await page.click("form.trigger button");
    await page.waitForURL(/\/builds\/\d+/);
    buildId = +page.url().match(/builds\/(\d+)/)[1];
    await page.evaluate(() => { window.__sameDocument = true; });
    await page.waitForSelector(".job.running", { timeout: 30_000 }).catch(async (e) => {
      const shot = path.join(os.tmpdir(), "kiln-browser-failure.png");
      await page.screenshot({ path: shot, fullPage: true });
      console.error(`# no running job showed; screenshot in ${shot}; page:\n${await page.content()}`);
      throw e;
    });
    // Follow the build job's log (the page may have opened another job's).
    await page.waitForSelector('.job[data-key="build"].running', { timeout: 30_000 });
    await page.click('.job[data-key="build"]');
    await page.evaluate(() => { window.__since = Date.now(); });
    // Lines arrive while the step runs, without a reload.
    await page.waitForFunction(() => document.getElementById("log").innerText.includes("step-line-3"), null, { timeout: 30_000 });
    assert.notEqual(await page.textContent("#build-status"), "passed", "the build is still running while lines arrive");
    await page.waitForFunction(() => document.getElementById("build-status").textContent.trim() === "passed", null, { timeout: 60_000 });
    assert.equal(await page.evaluate(() => window.__sameDocument), true, "the page was never reloaded");
    const log = await page.textContent("#log");
    assert.match(log, /step-line-10/);
    assert.match(log, /build finished/);
    assert.equal(await page.locator("#log .l .f32").first().textContent(), "✔ build finished", "ANSI colours are rendered as styled spans");
    assert.equal(await page.locator(".job.passed").count(), 5, "lint, build, 2 test cells, deploy: all passed");
    // The test cells' JUnit results appeared in the open page too: counts over both cells, the slowest first.
    await page.waitForFunction(() => !document.getElementById("tests").hidden && /6\s*passed/.test(document.getElementById("tests").innerText), null, { timeout: 10_000 });
    assert.match(await page.textContent("#tests"), /2\s*skipped/);
    assert.match(await page.textContent("#tests .t-slow tr:first-child"), /tests\.test_views::test_index/);
    // Only lines printed after the log was open count (earlier ones came with the first read).
    const since = await page.evaluate(() => window.__since);
    const seen = Object.values(await page.evaluate(() => window.__seen)).filter((s) => s.printed > since + 50);
    const lat = seen.map((s) => s.shown - s.printed).sort((a, b) => a - b);
    assert.ok(lat.length >= 3, `saw ${lat.length} timed lines`);
    const med = lat[Math.floor(lat.length / 2)];
    console.log(`# log line latency (printed by a step → shown in the open page): median ${med} ms, max ${lat[lat.length - 1]} ms over ${lat.length} lines`);
    // Line anchors are links; the raw log downloads as text.
    const href = await page.getAttribute("#log .l:nth-child(3) a.n", "href");
    assert.equal(href, "#L3");
    const raw = await (await page.request.get(k.url + (await page.getAttribute("#raw", "href")))).text();
    assert.match(raw, /compiling webapp/);
    // A clean picture: scroll the log to its start for the screenshot.
    await page.click(".job:has-text('build')");
    await page.waitForFunction(() => document.getElementById("log").innerText.includes("build finished"));
    await page.evaluate(() => { document.getElementById("log").scrollTop = 0; window.scrollTo(0, 0); });
    await save(page, "build");
  });

  await t.test("upload a test run", async () => {
    await page.goto(k.url + "/runs/new?project=webapp");
    await page.selectOption("select[name=project]", "webapp");
    await page.setInputFiles("input[name=file]", [
      { name: "test_math.sh", mimeType: "text/plain", buffer: Buffer.from("echo 'test_add ... ok'\necho 'test_mul ... ok'\necho '2 tests passed'\n") },
    ]);
    await page.setInputFiles("input[name=pipeline]", [
      { name: ".kiln.yml", mimeType: "text/yaml", buffer: Buffer.from("jobs:\n  uploaded:\n    steps: [sh test_math.sh]\n") },
    ]);
    await page.click("#run-form button[type=submit]");
    await page.waitForURL(/\/builds\/\d+/);
    await page.waitForFunction(() => document.getElementById("build-status").textContent.trim() === "passed", null, { timeout: 60_000 });
    await page.waitForFunction(() => document.getElementById("log").innerText.includes("2 tests passed"), null, { timeout: 30_000 });
    assert.match(await page.textContent(".build-head"), /upload/);
    await page.goto(k.url + "/runs");
    assert.match(await page.textContent("table.runs"), /passed/);
    assert.match(await page.textContent("table.runs"), /admin/);
    await save(page, "runs");
  });

  await t.test("screens of the other pages", async () => {
    for (const id of apiBuilds) await k.waitBuild(id);
    await page.goto(k.url + "/");
    await page.waitForTimeout(300);
    await save(page, "projects");
    await page.goto(k.url + "/projects/api-server");
    await save(page, "project-builds");
    await page.goto(k.url + "/agents");
    await page.waitForSelector("table.agents");
    await save(page, "agents");
    await page.goto(k.url + "/queue");
    assert.match(await page.textContent("main"), /no online agent has gpu=a100; closest: /);
    await save(page, "queue");
    // A failed build's page: its failing test and message first.
    const failed = apiBuilds.find((id) => id % 4 === 0);
    await page.goto(k.url + `/builds/${failed}`);
    const tests = await page.textContent("#tests");
    assert.match(tests, /1\s*failed/);
    assert.match(tests, /tests\.test_orders::test_refund/);
    assert.match(tests, /refund of 12\.50 EUR came back as 0\.00 <Money>/, "the message, as text");
    await save(page, "build-tests");
  });

  await t.test("an anonymous browser cannot see a private project", async () => {
    const anon = await b.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await anon.newPage();
    await p.goto(k.url + "/");
    const home = await p.textContent("main");
    assert.match(home, /webapp/);
    assert.match(home, /api-server/);
    assert.doesNotMatch(home, /ml-models/);
    assert.equal((await p.goto(k.url + "/projects/ml-models")).status(), 404);
    assert.equal((await p.goto(k.url + `/builds/${mlBuild}`)).status(), 404);
    assert.equal((await p.goto(k.url + "/badge/ml-models.svg")).status(), 404);
    assert.equal((await p.goto(k.url + `/builds/${buildId}`)).status(), 200);
    assert.equal(await p.locator("text=Rebuild").count(), 0, "no rebuild button for anonymous visitors");
    assert.doesNotMatch(await (await p.goto(k.url + "/queue")).text(), /ml-models/);
    await anon.close();
  });
});
