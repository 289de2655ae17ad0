#!/usr/bin/env python3
"""Change-source latency: time from a push to the build's first job running on an idle agent.

Through the generic webhook, through the push endpoint that `kiln notify` (the post-receive
hook) calls, and through the poller (interval 1 s). Client and server share this machine's
clock. Usage: bench/sources.py [ROUNDS] (default 20). Builds the release binary first.
"""
import hashlib, hmac, json, os, subprocess, statistics, sys, tempfile, time, urllib.request

import common

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
BIN = common.kiln_bin()
tmp = tempfile.mkdtemp(prefix="kiln-bench-sources-")
port = common.free_port()
url, TOKEN, SECRET = f"http://127.0.0.1:{port}", "bench-admin", b"bench-hook"
procs = []

def call(method, path, body=None, headers=None, raw=None):
    return common.api(url, TOKEN, method, path, body, headers, raw, timeout=30)

ts = common.ts

def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout.strip()

def commit(repo, n):
    open(f"{repo}/f", "w").write(str(n))
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", f"c{n}")
    return git(repo, "rev-parse", "HEAD")

def started_at(project, sha, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        for b in call("GET", f"/api/v1/projects/{project}/builds?limit=5")["builds"]:
            if b["commit"] == sha and b["jobs"] and b["jobs"][0]["started_at"]:
                return ts(b["jobs"][0]["started_at"])
        time.sleep(0.01)
    raise SystemExit(f"no job started for {sha}")

def make_repo(name):
    repo = f"{tmp}/{name}"
    os.makedirs(repo)
    open(f"{repo}/.kiln.yml", "w").write("jobs:\n  j:\n    steps: [\"true\"]\n")
    git(repo, "init", "-q", "-b", "main")
    commit(repo, 0)
    return repo

def report(name, xs):
    xs = sorted(x * 1000 for x in xs)
    print(f"{name}: p50 {statistics.median(xs):.0f} ms, max {xs[-1]:.0f} ms over {len(xs)} pushes")

try:
    procs.append(subprocess.Popen([BIN, "server", "--listen", f"127.0.0.1:{port}", "--data", f"{tmp}/data", "--agent-token", "b",
                                   "--admin-token", TOKEN, "--allow-local-repos"],  # the bench's repositories are local folders
                                  stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/server.log", "w")))
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/api/v1/projects", timeout=1); break
        except Exception:
            time.sleep(0.1)
    procs.append(subprocess.Popen([BIN, "agent", "--server", url, "--token", "b", "--name", "a", "--work-dir", f"{tmp}/w"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    hook_repo, push_repo, poll_repo = make_repo("hook"), make_repo("push"), make_repo("poll")
    call("POST", "/api/v1/projects", {"name": "hook", "repo": hook_repo, "settings": {"webhook_secret": SECRET.decode()}})
    call("POST", "/api/v1/projects", {"name": "push", "repo": push_repo})
    call("POST", "/api/v1/projects", {"name": "poll", "repo": poll_repo, "settings": {"poll": "1s"}})
    time.sleep(1.5)
    hook, push, poll = [], [], []
    for i in range(1, ROUNDS + 1):
        sha = commit(hook_repo, i)
        body = json.dumps({"branch": "main", "commit": sha}).encode()
        sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        t0 = time.time()
        call("POST", "/hooks/generic/hook", raw=body, headers={"X-Kiln-Signature-256": sig})
        hook.append(started_at("hook", sha) - t0)
        old = git(push_repo, "rev-parse", "HEAD")
        sha = commit(push_repo, i)
        t0 = time.time()
        call("POST", "/api/v1/projects/push/push", {"before": old, "after": sha, "ref": "refs/heads/main"})
        push.append(started_at("push", sha) - t0)
        time.sleep(0.2)
    for i in range(1, min(ROUNDS, 8) + 1):
        t0 = time.time()
        sha = commit(poll_repo, i)
        poll.append(started_at("poll", sha) - t0)
        time.sleep(0.3)
    report("webhook (generic, signed) -> first job running", hook)
    report("post-receive hook (kiln notify) -> first job running", push)
    report("poller (--poll 1s) -> first job running", poll)
finally:
    common.stop(procs, tmp)
