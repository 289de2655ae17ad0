#!/usr/bin/env bash
# Benchmark (not a test): 200 sleep-based tests with skewed durations (4 of 10 s, 196 of
# 0.1–2 s, about 120 s in all) on 4 agents, through a real server and real agents; the runner
# pays a start-up cost of 0.3 s every time it starts, as pytest or jest do.
# Prints wall ÷ (start-up + max(longest, total ÷ 4)) for queue mode without and with history, the naive
# equal-count split (nextest's --partition count:K/4, measured for real as 4 plain jobs), and
# kiln's overhead per batch (claim → test process started) from the job logs.
# Usage: bench/shards/run.sh   (from the repository root; builds target/release/kiln)
set -euo pipefail
ROOT=$(pwd)
BIN=${KILN_BIN:-$ROOT/target/release/kiln}
[ -n "${KILN_BIN:-}" ] || cargo build --release -q
T=$(mktemp -d /tmp/kiln-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export KILN_SERVER=http://127.0.0.1:$PORT KILN_TOKEN=bench-admin
"$BIN" server --listen 127.0.0.1:$PORT --data "$T/data" --agent-token bench-agent --admin-token bench-admin --allow-local-repos >"$T/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "$KILN_SERVER/api/v1/agents" -H "authorization: Bearer bench-admin" >/dev/null 2>&1 && break; sleep 0.1; done
for i in 1 2 3 4; do
  "$BIN" agent --server "$KILN_SERVER" --token bench-agent --name b$i --work-dir "$T/work$i" >"$T/agent$i.log" 2>&1 &
  PIDS+=($!)
done

# The suite: durations.txt ("id seconds", in a seeded random order) and run.py (sleeps, writes JUnit).
mkdir -p "$T/suite"
python3 - "$T/suite" <<'PY'
import os, random, sys
d = sys.argv[1]
r = random.Random(2026)
small = [r.uniform(0.1, 2.0) for _ in range(196)]
scale = 80.0 / sum(small)
tests = [(f"slow{i}", 10.0) for i in range(4)] + [(f"t{i:03d}", round(max(0.1, min(2.0, s * scale)), 3)) for i, s in enumerate(small)]
r.shuffle(tests)
open(os.path.join(d, "durations.txt"), "w").write("".join(f"{k} {v}\n" for k, v in tests))
open(os.path.join(d, "run.py"), "w").write('''import os, sys, time, uuid
time.sleep(0.3)  # the runner's start-up: imports, collection
d = dict(l.split() for l in open("durations.txt"))
cases = []
for t in sys.argv[1:]:
    s = time.time(); time.sleep(float(d[t])); cases.append((t, time.time() - s))
with open(os.path.join(os.environ.get("KILN_JUNIT_DIR", "."), "r-%s.xml" % uuid.uuid4().hex), "w") as f:
    f.write('<testsuite name="bench">')
    for t, x in cases: f.write('<testcase classname="bench" name="%s" time="%.3f"/>' % (t, x))
    f.write("</testsuite>")
''')
naive = "jobs:\n" + "".join(
    f"  p{k}:\n    steps:\n      - python3 run.py $(awk 'NR % 4 == {k - 1} {{print $1}}' durations.txt)\n" for k in range(1, 5))
open(os.path.join(d, "naive.yml"), "w").write(naive)
open(os.path.join(d, ".kiln.yml"), "w").write('''jobs:
  suite:
    tests:
      shards: 4
      list: cut -d" " -f1 durations.txt
      run: python3 run.py {tests}
''')
PY
git -C "$T/suite" init -q -b main && git -C "$T/suite" add -A && git -C "$T/suite" -c user.email=b@kiln -c user.name=bench commit -qm suite
"$BIN" project add suite --repo "$T/suite" >/dev/null
"$BIN" project add naive --repo "$T/suite" --pipeline naive.yml >/dev/null
read -r TOTAL LONGEST < <(awk '{s+=$2; if ($2>m) m=$2} END {print s, m}' "$T/suite/durations.txt")
BOUND=$(python3 -c "print(0.3 + max($LONGEST, $TOTAL/4))")

timed() { # project -> prints wall seconds; the build must pass
  local s e
  s=$(date +%s.%N)
  "$BIN" trigger "$1" --wait >"$T/last.out" 2>&1 || { echo "build of $1 failed:" >&2; tail -5 "$T/last.out" >&2; exit 1; }
  e=$(date +%s.%N)
  python3 -c "print(round($e - $s, 2))"
}
ratio() { python3 -c "print(round($1 / $BOUND, 3))"; }
echo "suite: 200 tests, total ${TOTAL}s, longest ${LONGEST}s, 0.3 s start-up, 4 agents: bound 0.3 + max(longest, total/4) = ${BOUND}s"
W1=$(timed suite); B1=$("$BIN" builds suite --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "queue mode, no history:   wall ${W1}s  ratio $(ratio "$W1")  (target <= 1.20)"
W2=$(timed suite); B2=$("$BIN" builds suite --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
echo "queue mode, with history: wall ${W2}s  ratio $(ratio "$W2")  (target <= 1.10)"
W3=$(timed naive)
echo "naive --partition count:K/4 (4 static jobs, measured): wall ${W3}s  ratio $(ratio "$W3")"
for b in "$B1" "$B2"; do
  "$BIN" logs "$b" | python3 -c '
import re, statistics, sys
starts = [int(m.group(1)) for m in re.finditer(r"started (\d+) ms after the claim", sys.stdin.read())]
print("build %s: %d batches; claim -> test process started: mean %.1f ms, median %d ms, max %d ms" % (sys.argv[1], len(starts), statistics.mean(starts), statistics.median(starts), max(starts)))' "$b"
  "$BIN" show "$b" --json | python3 -c '
import json, sys, datetime
b = json.load(sys.stdin)
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
busy = sum(p(j["finished_at"]) - p(j["started_at"]) for j in b["jobs"])
print("build %s: shards busy %.1f s for %.1f s of tests: %.1f s of overhead in all (checkout, listing, process starts, uploads)" % (b["id"], busy, float(sys.argv[1]), busy - float(sys.argv[1])))' "$TOTAL"
done
