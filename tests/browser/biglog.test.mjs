// A big log in the console (BIGLOG_MB, default 200 MB): the build page opens at the tail and
// shows the last line within 2 s, scrolling up loads earlier lines, the page stays responsive,
// a server-side search counts every match and jumps to a line, and a #L link opens at its line.
// Past its head (the limit) a running log's last lines show live below it until the job ends.
// The page never holds the whole log: scrolling up through many parts, or following a live log,
// keeps at most the console's cap of rows in it (lines far away go, and load again on the way back).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Kiln, browser } from "./kiln.mjs";

const MB = +(process.env.BIGLOG_MB || 200);
const LINES = MB * 10486; // 100-byte lines
// The most rows the log viewer keeps in the page (console.js ROWS_MAX).
const ROWS_CAP = 6000;
const rowNumbers = (page) => page.locator("#log .l").evaluateAll((els) => els.map((e) => +e.id.slice(1)));
const inOrder = (ids) => ids.every((n, i) => i === 0 || n === ids[i - 1] + 1);
const PIPELINE = `jobs:
  big:
    steps:
      - "python3 -c 'import sys; w=sys.stdout.write; [w(\\"L%08d \\" % i + \\"x\\" * 90 + \\"\\\\n\\") for i in range(${LINES})]; w(\\"LAST-LINE-OF-THE-LOG\\\\n\\")'"
`;

test(`the console opens a ${MB} MB log at its end`, { timeout: 600_000 }, async (t) => {
  const k = await new Kiln().start();
  const b = await browser();
  t.after(async () => { await b.close(); k.stop(); });
  k.agent("a1");
  const repo = k.repo("big", { ".kiln.yml": PIPELINE });
  k.cli("project", "add", "big", "--repo", repo, "--public");
  const id = JSON.parse(k.cli("trigger", "big", "--json")).id;
  const done = await k.waitBuild(id, 500);
  assert.equal(done.status, "passed");

  const page = await (await b.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on("pageerror", (e) => console.error("# page error:", e.message));
  const t0 = Date.now();
  await page.goto(`${k.url}/builds/${id}`);
  await page.getByText("LAST-LINE-OF-THE-LOG").first().waitFor({ timeout: 2000 });
  console.log(`# last line shown after ${Date.now() - t0} ms`);
  // The line numbers are the log's own, not counted from the tail.
  const lastNum = await page.locator("#log .l").last().locator("a.n").textContent();
  assert.equal(+lastNum, LINES + 3, "the last line's number counts every line before it (2 kiln lines + the step's)");
  // Never the whole log: a few thousand rows at most.
  const rows = await page.locator("#log .l").count();
  assert.ok(rows < 10_000, `${rows} rows drawn`);

  // Scrolling up loads earlier lines, numbered in order.
  const firstBefore = +(await page.locator("#log .l").first().locator("a.n").textContent());
  await page.locator("#log").evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event("scroll")); });
  await page.waitForFunction((n) => +document.querySelector("#log .l a.n").textContent < n, firstBefore, { timeout: 5000 });
  const firstAfter = +(await page.locator("#log .l").first().locator("a.n").textContent());
  assert.ok(firstAfter < firstBefore, `${firstAfter} < ${firstBefore}`);
  const ids = await rowNumbers(page);
  assert.ok(inOrder(ids), "lines in order with no gap");

  // All the way up through many parts: the page keeps a bounded window, the tail is let go.
  for (let i = 0; i < 12; i++) {
    const top = (await rowNumbers(page))[0];
    await page.locator("#log").evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event("scroll")); });
    await page.waitForFunction((n) => +document.querySelector("#log .l a.n").textContent < n, top, { timeout: 5000 });
  }
  let up = await rowNumbers(page);
  assert.ok(up.length <= ROWS_CAP, `${up.length} rows in the page after scrolling up 12 parts (cap ${ROWS_CAP})`);
  assert.ok(inOrder(up), "the window's lines are in order with no gap");
  assert.ok(up[up.length - 1] < LINES, "the tail was let go");
  assert.equal(await page.locator("#log").getByText("LAST-LINE-OF-THE-LOG").count(), 0);
  await page.locator("#follow").waitFor({ state: "visible", timeout: 2000 });
  await page.locator("#log .log-less").waitFor({ timeout: 2000 });
  // Scrolling down loads the later lines again, still bounded and in order.
  const bottom = up[up.length - 1];
  await page.locator("#log").evaluate((el) => { el.scrollTop = el.scrollHeight; el.dispatchEvent(new Event("scroll")); });
  await page.waitForFunction((n) => { const r = document.querySelectorAll("#log .l"); return +r[r.length - 1].id.slice(1) > n; }, bottom, { timeout: 5000 });
  up = await rowNumbers(page);
  assert.ok(up.length <= ROWS_CAP && inOrder(up) && up.includes(bottom + 1), `reloaded below line ${bottom}: ${up[0]}..${up[up.length - 1]}`);
  // The control brings the last lines back.
  await page.click("#follow");
  await page.getByText("LAST-LINE-OF-THE-LOG").first().waitFor({ timeout: 5000 });
  up = await rowNumbers(page);
  assert.equal(up[up.length - 1], LINES + 3);
  assert.ok(up.length <= ROWS_CAP && inOrder(up));

  // Responsive: a click on a line number answers at once.
  const t1 = Date.now();
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  assert.ok(Date.now() - t1 < 1000, "the page answers within a second");

  // Search over the whole log: exact counts, and a match jumps to its line.
  await page.fill("#log-search input", "L00001234 ");
  await page.press("#log-search input", "Enter");
  await page.getByText("1 matches in 1 lines").waitFor({ timeout: 10000 });
  await page.locator("#log-found a.found").first().click();
  await page.locator("#L1237.hl").waitFor({ timeout: 5000 });
  assert.match(await page.locator("#L1237").textContent(), /L00001234 x/);

  // A line link opens at its line in a fresh page.
  const p2 = await (await b.newContext()).newPage();
  const mid = Math.floor(LINES / 2);
  await p2.goto(`${k.url}/builds/${id}#L${mid}`);
  await p2.locator(`#L${mid}.hl`).waitFor({ timeout: 5000 });
  assert.match(await p2.locator(`#L${mid}`).textContent(), new RegExp(`L${String(mid - 3).padStart(8, "0")} x`));
});

