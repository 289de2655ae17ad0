// kiln console: live updates for server-rendered pages. No framework, no build step.
//  - [data-ts] shows "3 s ago", [data-since] a running duration; both tick every second.
//  - [data-live-src] elements are re-fetched (the same page with ?partial=1) when the
//    event stream (/api/v1/events, server-sent events) says something changed.
//  - On a build page, #log-panel streams the selected job's log, at any size: it opens at
//    the tail (its last 32 KiB, live while the job runs), loads earlier parts as the
//    reader scrolls up, searches on the server and jumps to a line (#L12 links too), and
//    never holds the whole log: at most ROWS_MAX lines (CHARS_MAX characters) are in the
//    page, rows past them dropped at the end away from the reader and loaded again when
//    the reader scrolls back; ANSI colours, follow that stops when the reader scrolls
//    up (and "Follow ↓" back to the tail), raw download; past the log's head (its limit) the last lines so far show live in
//    #log-live until the job ends and the tail joins the log; #tests
//    (the test results) is re-fetched from its data-tests-src on test events.
(function () {
  "use strict";
  const $ = (s, el) => (el || document).querySelector(s);
  const $$ = (s, el) => Array.from((el || document).querySelectorAll(s));

  // ── time ────────────────────────────────────────────────────────────────
  function ago(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 1) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }
  function dur(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }
  function tick() {
    const now = Date.now();
    $$("[data-ts]").forEach((el) => { const t = +el.dataset.ts; if (t) el.textContent = ago(now - t); });
    $$("[data-since]").forEach((el) => { const t = +el.dataset.since; if (t) el.textContent = dur(now - t); });
  }
  tick();
  setInterval(tick, 1000);

  // Forms that ask first.
  document.addEventListener("submit", (e) => {
    const msg = e.target.dataset && e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // ── live fragments ──────────────────────────────────────────────────────
  const body = document.body;
  const buildId = body.dataset.build || "";
  let refreshTimer = null;
  let refreshing = false;
  async function refresh() {
    if (refreshing) { soon(); return; }
    refreshing = true;
    try {
      for (const el of $$("[data-live-src]")) {
        let src = el.dataset.liveSrc;
        if (log.job) src += (src.includes("?") ? "&" : "?") + "job=" + log.job;
        const r = await fetch(src, { headers: { Accept: "text/html" }, credentials: "same-origin" });
        if (r.ok) { el.innerHTML = await r.text(); }
      }
      tick();
      afterSwap();
    } catch (_) { /* the next event or period tries again */ }
    refreshing = false;
  }
  function soon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 120); }

  // ── test results ────────────────────────────────────────────────────────
  // A build page's #tests is re-fetched alone when results may have changed (a batch done,
  // a job or the build ended): at most every 500 ms however many events arrive. Folds the
  // reader opened stay open; nothing is redrawn when nothing changed.
  const tests = $("#tests");
  const tv = { timer: null, busy: false, again: false, html: tests ? tests.innerHTML : "" };
  async function pullTests() {
    tv.timer = null;
    if (tv.busy) { tv.again = true; return; }
    tv.busy = true;
    try {
      const r = await fetch(tests.dataset.testsSrc, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      const html = r.ok ? await r.text() : tv.html;
      if (html !== tv.html) {
        const open = new Set($$("details[open]", tests).map((d) => d.dataset.key));
        tests.innerHTML = html;
        $$("details[data-key]", tests).forEach((d) => { if (open.has(d.dataset.key)) d.open = true; });
        tests.hidden = !html.trim();
        tv.html = html;
      }
    } catch (_) { /* the next event tries again */ }
    tv.busy = false;
    if (tv.again) { tv.again = false; testsSoon(); }
  }
  function testsSoon() { if (tests && tests.dataset.testsSrc && !tv.timer) tv.timer = setTimeout(pullTests, 500); }

  const dot = $("#live-dot");
  if (body.dataset.events) {
    const es = new EventSource("/api/v1/events" + (buildId ? "?build=" + buildId : ""));
    let opened = false;
    es.onopen = () => {
      if (dot) { dot.classList.add("on"); dot.title = "live"; }
      // Catch up on what changed before the stream was open: between the page's render and
      // the first connection (a fast build can end there), or while reconnecting.
      soon(); testsSoon();
      if (opened) pullLog();
      opened = true;
    };
    es.onerror = () => { if (dot) { dot.classList.remove("on"); dot.title = "reconnecting…"; } };
    ["build", "job", "agent", "resync"].forEach((k) => es.addEventListener(k, soon));
    ["tests", "job", "build", "resync"].forEach((k) => es.addEventListener(k, testsSoon));
    es.addEventListener("log", (e) => {
      try { const d = JSON.parse(e.data); if (String(d.job_id) === String(log.job)) { pullLog(); pullLive(); } } catch (_) {}
    });
  }
  if (body.dataset.refresh) setInterval(soon, +body.dataset.refresh);

  // ── the log ─────────────────────────────────────────────────────────────
  const panel = $("#log-panel");
  const box = $("#log");
  // The rows shown are lines topLine..line of the log, in order with no gap. topOff: the byte
  // offset where line topLine starts (null: not known since rows above were dropped; asked by
  // line number when needed). offset: where the next read at the bottom starts (null: rows
  // below were dropped; the next read starts at line nextLine). opened: a first slice is shown.
  const log = { job: panel ? panel.dataset.job : "", attempt: panel ? +panel.dataset.attempt : 0, offset: 0, line: 0,
    rest: "", style: {}, done: false, busy: false, again: false, follow: true, target: null, partialEl: null,
    opened: false, topOff: 0, topLine: 1, nextLine: 1, loadingUp: false, len: 0, over: false, chars: 0 };
  const WINDOW = 256 * 1024;
  // The page never holds more than this of a log: past it, rows go at the end away from the reader.
  const ROWS_MAX = 6000;
  const CHARS_MAX = 3 << 20;
  // The first paint of a log's end: a few screens, drawn at once; earlier lines come on scrolling up.
  // The build page preloads this very slice (templates/build.html), so it is on its way before the script runs.
  const FIRST = 32768;
  const rows = box ? box.getElementsByClassName("l") : [];
  const followBtn = $("#follow");
  function atBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 30; }
  function atNearBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 600; }
  function showFollow() {
    if (!followBtn) return;
    followBtn.hidden = log.done || (log.follow && log.offset !== null);
    followBtn.textContent = log.over ? "End ↓" : "Follow ↓";
    followBtn.title = log.over ? "show the log's last lines" : "show the log's last lines and follow them";
  }
  function api(q) { return `/api/v1/jobs/${log.job}/log?attempt=${log.attempt}&${q}`; }
  async function getSlice(q) {
    const r = await fetch(api(q), { credentials: "same-origin" });
    return r.ok ? r.json() : null;
  }

  // ANSI SGR → spans with classes (16 colours) or inline colours (256 / truecolor).
  const P256 = (n) => {
    if (n < 16) return ["#000", "#c00", "#0c0", "#cc0", "#00c", "#c0c", "#0cc", "#ccc", "#777", "#f55", "#5f5", "#ff5", "#55f", "#f5f", "#5ff", "#fff"][n];
    if (n >= 232) { const v = 8 + (n - 232) * 10; return `rgb(${v},${v},${v})`; }
    n -= 16; const c = (x) => (x ? 55 + x * 40 : 0);
    return `rgb(${c(Math.floor(n / 36))},${c(Math.floor(n / 6) % 6)},${c(n % 6)})`;
  };
  function applySgr(st, codes) {
    const a = codes === "" ? [0] : codes.split(";").map((x) => +x || 0);
    for (let i = 0; i < a.length; i++) {
      const c = a[i];
      if (c === 0) { for (const k in st) delete st[k]; }
      else if (c === 1) st.b = true; else if (c === 2) st.d = true; else if (c === 3) st.i = true; else if (c === 4) st.u = true;
      else if (c === 22) { delete st.b; delete st.d; } else if (c === 23) delete st.i; else if (c === 24) delete st.u;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) { st.f = c; delete st.fc; }
      else if (c === 39) { delete st.f; delete st.fc; }
      else if ((c >= 40 && c <= 47)) { st.g = c; delete st.gc; } else if (c === 49) { delete st.g; delete st.gc; }
      else if ((c === 38 || c === 48) && a[i + 1] === 5) { const col = P256(a[i + 2] || 0); if (c === 38) { st.fc = col; delete st.f; } else { st.gc = col; delete st.g; } i += 2; }
      else if ((c === 38 || c === 48) && a[i + 1] === 2) { const col = `rgb(${a[i + 2] || 0},${a[i + 3] || 0},${a[i + 4] || 0})`; if (c === 38) { st.fc = col; delete st.f; } else { st.gc = col; delete st.g; } i += 4; }
    }
  }
  function span(text, st) {
    const cls = [];
    if (st.b) cls.push("b"); if (st.d) cls.push("d"); if (st.i) cls.push("i"); if (st.u) cls.push("u");
    if (st.f) cls.push("f" + st.f); if (st.g) cls.push("g" + st.g);
    if (!cls.length && !st.fc && !st.gc) return document.createTextNode(text);
    const s = document.createElement("span");
    if (cls.length) s.className = cls.join(" ");
    if (st.fc) s.style.color = st.fc; if (st.gc) s.style.background = st.gc;
    s.textContent = text;
    return s;
  }
  // The style a slice read from the middle of the log starts in (`style`: the one SGR sequence
  // the server found in effect there, as set in the MiB before it), after `text` if given;
  // `from`: the style before both (none by default).
  function styleOf(seq, text, from) {
    const st = Object.assign({}, from || {});
    const re = /\x1b\[([0-9;]*)m/g;
    let m;
    for (const t of [seq || "", text || ""]) { re.lastIndex = 0; while ((m = re.exec(t))) applySgr(st, m[1]); }
    return st;
  }
  // Render one line into `el`; returns the style after it (colours carry over lines: each row
  // keeps the style it starts in as `row.st`, so lines let go at the bottom and read again
  // start in it; a part read above the view, or a log opened at its tail or at a line, starts
  // in the style the server found before it: `styleOf`).
  function renderLine(el, text, style) {
    let t = text.endsWith("\r") ? text.slice(0, -1) : text;
    const st = Object.assign({}, style);
    if (t.includes("\r")) { // progress bars: keep the last redraw, in the style the earlier ones set
      const parts = t.split("\r");
      let k = parts.length - 1;
      while (k > 0 && !parts[k].length) k--;
      Object.assign(st, styleOf("", parts.slice(0, k).join("\r"), st));
      t = parts[k];
    }
    const re = /\x1b\[([0-9;]*)m|\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b/g;
    let last = 0, m;
    while ((m = re.exec(t))) {
      if (m.index > last) el.appendChild(span(t.slice(last, m.index), st));
      if (m[1] !== undefined) applySgr(st, m[1]);
      last = re.lastIndex;
    }
    if (last < t.length) el.appendChild(span(t.slice(last), st));
    if (t.startsWith("kiln: ")) el.classList.add("kiln");
    return st;
  }
  function lineEl(n, text) {
    const row = document.createElement("div");
    row.className = "l";
    row.id = "L" + n;
    row.chars = text.length;
    log.chars += text.length;
    const a = document.createElement("a");
    a.className = "n"; a.href = "#L" + n; a.textContent = n;
    const t = document.createElement("span");
    t.className = "t";
    row.append(a, t);
    return [row, t];
  }
  // How many rows, counted from one end, must go to keep the page within its bounds.
  function excess(fromTop) {
    let n = 0, chars = log.chars;
    const count = rows.length;
    while (count - n > ROWS_MAX || (chars > CHARS_MAX && count - n > 1)) {
      chars -= rows[fromTop ? n : count - 1 - n].chars || 0;
      n++;
    }
    return n;
  }
  function removeRows(first, last) { // inclusive, in order
    for (let el = first; ; ) { const next = el.nextSibling; if (el.chars) log.chars -= el.chars; el.remove(); if (el === last) break; el = next; }
  }
  // Past the bounds at the bottom (the reader is there): the first rows go, the view stays put.
  function trimTop() {
    const n = excess(true);
    if (!n) return;
    const keep = rows[n];
    const y = keep.offsetTop;
    removeRows(rows[0], rows[n - 1]);
    log.topLine = +keep.id.slice(1); log.topOff = null;
    updateMore();
    box.scrollTop -= y - keep.offsetTop;
  }
  // Past the bounds at the top (the reader is there): the last rows go, and with them the tail.
  function trimBottom() {
    const n = excess(false);
    if (!n) return;
    const last = rows[rows.length - 1 - n];
    // The lines read again later start in the colours the first row let go started in.
    const style = last.nextElementSibling.st || {};
    removeRows(last.nextElementSibling, rows[rows.length - 1]);
    log.line = +last.id.slice(1); log.nextLine = log.line + 1; log.offset = null;
    log.rest = ""; log.partialEl = null; log.style = style; log.done = false; log.follow = false;
    updateLess();
    showFollow();
  }
  // Text read at the bottom (from log.offset); `keep` says which end stays past the bounds.
  function append(text, keep) {
    if (!text) return;
    const empty = $(".log-empty", box);
    if (empty) empty.remove();
    const stick = log.follow && atBottom();
    if (log.partialEl) { log.chars -= log.partialEl.chars || 0; log.partialEl.remove(); log.partialEl = null; log.line--; }
    const parts = (log.rest + text).split("\n");
    log.rest = parts.pop();
    const frag = document.createDocumentFragment();
    for (const p of parts) {
      const [row, t] = lineEl(++log.line, p);
      row.st = log.style;
      log.style = renderLine(t, p, log.style);
      frag.appendChild(row);
    }
    if (log.rest) { // an unfinished line shows now and is redrawn when it ends
      const [row, t] = lineEl(++log.line, log.rest);
      row.st = log.style;
      renderLine(t, log.rest, log.style);
      log.partialEl = row;
      frag.appendChild(row);
    }
    box.insertBefore(frag, $(".log-less", box));
    if (keep === "top") trimBottom(); else trimTop();
    if (log.target && $("#" + log.target, box)) { jumpTo(log.target); log.target = null; }
    else if (stick) box.scrollTop = box.scrollHeight;
  }
  function jumpTo(id) {
    const el = $("#" + id, box);
    if (!el) return;
    $$(".l.hl", box).forEach((x) => x.classList.remove("hl"));
    el.classList.add("hl");
    log.follow = false;
    box.scrollTop = el.offsetTop - box.clientHeight / 3;
    showFollow();
  }
  // The first slice: the tail, or the part holding the line asked for (#L123). Sets where the view starts.
  async function openAt() {
    const m = /^L(\d+)$/.exec(log.target || "");
    const s = await getSlice(m ? `line=${Math.max(1, +m[1] - 200)}&max=${WINDOW}` : `tail=${FIRST}`);
    if (!s) return false;
    log.opened = true; log.topOff = s.offset; log.topLine = s.line; log.line = s.line - 1; log.len = s.len;
    log.rest = ""; log.partialEl = null; log.style = styleOf(s.style); log.chars = 0;
    box.innerHTML = "";
    updateMore();
    log.offset = s.next_offset;
    append(s.text, m ? "top" : "bottom");
    if (s.done && s.next_offset >= s.len && log.offset !== null) { log.done = true; log.over = true; showFollow(); liveOff(); }
    if (!m) box.scrollTop = box.scrollHeight;
    return true;
  }
  // "earlier lines" above the first shown line, while there are some.
  function updateMore() {
    let more = $(".log-more", box);
    if (log.topLine > 1) {
      if (!more) { more = document.createElement("div"); more.className = "log-more muted"; box.prepend(more); }
      more.textContent = `↑ ${(log.topLine - 1).toLocaleString()} earlier lines: scroll up to load`;
    } else if (more) more.remove();
  }
  // "later lines" below the last shown line, once rows there were dropped.
  function updateLess() {
    let less = $(".log-less", box);
    if (log.offset === null) {
      if (!less) { less = document.createElement("div"); less.className = "log-less muted"; box.append(less); }
      less.textContent = `↓ later lines from line ${log.nextLine.toLocaleString()}: scroll down to load, or ${log.over ? "End" : "Follow"} ↓ for the last lines`;
    } else if (less) less.remove();
  }
  // Scrolling up: the part before the first shown line, kept in place on screen.
  async function loadEarlier() {
    if (log.loadingUp || !log.opened || log.topLine <= 1) return;
    log.loadingUp = true;
    const line = log.topLine;
    try {
      let off = log.topOff;
      if (off === null) { const at = await getSlice(`line=${line}&max=1`); off = at ? at.offset : null; }
      const s = off === null || log.topLine !== line ? null : await getSlice(`before=${off}&max=${WINDOW}`);
      const lines = s ? s.text.split("\n") : [];
      if (lines.length && lines[lines.length - 1] === "") lines.pop();
      // Only a part that ends where the view starts now (the view may have moved meanwhile).
      if (s && log.topLine === line && s.line + lines.length === line) {
        const from = Math.max(0, lines.length - ROWS_MAX / 2);
        const frag = document.createDocumentFragment();
        let st = styleOf(s.style, lines.slice(0, from).join("\n"));
        for (let i = from; i < lines.length; i++) { const [row, t] = lineEl(s.line + i, lines[i]); row.st = st; st = renderLine(t, lines[i], st); frag.appendChild(row); }
        const first = rows[0] || null;
        const before = box.scrollHeight;
        box.insertBefore(frag, first || $(".log-less", box));
        box.scrollTop += box.scrollHeight - before;
        log.topLine = s.line + from; log.topOff = from ? null : s.offset;
        updateMore();
        trimBottom();
      }
    } catch (_) { /* tried again on the next scroll */ }
    log.loadingUp = false;
  }
  function reopen() { log.opened = false; log.rest = ""; log.partialEl = null; log.done = false; }
  async function pullLog() {
    if (!panel || !log.job || !log.attempt || log.done) return;
    if (log.busy) { log.again = true; return; }
    log.busy = true;
    try {
      if (!log.opened && !(await openAt())) { log.busy = false; return; }
      for (;;) {
        log.again = false;
        // The reader is elsewhere: the next part comes when they scroll down to it (or follow).
        if (!log.follow && !atNearBottom()) break;
        const from = log.offset, line = log.nextLine;
        const s = await getSlice(from === null ? `line=${line}&max=${WINDOW}` : `offset=${from}&max=${WINDOW}`);
        if (!s) break;
        if (from === null ? log.offset !== null || log.nextLine !== line || s.line !== line : s.offset !== log.offset) break;
        log.len = s.len;
        // Far behind a fast writer while following: jump to the tail instead of drawing it all.
        if (log.follow && s.len - s.next_offset > 4 * WINDOW) { reopen(); if (!(await openAt())) break; continue; }
        log.offset = s.next_offset;
        if (from === null) updateLess();
        append(s.text, "bottom");
        if (s.done) { log.done = true; log.over = true; showFollow(); liveOff(); break; }
        if (!s.text && !log.again) break;
      }
    } catch (_) { /* retried on the next event */ }
    log.busy = false;
    if (log.again) pullLog();
  }
  // Jump to line n: shown if loaded, else the view reopens around it.
  async function gotoLine(n) {
    const id = "L" + n;
    if ($("#" + id, box)) { jumpTo(id); return; }
    log.target = id; reopen(); log.follow = false;
    await pullLog();
    if (log.target && $("#" + log.target, box)) { jumpTo(log.target); log.target = null; }
  }
  async function searchLog(q) {
    const out = $("#log-found");
    if (!q) { out.hidden = true; return; }
    out.hidden = false; out.textContent = "searching…";
    const r = await fetch(`/api/v1/jobs/${log.job}/log/search?attempt=${log.attempt}&limit=200&q=${encodeURIComponent(q)}`, { credentials: "same-origin" });
    if (!r.ok) { out.textContent = "search failed"; return; }
    const s = await r.json();
    out.innerHTML = "";
    const head = document.createElement("div");
    head.className = "found-count";
    head.textContent = `${s.count.toLocaleString()} matches in ${s.lines.toLocaleString()} lines` + (s.matches.length < s.lines ? ` (first ${s.matches.length} listed)` : "");
    out.appendChild(head);
    for (const m of s.matches) {
      const a = document.createElement("a");
      a.href = "#L" + m.line; a.className = "found"; a.dataset.line = m.line;
      a.textContent = `${m.line}: ${m.text}`;
      out.appendChild(a);
    }
  }
  // Past its head a log waits on the agent until the job ends; meanwhile its last lines show
  // below it, replaced as they come.
  function liveOff() { const el = $("#log-live"); if (el) el.hidden = true; }
  async function pullLive() {
    const el = $("#log-live");
    if (!el || !log.job || !log.attempt) return;
    let t = null;
    if (!log.done) {
      try {
        const r = await fetch(`/api/v1/jobs/${log.job}/log/live?attempt=${log.attempt}`, { credentials: "same-origin" });
        if (r.ok) t = await r.json();
      } catch (_) {}
    }
    // The job may have ended (and its tail joined the log) while this was on its way.
    if (!t || !t.live || log.done || String(t.job_id) !== String(log.job)) { el.hidden = true; return; }
    $("#log-live-note").textContent = `live: the last lines of ${t.past_head.toLocaleString()} bytes past the log's head so far; the log keeps its tail when the job ends`;
    const pre = $("#log-live-text");
    const stick = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.textContent = t.text;
    el.hidden = false;
    if (stick) pre.scrollTop = pre.scrollHeight;
  }
  function resetLog(job, attempt, status) {
    log.job = String(job); log.attempt = +attempt; log.offset = 0; log.line = 0; log.rest = ""; log.style = {};
    log.done = false; log.partialEl = null; log.follow = true; log.opened = false; log.chars = 0;
    box.innerHTML = `<div class="log-empty muted">${log.attempt ? "loading…" : "waiting for an agent…"}</div>`;
    panel.dataset.job = log.job; panel.dataset.attempt = log.attempt;
    const raw = `/api/v1/jobs/${log.job}/raw?attempt=${log.attempt}`;
    $("#raw").href = raw; $("#download").href = raw + "&download=1";
    setStatus(status);
    showFollow();
    pullLog();
    pullLive();
  }
  function setStatus(status) {
    const s = $("#log-status");
    if (s && status) { s.className = "pill " + status; s.textContent = status; }
    if (status) { log.over = /^(passed|failed|errored|cancelled|skipped)$/.test(status); showFollow(); }
  }
  // After the jobs were redrawn: mark the selected one, follow its attempt and status.
  function afterSwap() {
    if (!panel) return;
    if (!log.job) { // the build had no jobs yet when the page was drawn: show the first one now
      const first = $(".job.running") || $(".job.failed") || $(".job.errored") || $(".job");
      if (!first) return;
      panel.hidden = false;
      first.classList.add("sel");
      $("#log-key").textContent = first.dataset.key;
      resetLog(first.dataset.job, first.dataset.attempt, first.dataset.status);
      return;
    }
    const card = $(`.job[data-job="${log.job}"]`);
    $$(".job.sel").forEach((j) => j !== card && j.classList.remove("sel"));
    if (!card) return;
    card.classList.add("sel");
    const key = $("#log-key"); if (key) key.textContent = card.dataset.key;
    const attempt = +card.dataset.attempt;
    if (attempt > log.attempt && !location.search.includes("attempt=")) { resetLog(log.job, attempt, card.dataset.status); return; }
    setStatus(card.dataset.status);
    if (/^(passed|failed|errored|cancelled|skipped)$/.test(card.dataset.status)) pullLog();
  }

  if (panel) {
    box.addEventListener("scroll", () => {
      // Following needs the tail below: a view whose later rows were dropped loads them first.
      log.follow = atBottom() && log.offset !== null; showFollow();
      if (box.scrollTop < 400 && log.topLine > 1) loadEarlier();
      if (!log.follow && atNearBottom() && !log.done) pullLog();
    });
    const sf = $("#log-search");
    if (sf) sf.addEventListener("submit", (e) => { e.preventDefault(); searchLog($("input", sf).value); });
    const gf = $("#log-goto");
    if (gf) gf.addEventListener("submit", (e) => { e.preventDefault(); const n = +$("input", gf).value; if (n > 0) { history.replaceState(null, "", "#L" + n); gotoLine(n); } });
    const found = $("#log-found");
    if (found) found.addEventListener("click", (e) => {
      const a = e.target.closest("a.found");
      if (!a) return;
      e.preventDefault();
      history.replaceState(null, "", "#L" + a.dataset.line);
      gotoLine(+a.dataset.line);
    });
    if (followBtn) followBtn.addEventListener("click", () => {
      log.follow = true;
      if (log.offset === null || log.len - log.offset > WINDOW) reopen();
      log.done = false;
      pullLog();
      box.scrollTop = box.scrollHeight; showFollow();
    });
    box.addEventListener("click", (e) => {
      const a = e.target.closest("a.n");
      if (!a) return;
      e.preventDefault();
      history.replaceState(null, "", a.getAttribute("href"));
      jumpTo(a.getAttribute("href").slice(1));
    });
    document.addEventListener("click", (e) => {
      const card = e.target.closest("a.job");
      if (!card || e.metaKey || e.ctrlKey || e.shiftKey) return;
      e.preventDefault();
      history.replaceState(null, "", "?job=" + card.dataset.job);
      $$(".job.sel").forEach((j) => j.classList.remove("sel"));
      card.classList.add("sel");
      $("#log-key").textContent = card.dataset.key;
      resetLog(card.dataset.job, card.dataset.attempt, card.dataset.status);
    });
    if (/^#L\d+$/.test(location.hash)) { log.target = location.hash.slice(1); log.follow = false; }
    pullLog();
    // A safety net for a missed event: a running job's log is asked for now and then too.
    setInterval(() => { if (!log.done && log.attempt) pullLog(); }, 3000);
  }
})();
