#!/usr/bin/env bash
# Each benchmark that gives an issue's figure, run once at a tiny size with the debug binary
# cargo test built: a bench that no longer runs (a new flag the server needs, a changed route)
# fails CI here instead of on the day someone measures. Figures printed here mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_BIN=$PWD/target/debug/kiln
[ -x "$KILN_BIN" ] && [ -x "${KILN_BIN%/*}/kiln-agent" ] || cargo build -q -p kiln -p kiln-agent  # bench/engine.py runs the lean agent
echo "== bench/engine.py (20 builds, twice)"
python3 bench/engine.py 20 --runs 2 --pause 0
echo "== bench/simagents.py (20 agents, 40 builds)"
python3 bench/simagents.py 20 40
echo "== bench/sources.py"
python3 bench/sources.py 2
echo "== bench/logs.sh (2 MB, one run)"
MB=2 RUNS=1 bench/logs.sh
echo "== cargo bench -p kiln-server --bench console (compiled only: it seeds 10,000 builds)"
cargo test -q -p kiln-server --bench console --no-run
echo "ci/bench-smoke.sh: every benchmark ran"
