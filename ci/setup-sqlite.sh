#!/usr/bin/env bash
# What crates/kiln/tests/agent_identity.rs needs to write a database the way an older kiln
# did (secrets in clear): the sqlite3 command-line shell. Idempotent, quiet.
set -euo pipefail
if ! command -v sqlite3 >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq sqlite3 >/dev/null
fi
