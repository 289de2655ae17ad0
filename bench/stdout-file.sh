#!/usr/bin/env bash
# Would a step's output be cheaper as a regular file the agent tails than as a pipe? (not a test)
# The same chatty generator as bench/logs.sh (MB megabytes, default 1000; RUNS runs, default 3),
# timed from its start until everything it printed has been read back:
#  - null:       its output to /dev/null;
#  - pipe+spool: what the agent does: the pipe read in 256 KiB pieces, each written to a spool
#                file on the work folder's disk (DIR, default a temp folder) and read back;
#  - file+tail:  the step writes a file on that disk, read back behind it (4 MiB reads, 5 ms
#                naps at its end) until the step has ended.
# Prints `uptime` first, then the median of each.
set -euo pipefail
MB=${MB:-1000}; RUNS=${RUNS:-3}
D=$(mktemp -d "${DIR:-/tmp}/stdout-file.XXXX"); trap 'rm -rf "$D"' EXIT
G="import sys; w=sys.stdout.write; [w('L%08d ' % i + 'x' * 90 + '\n') for i in range($MB*10486)]; w('LAST\n')"
cat >"$D/pipe_spool.py" <<'PY'
import os, sys
fd = sys.stdin.fileno(); out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); rd = os.open(sys.argv[1], os.O_RDONLY); pos = 0
while True:
    b = os.read(fd, 256 << 10)
    if not b: break
    os.write(out, b)
    while True:
        c = os.pread(rd, 4 << 20, pos)
        if not c: break
        pos += len(c)
PY
cat >"$D/file_tail.py" <<'PY'
import os, sys, time
rd = os.open(sys.argv[1], os.O_RDONLY); pos = 0
while True:
    c = os.pread(rd, 4 << 20, pos)
    if c: pos += len(c); continue
    if os.path.exists(sys.argv[1] + ".done"):
        if not os.pread(rd, 1, pos): break
        continue
    time.sleep(0.005)
PY
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
uptime
for _ in $(seq "$RUNS"); do
  s=$(date +%s%N); env -i python3 -c "$G" >/dev/null; ms "$s" >>"$D/null"
  s=$(date +%s%N); env -i python3 -c "$G" | python3 "$D/pipe_spool.py" "$D/spool"; ms "$s" >>"$D/pipe"; rm -f "$D/spool"
  : >"$D/out"; s=$(date +%s%N); python3 "$D/file_tail.py" "$D/out" & r=$!
  env -i python3 -c "$G" >>"$D/out"; touch "$D/out.done"; wait $r; ms "$s" >>"$D/file"; rm -f "$D/out" "$D/out.done"
done
n=$(median <"$D/null")
for k in pipe file; do v=$(median <"$D/$k"); echo "$k: $v ms vs $n ms to /dev/null ($(python3 -c "print(f'{($v/$n-1)*100:+.1f} %')"))"; done
