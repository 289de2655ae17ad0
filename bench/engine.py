#!/usr/bin/env python3
"""Engine benchmark: N builds of one trivial job (`true`) through one server and 4 agents.

Prints jobs per second for a burst of N builds (first queued -> last finished), the
p50/p99 latency from a job being queued to it being started with idle agents (100
builds one after another, server timestamps), the CPU the server and the agents spent during the burst (from
just before the first build is submitted to the last one passing: not their start-up, nor the listing of the builds
afterwards), and peak RSS of the server and agents. Usage: bench/engine.py [BUILDS] [--isolation none] [--agent kiln]
(default 1000 builds, jobs in the agents' bubblewrap sandbox; `--isolation none` runs them unconfined, to measure the sandbox's
cost). The agents are the lean `kiln-agent` binary, as on an agent machine; `--agent kiln` runs `kiln agent`
(the whole binary) instead, to compare. Builds the release binaries first. Figures vary with the machine's load: compare ratios in one run.

`--peer buildbot` then runs bench/buildbot.py in the same invocation, right after kiln's server and agents have
stopped: the same number of builds (or `--peer-builds M`) of a trivial `true` through Buildbot 4.3's master and 4
workers on this machine, and prints Buildbot's builds/s and kiln's jobs/s divided by it. Buildbot is installed from
PyPI into ~/.cache/kiln-bench/buildbot-venv before kiln's run starts; bench/buildbot.py says what differs.

`--runs R` repeats the whole (kiln, then the peer) R times, `--pause S` seconds apart (default 30), and prints
each run and the medians: jobs/s, server CPU a job, agents' peak RSS, and kiln / Buildbot run by run.
"""
import concurrent.futures, os, subprocess, sys, tempfile, time, urllib.request

import common

ARGS = sys.argv[1:]
FLAGS = ("--isolation", "--peer", "--peer-builds", "--concurrency", "--runs", "--pause", "--agent")
opt = lambda flag, default: ARGS[ARGS.index(flag) + 1] if flag in ARGS and ARGS.index(flag) + 1 < len(ARGS) else default
ISOLATION = opt("--isolation", "sandbox")
N = next((int(a) for i, a in enumerate(ARGS) if a.isdigit() and (i == 0 or ARGS[i - 1] not in FLAGS)), 1000)
PEER = opt("--peer", None)
AGENT = opt("--agent", "kiln-agent")
if AGENT not in ("kiln-agent", "kiln"):
    sys.exit(f"bench/engine.py: --agent takes kiln-agent (the lean agent binary, the default) or kiln (`kiln agent`), not {AGENT!r}")
CONCURRENCY = opt("--concurrency", "1")
if not CONCURRENCY.isdigit() or int(CONCURRENCY) < 1:
    sys.exit(f"bench/engine.py: --concurrency takes a number of jobs each agent runs at once, at least 1, not {CONCURRENCY!r}")
if PEER not in (None, "buildbot"):
    sys.exit(f"bench/engine.py: --peer {PEER} is not known; the only peer is `buildbot` (bench/buildbot.py)")
PEER_N = opt("--peer-builds", str(N))
if not PEER_N.isdigit() or int(PEER_N) < 1:
    sys.exit(f"bench/engine.py: --peer-builds takes a number of builds of at least 1, not {PEER_N!r}")
PEER_N = int(PEER_N)
RUNS = opt("--runs", "1")
if not RUNS.isdigit() or int(RUNS) < 1:
    sys.exit(f"bench/engine.py: --runs takes a number of runs of at least 1, not {RUNS!r}")
RUNS = int(RUNS)
PAUSE = opt("--pause", "30")
if not PAUSE.isdigit():
    sys.exit(f"bench/engine.py: --pause takes whole seconds, not {PAUSE!r}")
PAUSE = int(PAUSE)
ROOT = common.ROOT
if PEER:
    import importlib.util
    _spec = importlib.util.spec_from_file_location("bench_buildbot", os.path.join(ROOT, "bench", "buildbot.py"))
    peer = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(peer)
    peer.ensure_buildbot()  # install once, before anything is measured
