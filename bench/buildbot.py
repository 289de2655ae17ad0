#!/usr/bin/env python3
"""Buildbot 4.3 beside kiln: N builds of one trivial step (`true`) through one master and 4 workers.

The same shape as bench/engine.py, so the two figures can be compared in one run (`bench/engine.py N --peer
buildbot` runs both and prints the ratio). Usage: bench/buildbot.py [BUILDS] (default 300, about a minute).

What it does:
- Installs Buildbot 4.3.x (`buildbot`, `buildbot-worker`, and `buildbot-www`, without which the master serves no
  REST API) with pip from PyPI into a virtualenv under ~/.cache/kiln-bench/buildbot-venv ($XDG_CACHE_HOME is
  honoured), once; later runs reuse it. The dependencies pip resolves (Twisted, SQLAlchemy, ...) are the newest
  that Buildbot 4.3 accepts, so they may differ between machines; the script prints the versions it ran.
- Creates a master in a temporary folder with its SQLite database (`buildbot create-master`), one builder over
  4 workers whose build is one ShellCommand `true` in the worker's build folder, `collapseRequests` off (Buildbot
  would otherwise merge queued requests for the same source into one build), usage reporting off, and the PB and
  web listeners on 127.0.0.1 only. Starts the master and 4 workers (`buildbot-worker create-worker`), each a
  twistd process in the foreground, and waits until the 4 workers are connected.
- Submits N builds in a burst through the ForceScheduler's JSON-RPC `force` action over the REST API (POST
  /api/v2/forceschedulers/force), from 8 client threads as engine.py submits kiln's builds. Each call makes one
  buildset with one build request. The ForceScheduler was chosen because it is Buildbot's own way to start a
  build by API, is one HTTP request per build like kiln's POST /api/v1/projects/P/builds, and needs no change
  source; `buildbot sendchange` would start a process per build and go through the change filters.
- Waits until N builds are complete, then reads Buildbot's own timestamps from the REST API: the first build
  request's `submitted_at` (/api/v2/buildrequests) to the last build's `complete_at` (/api/v2/builds).
  Buildbot stores these as whole seconds, so the span is exact to about +-1 s (under 2% for N=300 at ~5
  builds/s); the client's wall clock for the same span is printed beside it as a check.
- Prints builds/s, whether every build succeeded, the CPU seconds of the master and workers, and the master's
  peak RSS (VmHWM) and the workers' peak RSS.
- Stops the master and workers (SIGTERM, then SIGKILL after 10 s) and removes the temporary folder, also on
  failure or Ctrl-C; the processes also get SIGTERM if this script dies (PR_SET_PDEATHSIG).

What differs from kiln's job in bench/engine.py: kiln's job first checks out the project's git repository into
the agent's work folder (a clone, or a reuse of an earlier working copy) and, by default, runs `true` inside a
bubblewrap sandbox; Buildbot's build here has no source step and runs `true` directly in the worker's build
folder. Buildbot's build also has no log upload beyond the step's (empty) stdio log. So Buildbot does less
work per build than kiln does. Both use SQLite and one server process, and both run everything on this machine.
"""
import concurrent.futures, ctypes, json, os, signal, subprocess, sys, tempfile, time, urllib.error, urllib.request

import common

VERSION = "4.3"
WORKERS = 4
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kiln-bench")
VENV = os.path.join(CACHE, "buildbot-venv")
BIN = os.path.join(VENV, "bin")


def venv_versions():
    """Versions of the installed packages that matter, or None when the venv lacks Buildbot 4.3."""
    py = os.path.join(BIN, "python")
    if not os.path.exists(py):
        return None
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('buildbot', 'buildbot-worker', 'buildbot-www', 'Twisted', 'SQLAlchemy')}))")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    v = json.loads(r.stdout)
    return v if all(v[p].startswith(VERSION + ".") for p in ("buildbot", "buildbot-worker", "buildbot-www")) else None


