// Helpers for the browser tests: a real kiln server and agents as child processes on
// free loopback ports with temp folders, real git repositories, and Debian's chromium.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(new URL("../..", import.meta.url).pathname);
export const BIN = process.env.KILN_BIN || [path.join(ROOT, "target/release/kiln"), path.join(ROOT, "target/debug/kiln")].find((p) => fs.existsSync(p));
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const ADMIN_TOKEN = "browser-admin-token";
export const ADMIN_PASSWORD = "browser-admin-pw";
const AGENT_TOKEN = "browser-agent-token";

if (!BIN || !fs.existsSync(BIN)) throw new Error("no kiln binary: run `cargo build` first (or set KILN_BIN)");
if (!fs.existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: run ci/setup-console.sh (apt-get install chromium)`);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
}

export class Kiln {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "kiln-browser-"));
    this.children = [];
  }
  async start(...args) {
    const port = await freePort();
    this.url = `http://127.0.0.1:${port}`;
    const log = fs.openSync(path.join(this.dir, "server.log"), "a");
    const srv = spawn(BIN, ["server", "--listen", `127.0.0.1:${port}`, "--data", path.join(this.dir, "data"),
      "--agent-token", AGENT_TOKEN, "--admin-token", ADMIN_TOKEN, "--admin-password", ADMIN_PASSWORD, "--allow-local-repos", ...args],
      { stdio: ["ignore", log, log] });
    this.children.push(srv);
    for (let i = 0; i < 200; i++) {
      try { const r = await fetch(this.url + "/login"); if (r.ok) return this; } catch (_) {}
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("kiln server did not start: " + fs.readFileSync(path.join(this.dir, "server.log"), "utf8"));
  }
  agent(name, ...args) {
    const log = fs.openSync(path.join(this.dir, `agent-${name}.log`), "a");
    const a = spawn(BIN, ["agent", "--server", this.url, "--token", AGENT_TOKEN, "--name", name,
      "--work-dir", path.join(this.dir, `work-${name}`), ...args], { stdio: ["ignore", log, log] });
    this.children.push(a);
  }
  /// Run a client command; returns its stdout.
  cli(...args) {
    return execFileSync(BIN, args, { env: { ...process.env, KILN_SERVER: this.url, KILN_TOKEN: ADMIN_TOKEN }, encoding: "utf8" });
  }
  /// A git repository with `files` ({path: text}) in one commit.
  repo(name, files) {
    const d = path.join(this.dir, name);
    fs.mkdirSync(d, { recursive: true });
    for (const [p, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(d, p)), { recursive: true });
      fs.writeFileSync(path.join(d, p), text);
    }
    const git = (...a) => execFileSync("git", ["-C", d, ...a], { stdio: "ignore" });
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("-c", "user.email=dev@example.com", "-c", "user.name=Dana Dev", "commit", "-qm", "Add the pipeline");
    return d;
  }
  commit(dir, msg, files) {
    for (const [p, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, p), text);
    execFileSync("git", ["-C", dir, "add", "-A"]);
    execFileSync("git", ["-C", dir, "-c", "user.email=dev@example.com", "-c", "user.name=Dana Dev", "commit", "-qm", msg]);
  }
  async api(p) {
    const r = await fetch(this.url + p, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    if (!r.ok) throw new Error(`GET ${p}: ${r.status}`);
    return r.json();
  }
  async waitBuild(id, secs = 60) {
    for (let i = 0; i < secs * 10; i++) {
      const b = await this.api(`/api/v1/builds/${id}`);
      if (["passed", "failed", "errored", "cancelled"].includes(b.status)) return b;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`build ${id} did not finish`);
  }
  stop() {
    for (const c of this.children) { try { c.kill("SIGKILL"); } catch (_) {} }
    if (!process.env.KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function browser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic"],
  });
}
