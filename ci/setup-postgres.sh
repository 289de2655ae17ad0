#!/usr/bin/env bash
# A PostgreSQL server on 127.0.0.1:5432 for the store's PostgreSQL tests, with a
# role kiln/kiln that may create databases (each test makes its own). Idempotent.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null
pg_lsclusters -h | grep -q "^$ver main .* online" || pg_ctlcluster "$ver" main start
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
pg_isready -q -h 127.0.0.1 -p 5432 || { echo "postgresql did not start"; exit 1; }
su postgres -c "psql -q -c \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kiln') THEN CREATE ROLE kiln LOGIN CREATEDB PASSWORD 'kiln'; END IF; END\\\$\\\$;\""
# Each test makes a database of its own and drops it when it ends; a run that was killed, and the
# acceptance scripts, leave theirs: drop those of earlier runs here, or a developer's machine
# piles up hundreds (autovacuum visits every one). Only names the tests make
# (kiln_q_, kiln_qt_, kiln_test_ and a 32-digit uuid; the acceptance scripts' kacc_<time>_<pid>)
# are dropped. Do not run this while another test run is going on the same server.
for db in $(su postgres -c "psql -tAc \"SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = 'kiln' AND datname ~ '^(kiln_(q|qt|test)_[0-9a-f]{32}|kacc_[0-9]+_[0-9]+)$'\""); do
  su postgres -c "psql -q -c 'DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)'" >/dev/null 2>&1 || true
done
echo "postgres://kiln:kiln@127.0.0.1:5432/postgres"
