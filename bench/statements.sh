#!/bin/bash
# Count the SQL statements a trivial job costs the server (issue 15, part 5).
#
# Runs a server (SQLite, KILN_LOG=sqlx::query=debug) and one agent from
# target/debug/kiln (or $KILN_BIN), submits N builds (default 20) of one
# one-step job in a burst, waits for them, and writes the statements logged
# after the burst started to /tmp/cnt/queries.log. Prints the total and the
# statements grouped by their summary, most frequent first.
#
#   bash bench/statements.sh 200
#
# Divide by N for statements per job. Counts, not timings: run it on a debug
# build. Uses port 18555.
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${KILN_BIN:-$ROOT/target/debug/kiln}; N=${1:-20}
T=$(mktemp -d); P=18555
mkdir -p /tmp/cnt
KILN_LOG=sqlx::query=debug,warn $BIN server --listen 127.0.0.1:$P --data $T/data --agent-token bench --admin-token adm --allow-local-repos > $T/server.out 2> $T/server.log &
S=$!
sleep 2
mkdir $T/repo; cd $T/repo; printf 'jobs:\n  t:\n    steps: ["true"]\n' > .kiln.yml; git init -q -b main; git add -A; git -c user.email=b@b -c user.name=b commit -qm x
curl -s -H 'Authorization: Bearer adm' -H 'Content-Type: application/json' -d "{\"name\":\"bench\",\"repo\":\"$T/repo\"}" http://127.0.0.1:$P/api/v1/projects >/dev/null
KILN_LOG=warn $BIN agent --server http://127.0.0.1:$P --token bench --name a0 --work-dir $T/w0 2>$T/agent.log &
A=$!
sleep 2
wc -l < $T/server.log > $T/before
seq $N | xargs -P8 -I@ curl -s -o /dev/null -H "Authorization: Bearer adm" -H "Content-Type: application/json" -d "{}" http://127.0.0.1:$P/api/v1/projects/bench/builds
# wait until every build has ended (or 120 s)
for _ in $(seq 120); do
  # read the database directly, so the wait adds no statement to the log
  left=$(sqlite3 "file:$T/data/kiln.db?mode=ro" "SELECT COUNT(*) FROM builds WHERE finished_at IS NULL" 2>/dev/null || echo 1)
  [ "$left" = 0 ] && break; sleep 1
done
sleep 3
tail -n +$(( $(cat $T/before) + 1 )) $T/server.log > /tmp/cnt/queries.log
kill $A $S; wait 2>/dev/null || true
sed 's/\x1b\[[0-9;]*m//g' /tmp/cnt/queries.log | grep -o 'summary="[^"]*"' > /tmp/cnt/summaries
echo "statements: $(wc -l < /tmp/cnt/summaries) for $N builds"
sort /tmp/cnt/summaries | uniq -c | sort -rn
rm -rf "$T"
