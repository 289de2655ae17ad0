#!/usr/bin/env bash
# Install what the console's browser tests need, when missing: Debian's chromium, and
# playwright-core from npm (tests/browser/package-lock.json). Idempotent, quiet, fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup-console: installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
fi
command -v node >/dev/null 2>&1 || { echo "setup-console: node is missing (the machine image ships Node.js and npm)"; exit 1; }
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "setup-console: npm ci (playwright-core)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
