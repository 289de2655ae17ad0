#!/usr/bin/env bash
# cargo-deny for ci/deny.sh (licenses, banned and duplicate crates, sources,
# advisories). Idempotent and fast when it is there; building it takes a few minutes once.
set -euo pipefail
if ! cargo deny --version >/dev/null 2>&1; then
  cargo install -q --locked cargo-deny
fi
