#!/usr/bin/env bash
# What the shards tests (crates/kiln/tests/shards.rs) need: python3 with pytest, and
# cargo-nextest. Idempotent, quiet, and fast when both are there.
set -euo pipefail
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check pytest >/dev/null 2>&1 ||
    python3 -m pip install -q --disable-pip-version-check --user pytest
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install -q --locked cargo-nextest
fi