BIN = common.kiln_bin()
AGENT_CMD = common.agent_cmd(BIN, AGENT == "kiln-agent")

def kiln_round():
    """One run of kiln: a fresh server and 4 agents, the burst, the idle latency; its figures."""
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    TOKEN = "bench-admin"
    procs = []

    api = lambda method, path, body=None: common.api(url, TOKEN, method, path, body)
    ts, cpu_s, pss_mb, rss_mb = common.ts, common.cpu_s, common.pss_mb, common.rss_mb

    try:
        server = subprocess.Popen([BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", f"{tmp}/data", "--agent-token", "bench",
                                   "--admin-token", TOKEN, "--allow-local-repos"],  # the bench's repository is a local folder
                                  stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/server.log", "w"))
        procs.append(server)
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/api/v1/projects", timeout=1); break
            except Exception:
                time.sleep(0.1)
        agents = [subprocess.Popen(AGENT_CMD + ["--server", url, "--token", "bench", "--name", f"a{i}", "--work-dir", f"{tmp}/w{i}",
                                    "--isolation", ISOLATION, "--concurrency", CONCURRENCY],
                                   stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/agent{i}.log", "w"), env={**os.environ, "KILN_LOG": "warn"})
                  for i in range(4)]
        procs += agents
        repo = f"{tmp}/repo"
        os.makedirs(repo)
        open(f"{repo}/.kiln.yml", "w").write("jobs:\n  t:\n    steps: [\"true\"]\n")
        for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "x"]):
            subprocess.run(["git", "-C", repo] + cmd, check=True)
        api("POST", "/api/v1/projects", {"name": "bench", "repo": repo})
        time.sleep(1.5)  # agents registered and waiting in their long poll
        # CPU is counted from here to the last build's end: not the server's start-up (migrations, hashing the
        # first admin's password) nor the listing of every build below, which are no job's cost.
        cpu0 = cpu_s(server.pid), [cpu_s(a.pid) for a in agents]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda _: api("POST", "/api/v1/projects/bench/builds", {}), range(N)))
        t_submit = time.time() - t0
        deadline = time.time() + 600
        while True:
            done = api("GET", "/api/v1/projects/bench/builds?status=passed&limit=1")["total"]
            if done >= N:
                break
            bad = sum(api("GET", f"/api/v1/projects/bench/builds?status={s}&limit=1")["total"] for s in ("failed", "errored", "cancelled"))
            if bad:
                sys.exit(f"{bad} of {N} builds did not pass; see {tmp}/server.log and {tmp}/agent*.log")
            if time.time() > deadline:
                sys.exit(f"only {done}/{N} builds passed after 10 minutes; see {tmp}/server.log")
            time.sleep(0.2)
        minus = lambda a, b: (a[0] - b[0], a[1] - b[1])
        srv_cpu = minus(cpu_s(server.pid), cpu0[0])
        ag_cpu = [minus(cpu_s(a.pid), c) for a, c in zip(agents, cpu0[1])]
        srv_total = cpu_s(server.pid)[0]
        builds = []
        for off in range(0, N, 500):
            builds += api("GET", f"/api/v1/projects/bench/builds?limit=500&offset={off}")["builds"]
        jobs = [j for b in builds for j in b["jobs"]]
        rss_after = (rss_mb(server.pid, "VmRSS"), [rss_mb(a.pid, "VmRSS") for a in agents])
        pss_after = [pss_mb(a.pid) for a in agents]
        first = min(ts(b["created_at"]) for b in builds)
        last = max(ts(b["finished_at"]) for b in builds)
        lat = sorted((ts(j["started_at"]) - ts(j["created_at"])) * 1000 for j in jobs)
        pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))]
        print(f"isolation: {ISOLATION}; 4 agents ({' '.join(os.path.basename(a) for a in AGENT_CMD)}), each running up to {CONCURRENCY} job(s) at once")
        print(f"builds: {len(builds)} (submitted in {t_submit:.1f}s by 8 client threads), all passed: {all(b['status'] == 'passed' for b in builds)}")
        kiln_rate = len(jobs) / (last - first)
        print(f"throughput: {kiln_rate:.0f} jobs/s (first queued -> last finished, {last - first:.2f}s)")
        print(f"CPU during the burst: server {srv_cpu[0]:.1f}s (+{srv_cpu[1]:.1f}s in git), agents {sum(c[0] for c in ag_cpu):.1f}s (+{sum(c[1] for c in ag_cpu):.1f}s in git and steps); "
              f"the server's CPU from its start to the burst's end, with start-up and the bench's polling, {srv_total:.1f}s")
        print(f"queued -> started during the burst (queue depth up to {N}): p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms")
        idle = []
        for _ in range(100):
            b = api("POST", "/api/v1/projects/bench/builds", {})
            while True:
                b = api("GET", f"/api/v1/builds/{b['id']}")
                if b["status"] in ("passed", "failed", "errored"):
                    break
                time.sleep(0.005)
            j = b["jobs"][0]
            idle.append((ts(j["started_at"]) - ts(j["created_at"])) * 1000)
        idle.sort()
        print(f"queued -> started with idle agents: p50 {idle[50]:.1f} ms, p99 {idle[98]:.1f} ms (100 builds one at a time)")
        print(f"RSS right after the burst: server {rss_after[0]:.1f} MB, agents " + ", ".join(f"{x:.1f}" for x in rss_after[1]) + " MB"
              + " (PSS, shared binary pages split between the processes mapping them: " + ", ".join(f"{x:.1f}" for x in pss_after) + " MB)")
        print(f"peak RSS: server {rss_mb(server.pid):.1f} MB (includes hashing the first admin's password with argon2, 19 MiB), agents "
              + ", ".join(f"{rss_mb(a.pid):.1f}" for a in agents) + " MB")
        return {"rate": kiln_rate, "server_ms": srv_cpu[0] * 1000 / len(jobs), "git_ms": srv_cpu[1] * 1000 / len(jobs),
                "agent_rss": max(rss_mb(a.pid) for a in agents), "agent_pss": max(pss_after)}
    finally:
        common.stop(procs, tmp)


