#!/usr/bin/env bash
# Logs benchmark (not a test): for a chatty step of MB megabytes (default "200 1024"), with
# RUNS runs each (default 3, median reported):
#  - the slowdown against the same step with its output sent to /dev/null: of the job until
#    its log is stored whole (`kiln trigger --wait`: a job finishes only once the server holds
#    its whole log), and of the step's own run (timed inside the step); and the step's own run
#    against the same output through a pipe to `cat` (the peer: what a pipe costs the writer
#    whoever reads it),
#  - log throughput from agent to server (bytes / the job's run time),
#  - the server's peak RSS while the log is written and read (kiln logs, search),
#  - a search over the whole log, and the console's first paint of the tail (needs
#    ci/setup-console.sh; skipped without chromium).
# Uses target/release/kiln (cargo build --release -p kiln). Prints `uptime` first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KILN_BIN:-$PWD/target/release/kiln}
SIZES=${MB:-"200 1024"}
RUNS=${RUNS:-3}
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"' EXIT
uptime
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
export KILN_SERVER=$URL KILN_TOKEN=bench-admin
"$BIN" server --listen 127.0.0.1:$PORT --data "$T/data" --agent-token bench-agent --admin-token bench-admin --admin-password bench-pw-123 --allow-local-repos >"$T/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "$URL/login" >/dev/null && break; sleep 0.1; done
"$BIN" agent --server "$URL" --token bench-agent --name b1 --work-dir "$T/work" >"$T/agent.log" 2>&1 &
AGENT=$!
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
repo() { # name pipeline
  mkdir -p "$T/$1" && printf '%s' "$2" >"$T/$1/.kiln.yml"
  git -C "$T/$1" init -q -b main && git -C "$T/$1" add -A && git -C "$T/$1" -c user.email=b@b -c user.name=b commit -qm p
  "$BIN" project add "$1" --repo "$T/$1" --public >/dev/null
}
run() { # project → ms
  local s e; s=$(date +%s%N)
  "$BIN" trigger "$1" --wait >/dev/null 2>&1 || { echo "bench/logs.sh: a build of $1 did not pass; the server said:" >&2; tail -5 "$T/server.log" >&2; exit 1; }
  e=$(date +%s%N); echo $(( (e - s) / 1000000 ))
}
step_ms() { # project → the step's own time (ms) in its last build, as it printed it
  local b; b=$("$BIN" builds "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  "$BIN" logs "$b" --tail 5 | sed -n 's/^STEP-MS \([0-9]*\).*/\1/p' | tail -1
}
cpu_ms() { # pid → its own user+system CPU so far, in ms
  awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$1/stat"
}
pct() { python3 -c "print(f'{($1/$2-1)*100:+.1f} %')"; }
for MB in $SIZES; do
  gen="python3 -c 'import sys; w=sys.stdout.write; [w(\\\"L%08d \\\" % i + \\\"x\\\" * 90 + \\\"\\\\n\\\") for i in range($MB*10486)]; w(\\\"LAST-LINE-OF-THE-LOG\\\\n\\\")'"
  timed() { echo "s=\$(date +%s%N); $1; e=\$(date +%s%N); echo STEP-MS \$(( (e - s) / 1000000 ))"; }
  repo "big$MB" "jobs:
  big:
    steps:
      - \"$(timed "$gen")\""
  repo "null$MB" "jobs:
  big:
    steps:
      - \"$(timed "$gen >/dev/null")\""
  # The peer any reader of a step's output is measured against: the same output through a
  # pipe to `cat` (what the kernel alone costs a writer that does not write to /dev/null).
  repo "pipe$MB" "jobs:
  big:
    steps:
      - \"$(timed "$gen | cat >/dev/null")\""
  run "null$MB" >/dev/null
  : >"$T/rss"
  ( while kill -0 $SERVER 2>/dev/null; do ps -o rss= -p $SERVER >>"$T/rss"; sleep 0.2; done ) &
  SAMPLER=$!
  : >"$T/null.ms"; : >"$T/big.ms"; : >"$T/null.step"; : >"$T/pipe.step"; : >"$T/big.step"; : >"$T/mbps"; : >"$T/search.ms"; : >"$T/paint.ms"; : >"$T/server.cpu"; : >"$T/agent.cpu"
  for _ in $(seq "$RUNS"); do
    run "null$MB" >>"$T/null.ms"
    step_ms "null$MB" >>"$T/null.step"
    run "pipe$MB" >/dev/null
    step_ms "pipe$MB" >>"$T/pipe.step"
    c0s=$(cpu_ms $SERVER); c0a=$(cpu_ms $AGENT)
    run "big$MB" >>"$T/big.ms"
    echo $(( $(cpu_ms $SERVER) - c0s )) >>"$T/server.cpu"; echo $(( $(cpu_ms $AGENT) - c0a )) >>"$T/agent.cpu"
    step_ms "big$MB" >>"$T/big.step"
    b=$("$BIN" builds "big$MB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    "$BIN" show "$b" --json | python3 -c '
import json, sys, datetime
j = json.load(sys.stdin)["jobs"][0]; a = j["attempts"][-1]
t = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(round(a["log_len"] / 1e6 / max(0.001, t(a["finished_at"]) - t(a["started_at"])), 1))' >>"$T/mbps"
    job=$("$BIN" show "$b" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
    "$BIN" logs "$b" >/dev/null
    s=$(date +%s%N); curl -sf "$URL/api/v1/jobs/$job/log/search?q=L0000123" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )) >>"$T/search.ms"
    if [ -d tests/browser/node_modules/playwright-core ] && command -v chromium >/dev/null; then
      cat >tests/browser/.bench-paint.mjs <<'JS'
import { chromium } from 'playwright-core';
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const p = await b.newPage(); const t0 = Date.now();
await p.goto(process.argv[2]);
await p.getByText('LAST-LINE-OF-THE-LOG').first().waitFor({ timeout: 30000 });
console.log(Date.now() - t0); await b.close();
JS
      node tests/browser/.bench-paint.mjs "$URL/builds/$b" >>"$T/paint.ms" || true
      rm -f tests/browser/.bench-paint.mjs
    fi
  done
  kill $SAMPLER 2>/dev/null || true
  tn=$(median <"$T/null.ms"); tb=$(median <"$T/big.ms"); sn=$(median <"$T/null.step"); sb=$(median <"$T/big.step"); sp=$(median <"$T/pipe.step")
  echo "${MB} MB: job until its log is stored ${tb} ms vs ${tn} ms to /dev/null ($(pct "$tb" "$tn")), the step itself ${sb} ms vs ${sn} ms ($(pct "$sb" "$sn")) and vs ${sp} ms through a pipe to cat ($(pct "$sb" "$sp")), agent→server $(median <"$T/mbps") MB/s, CPU while it ran: server $(median <"$T/server.cpu") ms, agent $(median <"$T/agent.cpu") ms, server RSS peak $(( $(sort -n "$T/rss" | tail -1) / 1024 )) MB, search $(median <"$T/search.ms") ms, first paint of the tail $( [ -s "$T/paint.ms" ] && median <"$T/paint.ms" || echo n/a) ms (median of $RUNS)"
done