test("past its head a running log's last lines show live below it", { timeout: 120_000 }, async (t) => {
  const k = await new Kiln().start("--log-limit", "200000");
  const b = await browser();
  t.after(async () => { await b.close(); k.stop(); });
  k.agent("a1");
  const repo = k.repo("flood", { ".kiln.yml": `jobs:
  flood:
    steps: ["yes 0123456789abcdef | head -c 300000; for i in $(seq 1 50); do echo live-line-$i; sleep 0.2; done"]
` });
  k.cli("project", "add", "flood", "--repo", repo, "--public");
  const id = JSON.parse(k.cli("trigger", "flood", "--json")).id;
  const page = await (await b.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on("pageerror", (e) => console.error("# page error:", e.message));
  await page.goto(`${k.url}/builds/${id}`);
  await page.locator("#log-live-text").getByText(/live-line-3\b/).waitFor({ timeout: 30_000 });
  assert.match(await page.locator("#log-live-note").textContent(), /bytes past the log's head/);
  assert.equal(await page.locator("#log").getByText("live-line-3").count(), 0, "not in the log itself until the job ends");
  // It follows: later lines replace earlier ones.
  await page.locator("#log-live-text").getByText(/live-line-2\d\b/).first().waitFor({ timeout: 30_000 });
  const done = await k.waitBuild(id, 60);
  assert.equal(done.status, "passed");
  await page.locator("#log").getByText("live-line-50").first().waitFor({ timeout: 10_000 });
  await page.locator("#log-live").waitFor({ state: "hidden", timeout: 10_000 });
});

test("a followed live log keeps a bounded number of rows in the page", { timeout: 180_000 }, async (t) => {
  const k = await new Kiln().start();
  const b = await browser();
  t.after(async () => { await b.close(); k.stop(); });
  k.agent("a1");
  // 40,000 lines at about 200 KB/s: the page keeps up (never so far behind that it jumps to the tail).
  const gen = `import sys, time
for i in range(40000):
    sys.stdout.write("stream-line-%05d %s\\n" % (i, "y" * 20))
    if i % 500 == 499:
        sys.stdout.flush(); time.sleep(0.1)
print("STREAM-DONE")
`;
  const repo = k.repo("stream", { ".kiln.yml": "jobs:\n  stream:\n    steps: [python3 gen.py]\n", "gen.py": gen });
  k.cli("project", "add", "stream", "--repo", repo, "--public");
  const id = JSON.parse(k.cli("trigger", "stream", "--json")).id;
  const page = await (await b.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on("pageerror", (e) => console.error("# page error:", e.message));
  await page.goto(`${k.url}/builds/${id}`);
  // The most rows the log ever held, seen after every change to it.
  await page.evaluate(() => {
    const box = document.getElementById("log");
    window.maxRows = box.getElementsByClassName("l").length;
    new MutationObserver(() => { window.maxRows = Math.max(window.maxRows, box.getElementsByClassName("l").length); }).observe(box, { childList: true });
  });
  await page.locator("#log").getByText("stream-line-10000").first().waitFor({ timeout: 60_000 });
  assert.equal(await page.locator("#log .l").filter({ hasText: "STREAM-DONE" }).count(), 0, "still running while it is followed");
  await page.locator("#log").getByText("STREAM-DONE").first().waitFor({ timeout: 60_000 });
  assert.equal((await k.waitBuild(id, 60)).status, "passed");
  const max = await page.evaluate(() => window.maxRows);
  const ids = await rowNumbers(page);
  console.log(`# at most ${max} rows in the page while following a ${ids[ids.length - 1]}-line log`);
  assert.ok(max > 1000, `the log was drawn as it came (${max} rows at most)`);
  assert.ok(max <= ROWS_CAP, `${max} rows in the page at once while following (cap ${ROWS_CAP})`);
  assert.ok(inOrder(ids) && ids[0] > 1, `the newest lines, in order: ${ids[0]}..${ids[ids.length - 1]}`);
  const done = await page.locator("#log .l").filter({ hasText: "STREAM-DONE" }).getAttribute("id");
  const last = await page.locator("#log .l").filter({ hasText: "stream-line-39999" }).getAttribute("id");
  assert.equal(+done.slice(1), +last.slice(1) + 1);
  // A line link to a line long gone from the page opens at it.
  await page.fill("#log-goto input", "100");
  await page.press("#log-goto input", "Enter");
  await page.locator("#L100.hl").waitFor({ timeout: 5000 });
  assert.ok((await rowNumbers(page)).length <= ROWS_CAP);
});

test("a colour set before the rows the page let go carries over when they load again, and one set before a part read from the middle shows in it", { timeout: 120_000 }, async (t) => {
  const k = await new Kiln().start();
  const b = await browser();
  t.after(async () => { await b.close(); k.stop(); });
  k.agent("a1");
  // One colour set on the first line and kept for 20,000 lines: more than the page holds at once.
  const red = `import sys
sys.stdout.write("\\x1b[31m" + "".join("red-line-%05d\\n" % i for i in range(20000)) + "\\x1b[0mplain-end\\n")
sys.stdout.write("\\x1b[33mloading\\r\\x1b[2Kdone\\nafter-progress\\n")
`;
  const repo = k.repo("red", { ".kiln.yml": "jobs:\n  red:\n    steps: [python3 red.py]\n", "red.py": red });
  k.cli("project", "add", "red", "--repo", repo, "--public");
  const id = JSON.parse(k.cli("trigger", "red", "--json")).id;
  assert.equal((await k.waitBuild(id, 60)).status, "passed");
  const page = await (await b.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.on("pageerror", (e) => console.error("# page error:", e.message));
  // Opened at its head, the page keeps its first rows and lets the later ones go.
  await page.goto(`${k.url}/builds/${id}#L5`);
  await page.locator("#L5.hl").waitFor({ timeout: 5000 });
  await page.locator("#log .log-less").waitFor({ timeout: 5000 });
  const ids = await rowNumbers(page);
  assert.ok(ids.length <= ROWS_CAP && ids[ids.length - 1] < 20000, `rows ${ids[0]}..${ids[ids.length - 1]} held`);
  assert.equal(await page.locator("#L5 .t .f31").count(), 1, "the head is red");
  // Scrolling down reads the let-go lines again: they are still red.
  const below = ids[ids.length - 1] + 1;
  await page.locator("#log").evaluate((el) => { el.scrollTop = el.scrollHeight; el.dispatchEvent(new Event("scroll")); });
  await page.waitForFunction((n) => { const r = document.querySelectorAll("#log .l"); return +r[r.length - 1].id.slice(1) >= n; }, below, { timeout: 5000 });
  const now = await rowNumbers(page);
  const probe = Math.max(now[0], below); // reading on may have let the first lines read again go too
  assert.ok(now.includes(probe) && probe < 20003, `rows ${now[0]}..${now[now.length - 1]}`);
  assert.match(await page.locator(`#L${probe}`).textContent(), /red-line-/);
  assert.equal(await page.locator(`#L${probe} .t .f31`).count(), 1, `line ${probe}, read again, lost its colour`);
  // Opened at a line deep in the red part (the server says which style is in effect there),
  // the line is red, and so is the part read above it (which starts past the colour's start,
  // about 300 kB before: the server says its style too).
  const deep = await (await b.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  deep.on("pageerror", (e) => console.error("# page error:", e.message));
  await deep.goto(`${k.url}/builds/${id}#L19900`);
  await deep.locator("#L19900.hl").waitFor({ timeout: 5000 });
  assert.equal(await deep.locator("#L19900 .t .f31").count(), 1, "a line opened in the middle of the red part is red");
  // A progress line keeps only its last redraw, but the colour an earlier one set goes on.
  const after = deep.locator("#log .l").filter({ hasText: "after-progress" });
  assert.equal(await after.locator(".t .f33").count(), 1, "the yellow set before a \\r carries over");
  assert.equal(await deep.locator("#log .l").filter({ hasText: "loading" }).count(), 0, "only the last redraw shows");
  const top = (await rowNumbers(deep))[0];
  await deep.locator("#log").evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event("scroll")); });
  await deep.waitForFunction((n) => +document.querySelector("#log .l").id.slice(1) < n, top, { timeout: 5000 });
  const first = (await rowNumbers(deep))[0];
  assert.ok(first > 10, `the part above starts in the red part (line ${first})`);
  assert.equal(await deep.locator(`#L${first} .t .f31`).count(), 1, `line ${first}, read above the view, is red`);
});