median = common.median

rounds = []
for r in range(RUNS):
    if RUNS > 1:
        if r:
            time.sleep(PAUSE)  # files the last run made and deleted age out of ext4's recently-freed inodes
        print(f"=== run {r + 1} of {RUNS} (load {os.getloadavg()[0]:.2f})")
    k = kiln_round()
    bb = None
    if PEER:
        print(f"--- {PEER}: {PEER_N} builds through Buildbot 4.3 in this run, after kiln's server and agents stopped ---")
        try:
            bb = peer.run(PEER_N, log=lambda line: print("buildbot " + line))
        except RuntimeError as e:
            sys.exit(f"bench/buildbot.py: {e}")
        print(f"kiln / Buildbot: {k['rate'] / bb['builds_per_s']:.1f}x ({k['rate']:.0f} jobs/s against {bb['builds_per_s']:.2f} builds/s, "
              f"{N} and {PEER_N} builds of `true`)")
    rounds.append((k, bb))
if RUNS > 1:
    ks = [k for k, _ in rounds]
    each = lambda key, fmt: ", ".join(format(k[key], fmt) for k in ks)
    line = (f"median of {RUNS} runs: {median([k['rate'] for k in ks]):.0f} jobs/s (runs: {each('rate', '.0f')}), "
            f"server CPU {median([k['server_ms'] for k in ks]):.1f} ms a job (+{median([k['git_ms'] for k in ks]):.1f} ms in git; runs: {each('server_ms', '.1f')}), "
            f"agent peak RSS {median([k['agent_rss'] for k in ks]):.1f} MB (PSS {median([k['agent_pss'] for k in ks]):.1f})")
    if PEER:
        ratios = [k["rate"] / bb["builds_per_s"] for k, bb in rounds]
        line += (f"; Buildbot {median([bb['builds_per_s'] for _, bb in rounds]):.2f} builds/s (runs: {', '.join(format(bb['builds_per_s'], '.2f') for _, bb in rounds)}); "
                 f"kiln / Buildbot {median(ratios):.1f}x (runs: {', '.join(f'{x:.1f}x' for x in ratios)})")
    print(line + f"; load now {os.getloadavg()[0]:.2f}")