def ensure_buildbot():
    """Install Buildbot 4.3.x from PyPI into the cached virtualenv unless it is already there."""
    v = venv_versions()
    if v:
        return v
    print(f"installing Buildbot {VERSION}.x into {VENV} (once) ...", file=sys.stderr)
    os.makedirs(CACHE, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", VENV], check=True)
    subprocess.run([os.path.join(BIN, "pip"), "install", "-q", "--disable-pip-version-check",
                    f"buildbot=={VERSION}.*", f"buildbot-worker=={VERSION}.*", f"buildbot-www=={VERSION}.*"], check=True)
    v = venv_versions()
    if not v:
        sys.exit(f"Buildbot {VERSION}.x is still not importable from {VENV} after pip install; remove it and retry")
    return v


def die_with_parent():
    """In the child, before exec: get SIGTERM when this script dies, so no master or worker outlives it."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_s(pid):
    """CPU seconds of a process and of its reaped children together."""
    return sum(common.cpu_s(pid))


MASTER_CFG = """\
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c['title'] = 'kiln bench'
c['buildbotURL'] = 'http://127.0.0.1:{web}/'
c['buildbotNetUsageData'] = None
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
c['www'] = {{'port': 'tcp:{web}:interface=127.0.0.1', 'plugins': {{}}}}
c['workers'] = [worker.Worker('w%d' % i, 'bench') for i in range({workers})]
c['collapseRequests'] = False
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['bench'])]
c['builders'] = [util.BuilderConfig(
    name='bench', workernames=['w%d' % i for i in range({workers})], collapseRequests=False,
    factory=util.BuildFactory([steps.ShellCommand(command=['true'], workdir='build')]))]
