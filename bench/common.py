"""What the Python benchmarks share: the kiln binary they run, a free port, calls to kiln's API,
its timestamps, the median, and a process's CPU time and memory read from /proc."""
import datetime, json, os, shutil, socket, subprocess, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kiln_bin():
    """KILN_BIN, used as it is (ci/bench-smoke.sh passes the debug binary); else the release build, built first
    (with the lean agent binary, `kiln-agent`, beside it)."""
    if os.environ.get("KILN_BIN"):
        return os.environ["KILN_BIN"]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "kiln", "-p", "kiln-agent"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/release/kiln")


def agent_cmd(kiln, lean):
    """The command that starts an agent: the lean `kiln-agent` binary beside `kiln` (lean=True), else `kiln agent`."""
    if not lean:
        return [kiln, "agent"]
    lean_bin = os.path.join(os.path.dirname(shutil.which(kiln) or kiln), "kiln-agent")
    if not os.path.exists(lean_bin):
        release = " --release" if os.sep + "release" + os.sep in lean_bin else ""
        raise SystemExit(f"{lean_bin} is missing: build it with cargo build{release} -p kiln-agent (or pass --agent kiln)")
    return [lean_bin]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def api(url, token, method, path, body=None, headers=None, raw=None, timeout=60):
    """A call to kiln's API with a bearer token: JSON `body` (or `raw` bytes) in, JSON out."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
    with urllib.request.urlopen(urllib.request.Request(url + path, method=method, data=data, headers=h), timeout=timeout) as r:
        return json.load(r)


def ts(s):
    """An API timestamp (RFC 3339) in epoch seconds."""
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def cpu_s(pid):
    """CPU seconds of a process, and of its children it has reaped (git, shells): (own, children)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick, (int(f[13]) + int(f[14])) / tick


def rss_mb(pid, field="VmHWM"):
    """Peak (VmHWM) or current (VmRSS) resident memory in MB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pss_mb(pid):
    """Proportional set size in MB: pages shared with other processes (the one kiln binary the
    server and every agent map) count as a share each, not whole in every process."""
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(procs, tmp, grace=5):
    """Stop the processes a bench started (SIGTERM, then SIGKILL after `grace` seconds) and remove its folder."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
