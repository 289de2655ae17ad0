#!/usr/bin/env bash
# The console's browser tests: a real kiln server and agents, Debian's chromium driven by
# playwright-core. Installs what is missing (ci/setup-console.sh), builds the debug binary
# unless KILN_BIN names one, and saves screenshots to docs/screenshots/ (SCREENSHOTS=DIR
# to put them elsewhere). Exit code: node's test runner's.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-console.sh
if [ -z "${KILN_BIN:-}" ]; then
  cargo build -q -p kiln
  export KILN_BIN="$PWD/target/debug/kiln"
fi
cd tests/browser
exec node --test --test-concurrency=1 --test-reporter=spec console.test.mjs biglog.test.mjs
