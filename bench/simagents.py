#!/usr/bin/env python3
"""Simulated-agent benchmark: AGENTS lightweight agents (asyncio tasks, one keep-alive HTTP
connection each, no process per agent) speak the real agent protocol — register, long-poll
claim, finish at once — against real servers, while BUILDS builds of one job are queued.

Prints claims per second (first job queued -> last job finished), p50/p99 claim latency (a
job's queued -> started, server timestamps) and the servers' RSS with every agent connected.
Usage: bench/simagents.py [AGENTS=500] [BUILDS=2000] [--database postgres://…] [--servers N]
(several servers need PostgreSQL; agents are spread over them). Builds the release binary.
"""
import asyncio, json, os, subprocess, sys, tempfile, time, urllib.request

import common

args = [a for a in sys.argv[1:] if not a.startswith("--")]
opt = lambda name, default: next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == name and i + 1 < len(sys.argv)), default)
AGENTS = int(args[0]) if args else 500
BUILDS = int(args[1]) if len(args) > 1 else 2000
DATABASE = opt("--database", None)
SERVERS = int(opt("--servers", "1"))
if DATABASE: args = [a for a in args if a != DATABASE]
BIN = common.kiln_bin()
tmp = tempfile.mkdtemp(prefix="kiln-sim-")
TOKEN, AGENT_TOKEN = "bench-admin", "bench"

free_port, ts = common.free_port, common.ts
api = lambda url, method, path, body=None: common.api(url, TOKEN, method, path, body)
rss_mb = lambda pid: common.rss_mb(pid, "VmRSS")

class Conn:
    """One keep-alive HTTP/1.1 connection speaking JSON."""
    def __init__(self, port): self.port, self.r, self.w = port, None, None
    async def call(self, path, body, token):
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode()
        self.w.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await self.w.drain()
        status = int((await self.r.readline()).split()[1])
        length = 0
        while (line := await self.r.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length": length = int(v)
        payload = await self.r.readexactly(length)
        if status != 200: raise RuntimeError(f"{path}: {status} {payload[:200]!r}")
        return json.loads(payload) if payload else None

claims = 0
async def agent(i, port, stop):
    global claims
    c = Conn(port)
    reg = await c.call("/api/v1/agent/register", {"name": f"sim{i}", "labels": {}, "concurrency": 1, "protocol": 1}, AGENT_TOKEN)
    tok = reg["token"]
    n = 0
    while not stop.is_set():
        n += 1
        job = await c.call("/api/v1/agent/claim", {"claim_id": f"sim{i}-{n}"}, tok)
        if job:
            claims += 1
            await c.call(f"/api/v1/agent/jobs/{job['job_id']}/finish",
                         {"attempt": job["attempt"], "status": "passed", "exit_code": 0, "reason": None, "log_len": 0}, tok)

procs = []
try:
    if SERVERS > 1 and not DATABASE: sys.exit("several servers need --database postgres://…")
    ports = [free_port() for _ in range(SERVERS)]
    for n, port in enumerate(ports):
        extra = ["--database", DATABASE] if DATABASE else []
        procs.append(subprocess.Popen([BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", f"{tmp}/data{n}", "--agent-token", AGENT_TOKEN,
                                       "--admin-token", TOKEN, "--allow-local-repos"] + extra, stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/server{n}.log", "w"),
                                      env={**os.environ, "KILN_LOG": "warn"}))
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try: urllib.request.urlopen(url + "/api/v1/projects", timeout=1); break
            except Exception: time.sleep(0.1)
    url = f"http://127.0.0.1:{ports[0]}"
    repo = f"{tmp}/repo"; os.makedirs(repo)
    open(f"{repo}/.kiln.yml", "w").write("jobs:\n  t:\n    steps: [\"true\"]\n")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", repo] + cmd, check=True)
    api(url, "POST", "/api/v1/projects", {"name": "sim", "repo": repo})

    async def main():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(agent(i, ports[i % len(ports)], stop)) for i in range(AGENTS)]
        await asyncio.sleep(3)  # every agent registered and long-polling
        rss = [rss_mb(p.pid) for p in procs]
        loop = asyncio.get_running_loop()
        def submit():
            import concurrent.futures
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                list(ex.map(lambda k: api(f"http://127.0.0.1:{ports[k % len(ports)]}", "POST", "/api/v1/projects/sim/builds", {}), range(BUILDS)))
        await loop.run_in_executor(None, submit)
        deadline = time.time() + 600
        while claims < BUILDS and time.time() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        for t in tasks: t.cancel()
        return rss
    rss = asyncio.run(main())
    builds = []
    for off in range(0, BUILDS, 500):
        builds += api(url, "GET", f"/api/v1/projects/sim/builds?limit=500&offset={off}")["builds"]
    jobs = [j for b in builds for j in b["jobs"] if j.get("started_at")]
    first = min(ts(j["created_at"]) for j in jobs); last = max(ts(j["finished_at"]) for j in jobs if j.get("finished_at"))
    lat = sorted((ts(j["started_at"]) - ts(j["created_at"])) * 1000 for j in jobs)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
    where = f"PostgreSQL, {SERVERS} server(s)" if DATABASE else "SQLite, 1 server"
    print(f"{where}, {AGENTS} simulated agents: {len(jobs)}/{BUILDS} jobs claimed, {len(jobs) / (last - first):.0f} claims/s")
    print(f"claim latency (queued -> started): p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms")
    print("server RSS with every agent connected: " + ", ".join(f"{x:.1f} MB" for x in rss))
finally:
    common.stop(procs, tmp)
