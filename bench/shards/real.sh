#!/usr/bin/env bash
# Benchmark (not a test): real suites no one here wrote, fetched from the registries, run
# on kiln with N agents and, in the same run, by the best single-machine tool with N workers:
#   - Python: more-itertools' sdist (its tests/, run by pytest)   vs  pytest-xdist -n N
#   - Rust:   published crates run by cargo-nextest                vs  cargo nextest run -j N:
#             regex-syntax (a short suite: about 0.9 s under nextest here, where kiln's
#             per-build cost weighs most) and petgraph (281 tests, about 10 s of test time)
# Prints wall times and the ratios kiln ÷ tool for a first build (no history) and a second one
# (with history). Targets on this machine: first <= 1.3, with history <= 1.0.
# The Rust suite's test binaries are built once beforehand into a nextest archive that both
# sides run from (`--archive-file`: no cargo, no build lock), so both time running the tests,
# not compiling them.
# The archive's test binaries carry no debug info (CARGO_PROFILE_DEV_DEBUG=0, as CI builds often
# do): each kiln shard unpacks the archive, where nextest unpacks it once, and petgraph's debug
# info is 165 of its 202 MB. DEBUGINFO=1 builds them with it (cargo's default), to compare.
# Usage: bench/shards/real.sh [N]   (from the repository root; builds target/release/kiln;
# KEEP=1 keeps its folder, with the server's data, for reading the builds' logs afterwards)
set -euo pipefail
N=${1:-4}
ROOT=$(pwd)
BIN=${KILN_BIN:-$ROOT/target/release/kiln}
[ -n "${KILN_BIN:-}" ] || cargo build --release -q
T=$(mktemp -d /tmp/kiln-real.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"; }
trap cleanup EXIT
python3 -c 'import xdist' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check pytest-xdist
cargo nextest --version >/dev/null 2>&1 || cargo install -q --locked cargo-nextest

# The suites, as the registries ship them.
PY_PKG=more-itertools==10.8.0
RS_CRATES="regex-syntax=0.8.5 petgraph=0.8.1"
python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$T/dl" "$PY_PKG"
mkdir -p "$T/py" && tar -xzf "$T"/dl/more_itertools-*.tar.gz -C "$T/py" --strip-components 1
# The crates' published source, through cargo itself: a throwaway crate that depends on them, vendored.
mkdir -p "$T/dl/fetch/src" && : >"$T/dl/fetch/src/lib.rs"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n' >"$T/dl/fetch/Cargo.toml"
for c in $RS_CRATES; do printf '%s = "=%s"\n' "${c%=*}" "${c#*=}" >>"$T/dl/fetch/Cargo.toml"; done
(cd "$T/dl/fetch" && cargo vendor -q "$T/dl/vendor" >/dev/null)

# Rust: a nextest profile that writes JUnit, a shared target folder built once, and a runner
# that turns kiln's "binary test" ids into a nextest filter. Each shard unpacks the archive
# once (the job's set-up step, with tar into its own folder `nx`: only unpacking, where
# `cargo nextest list --archive-file --extract-to` would also list every test, which `list`
# does again); the list step and every batch then run the unpacked binaries, as
# `cargo nextest run --archive-file` extracts once for all its tests. (Run from the archive,
# every batch would extract it again: 0.2–0.3 s each here.)
export CARGO_TARGET_DIR=$T/rs-target
DEBUG=$([ -n "${DEBUGINFO:-}" ] && echo true || echo 0)
echo "rust test binaries: debug info ${DEBUG/0/none} (CARGO_PROFILE_DEV_DEBUG=$DEBUG)"
cat >"$T/dl/kiln-nextest.sh" <<'SH'
#!/bin/sh
# kiln-nextest.sh 'binary test'...: run exactly these tests, one at a time (each agent is one of
# the N workers, as nextest -j N has N), JUnit into $KILN_JUNIT_DIR.
expr=""
for id in "$@"; do
  b=${id%% *}; t=${id#* }
  expr="${expr:+$expr | }(binary_id(=$b) & test(=$t))"
done
cargo nextest run $NX --profile ci --no-tests=pass -j 1 -E "$expr"; code=$?
cp target/nextest/ci/junit.xml "$KILN_JUNIT_DIR/junit-$$.xml" 2>/dev/null
exit $code
SH
for c in $RS_CRATES; do # project rs-NAME in $T/rs-NAME, its tests archived in $T/rs-NAME.tar.zst
  d=$T/rs-${c%=*}
  cp -r "$T/dl/vendor/${c%=*}" "$d" && rm -f "$d/.cargo-checksum.json"
  cp "$T/dl/kiln-nextest.sh" "$d/"
  mkdir -p "$d/.config"
  printf '[profile.ci]\nfail-fast = false\n[profile.ci.junit]\npath = "junit.xml"\n' >"$d/.config/nextest.toml"
  (cd "$d" && CARGO_PROFILE_DEV_DEBUG=$DEBUG cargo nextest archive --cargo-quiet --archive-file "$d.tar.zst") >/dev/null 2>&1
  cat >"$d/.kiln.yml" <<YML
jobs:
  suite:
    env:
      ARCHIVE: $d.tar.zst
      NX: --binaries-metadata nx/target/nextest/binaries-metadata.json --cargo-metadata nx/target/nextest/cargo-metadata.json --target-dir-remap nx/target --workspace-remap .
    steps:
      - mkdir -p nx && tar --zstd -xf \$ARCHIVE -C nx
    tests:
      shards: $N
      list: cargo nextest list \$NX --message-format oneline
      run: sh kiln-nextest.sh {tests}
YML
done
cat >"$T/py/.kiln.yml" <<YML
jobs:
  suite:
    tests:
      shards: $N
      list: "python3 -m pytest -q --collect-only -p no:cacheprovider tests | grep ::"
      run: python3 -m pytest -q -p no:cacheprovider --junitxml=\$KILN_JUNIT_DIR/part.xml {tests}
YML
RS_PROJECTS=$(for c in $RS_CRATES; do printf 'rs-%s ' "${c%=*}"; done)
for d in py $RS_PROJECTS; do
  git -C "$T/$d" init -q -b main && git -C "$T/$d" add -A && git -C "$T/$d" -c user.email=b@kiln -c user.name=bench commit -qm suite
done

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
export KILN_SERVER=http://127.0.0.1:$PORT KILN_TOKEN=bench-admin
EXTRA=()
"$BIN" server --help 2>/dev/null | grep -q -- --allow-local-repos && EXTRA=(--allow-local-repos)
"$BIN" server --listen 127.0.0.1:$PORT --data "$T/data" --agent-token bench-agent --admin-token bench-admin "${EXTRA[@]}" >"$T/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fs "$KILN_SERVER/api/v1/agents" -H "authorization: Bearer bench-admin" >/dev/null 2>&1 && break; sleep 0.1; done
# The agents run unsandboxed: on a machine where python (pyenv) and cargo live under /root, a
# sandboxed step runs as `nobody` and cannot reach them. pytest-xdist and nextest run unconfined too.
for i in $(seq "$N"); do
  "$BIN" agent --server "$KILN_SERVER" --token bench-agent --name r$i --work-dir "$T/work$i" --isolation none >"$T/agent$i.log" 2>&1 &
  PIDS+=($!)
done
for p in py $RS_PROJECTS; do "$BIN" project add "$p" --repo "$T/$p" >/dev/null; done

secs() { python3 -c "print(round($2 - $1, 2))"; }
timed_kiln() { # project -> wall seconds (the build may fail: a suite can have failing tests here)
  local s e
  s=$(date +%s.%N)
  "$BIN" trigger "$1" --wait >"$T/last.out" 2>&1 || true
  e=$(date +%s.%N)
  grep -q "tests:" "$T/last.out" || { echo "build of $1 reported no tests:" >&2; tail -5 "$T/last.out" >&2; exit 1; }
  secs "$s" "$e"
}
timed_tool() { # dir command... -> wall seconds
  local d=$1 s e; shift
  s=$(date +%s.%N)
  (cd "$d" && "$@") >"$T/tool.out" 2>&1 || true
  e=$(date +%s.%N)
  secs "$s" "$e"
}
ratio() { python3 -c "print(round($1 / $2, 2))"; }

TOOL_PY=$(timed_tool "$T/py" python3 -m pytest -q -p no:cacheprovider -n "$N" tests)
PY_COUNT=$(grep -Eo '[0-9]+ passed' "$T/tool.out" | head -1)
K1=$(timed_kiln py); K2=$(timed_kiln py)
echo "python: more-itertools ($PY_COUNT): pytest-xdist -n $N ${TOOL_PY}s; kiln first ${K1}s ($(ratio "$K1" "$TOOL_PY")x), with history ${K2}s ($(ratio "$K2" "$TOOL_PY")x)  (targets 1.3x, 1.0x)"

for p in $RS_PROJECTS; do
  TOOL_RS=$(timed_tool "$T/$p" cargo nextest run --archive-file "$T/$p.tar.zst" --workspace-remap . -j "$N" --no-fail-fast)
  RS_COUNT=$(grep -Eo '[0-9]+ tests? run' "$T/tool.out" | head -1 || true)
  K1=$(timed_kiln "$p"); K2=$(timed_kiln "$p")
  echo "rust: ${p#rs-} ($RS_COUNT): cargo nextest run -j $N ${TOOL_RS}s; kiln first ${K1}s ($(ratio "$K1" "$TOOL_RS")x), with history ${K2}s ($(ratio "$K2" "$TOOL_RS")x)  (targets 1.3x, 1.0x)"
done
for p in py $RS_PROJECTS; do
  b=$("$BIN" builds "$p" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  "$BIN" logs "$b" | grep -m 3 ": plan: " | sed "s/^/  $p: /" || true
done
