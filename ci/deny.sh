#!/usr/bin/env bash
# Audit the dependencies with cargo-deny (deny.toml): licenses, banned and
# duplicate crates, and where crates come from, all offline. The advisory check
# runs when its database can be fetched; when it cannot, one line says so.
set -euo pipefail
cd "$(dirname "$0")/.."
# The checks read every package's manifest, those of other targets too: have them all locally.
cargo fetch --locked --quiet
cargo deny --offline --locked --log-level error check licenses bans sources
if out=$(cargo deny --locked --log-level error check advisories 2>&1); then
  echo "cargo deny: advisories ok"
elif grep -qiE 'fetch|network|resolve|connect|git|clone|index' <<<"$out" && ! grep -q 'error\[\(vulnerability\|unmaintained\|unsound\|yanked\)\]' <<<"$out"; then
  echo "cargo deny: advisories skipped: the advisory database could not be fetched ($(tail -1 <<<"$out" | cut -c1-160))"
else
  echo "$out"
  exit 1
fi
