#!/usr/bin/env bash
# Buildbot's Django sample in kiln: a server, three labelled agents, the app
# (a matrix) and the project built after it. Stops everything on Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=${KILN_BIN:-$here/../../target/release/kiln}
work=$(mktemp -d /tmp/kiln-django.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
for p in app project; do
  cp -r "$here/$p" "$work/$p"
  git -C "$work/$p" init -q -b main && git -C "$work/$p" add -A &&
    git -C "$work/$p" -c user.email=demo@kiln -c user.name=demo commit -qm "django sample: $p"
done
export KILN_SERVER=http://127.0.0.1:8099 KILN_TOKEN=demo-admin
"$kiln" server --listen 127.0.0.1:8099 --data "$work/data" --agent-token demo --admin-token demo-admin >"$work/server.log" 2>&1 &
sleep 1
"$kiln" agent --server $KILN_SERVER --token demo --name py311-dj42 --label python=3.11 --label django=4.2 --work-dir "$work/a1" 2>"$work/a1.log" &
"$kiln" agent --server $KILN_SERVER --token demo --name py311-dj51 --label python=3.11 --label django=5.1 --work-dir "$work/a2" 2>"$work/a2.log" &
"$kiln" agent --server $KILN_SERVER --token demo --name py312-dj51 --label python=3.12 --label django=5.1 --work-dir "$work/a3" 2>"$work/a3.log" &
"$kiln" project add django-app --repo "$work/app" --public
"$kiln" project add django-project --repo "$work/project" --public
sleep 1
"$kiln" trigger django-app --wait
sleep 2
"$kiln" builds django-project
echo "console: $KILN_SERVER  (Ctrl-C to stop)"
wait
