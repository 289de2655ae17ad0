#!/usr/bin/env bash
# What every test that runs a job needs: bubblewrap (`bwrap`), the sandbox agents and
# `kiln run` put each job in by default (crates/kiln-agent/src/sandbox.rs), and setpriv
# (util-linux), with which a root agent runs steps as another user. Idempotent and quiet.
set -euo pipefail
if ! command -v bwrap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq bubblewrap >/dev/null; }
  elif command -v dnf >/dev/null 2>&1; then
    sudo dnf install -y -q bubblewrap
  else
    echo "ci/setup-sandbox.sh: install bubblewrap (bwrap) with your package manager" >&2
    exit 1
  fi
fi
# It must work here, not only be installed (it needs user namespaces, or root).
bwrap --ro-bind / / --dev /dev --proc /proc --unshare-pid --unshare-net --die-with-parent -- true ||
  { echo "ci/setup-sandbox.sh: bwrap is installed but cannot make a sandbox here (user namespaces disabled?)" >&2; exit 1; }
