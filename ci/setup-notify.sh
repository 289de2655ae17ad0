#!/usr/bin/env bash
# Test tools for crates/kiln/tests/notify.rs: a Python venv with aiosmtpd (a real SMTP server).
# Idempotent and quiet; fast when already installed. The venv's path is printed on the last line.
# Where: $KILN_CI_VENV, else ${XDG_CACHE_HOME:-$HOME/.cache}/kiln-ci/notify-venv (the tests look there too).
set -euo pipefail
V=${KILN_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln-ci/notify-venv}
if [ -x "$V/bin/python" ] && "$V/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  echo "$V"; exit 0
fi
PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "setup-notify: python3 is missing (apt-get install -y python3 python3-venv)" >&2; exit 1; }
mkdir -p "$(dirname "$V")"
"$PY" -m venv "$V" >/dev/null 2>&1 || {
  # Debian's python3 needs python3-venv for `-m venv`.
  apt-get install -y -q python3-venv >/dev/null 2>&1 && "$PY" -m venv "$V" >/dev/null
}
"$V/bin/pip" install -q --disable-pip-version-check aiosmtpd >/dev/null
"$V/bin/python" -c 'import aiosmtpd' || { echo "setup-notify: aiosmtpd did not install into $V" >&2; exit 1; }
echo "$V"