"""


def run(n, log=print):
    """Run the bench with n builds; return its figures as a dict (and log them as lines)."""
    versions = ensure_buildbot()
    tmp = tempfile.mkdtemp(prefix="kiln-bench-buildbot-")
    procs = []
    try:
        pb, web = common.free_port(), common.free_port()
        url = f"http://127.0.0.1:{web}/api/v2"
        master_dir = os.path.join(tmp, "master")
        subprocess.run([os.path.join(BIN, "buildbot"), "create-master", "-q", "--db", "sqlite:///state.sqlite", master_dir],
                       check=True, stdout=subprocess.DEVNULL)
        open(os.path.join(master_dir, "master.cfg"), "w").write(MASTER_CFG.format(web=web, pb=pb, workers=WORKERS))
        subprocess.run([os.path.join(BIN, "buildbot"), "checkconfig", master_dir], check=True, stdout=subprocess.DEVNULL)
        master = subprocess.Popen([os.path.join(BIN, "buildbot"), "start", "--nodaemon", master_dir], preexec_fn=die_with_parent,
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "master.err"), "w"))
        procs.append(master)

        def api(method, path, body=None):
            req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return json.load(r)
            except urllib.error.HTTPError as e:
                raise RuntimeError(f"{method} {url}{path} answered {e.code}: {e.read().decode(errors='replace')[:500]}") from None

        for _ in range(600):
            if master.poll() is not None:
                raise RuntimeError(f"the Buildbot master exited with {master.returncode}")
            try:
                api("GET", "/builders")
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the Buildbot master did not answer on {url} within 60 s")
        workers = []
        for i in range(WORKERS):
            wdir = os.path.join(tmp, f"w{i}")
            subprocess.run([os.path.join(BIN, "buildbot-worker"), "create-worker", "-q", wdir, f"127.0.0.1:{pb}", f"w{i}", "bench"],
                           check=True, stdout=subprocess.DEVNULL)
            workers.append(subprocess.Popen([os.path.join(BIN, "buildbot-worker"), "start", "--nodaemon", wdir],
                                            preexec_fn=die_with_parent, stdout=subprocess.DEVNULL,
                                            stderr=open(os.path.join(tmp, f"w{i}.err"), "w")))
        procs += workers
        deadline = time.time() + 60
        while sum(1 for w in api("GET", "/workers")["workers"] if w["connected_to"]) < WORKERS:
            if time.time() > deadline:
                raise RuntimeError(f"the {WORKERS} Buildbot workers did not connect to the master within 60 s")
            time.sleep(0.2)
        time.sleep(1.5)  # as engine.py: everything idle and waiting before the burst

        def force(i):
            body = {"jsonrpc": "2.0", "method": "force", "id": i,
                    "params": {"builderNames": ["bench"], "username": "bench <bench@example.com>", "reason": "bench"}}
            r = api("POST", "/forceschedulers/force", body)
            if "error" in r:
                raise RuntimeError(f"force build {i} was refused: {r['error']}")

        cpu0 = [cpu_s(p.pid) for p in procs]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(force, range(n)))
        t_submit = time.time() - t0
        deadline = time.time() + 600 + 2 * n
        while True:
            done = len(api("GET", "/builds?complete=true&field=buildid&field=complete")["builds"])
            if done >= n:
                break
            if time.time() > deadline or master.poll() is not None:
                raise RuntimeError(f"only {done}/{n} Buildbot builds completed after {600 + 2 * n} s")
            time.sleep(1)
        t_wall = time.time() - t0
        cpu = [cpu_s(p.pid) - c for p, c in zip(procs, cpu0)]
        builds = api("GET", "/builds?field=buildid&field=complete_at&field=results")["builds"]
        requests = api("GET", "/buildrequests?field=buildrequestid&field=submitted_at")["buildrequests"]
        first = min(r["submitted_at"] for r in requests)
        last = max(b["complete_at"] for b in builds)
        span = max(last - first, 1)
        figures = {
            "builds": len(builds), "all_succeeded": all(b["results"] == 0 for b in builds),
            "builds_per_s": len(builds) / span, "span_s": span, "wall_s": t_wall, "submit_s": t_submit,
            "master_cpu_s": cpu[0], "workers_cpu_s": sum(cpu[1:]),
            "master_peak_rss_mb": common.rss_mb(master.pid), "workers_peak_rss_mb": [common.rss_mb(w.pid) for w in workers],
            "versions": versions,
        }
        log("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; one master on SQLite, {WORKERS} workers")
        log(f"builds: {figures['builds']} (submitted in {t_submit:.1f}s by 8 client threads through the ForceScheduler), "
            f"all succeeded: {figures['all_succeeded']}")
        log(f"throughput: {figures['builds_per_s']:.2f} builds/s (first request submitted -> last build complete, {span}s in "
            f"Buildbot's whole-second timestamps; {t_wall:.1f}s on the client's clock from the first submit to seeing all complete)")
        log(f"CPU during the burst: master {cpu[0]:.1f}s ({1000 * cpu[0] / n:.0f} ms per build), workers {sum(cpu[1:]):.1f}s (with their `true` processes)")
        log(f"peak RSS: master {figures['master_peak_rss_mb']:.1f} MB, workers "
            + ", ".join(f"{x:.1f}" for x in figures["workers_peak_rss_mb"]) + " MB")
        return figures
    except BaseException:
        # The temporary folder goes away below: show the end of the master's log first.
        try:
            tail = open(os.path.join(tmp, "master", "twistd.log"), errors="replace").read().splitlines()[-40:]
            print("--- last lines of the Buildbot master's twistd.log ---", *tail, "---", sep="\n", file=sys.stderr)
        except OSError:
            pass
        raise
    finally:
        common.stop(procs, tmp, grace=10)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up through run()'s finally
    n = next((int(a) for a in sys.argv[1:] if a.isdigit()), 300)
    if n < 1:
        sys.exit("BUILDS must be at least 1")
    try:
        run(n, log=lambda line: print("buildbot " + line))
    except RuntimeError as e:
        sys.exit(f"bench/buildbot.py: {e}")


if __name__ == "__main__":
    main()
