#!/usr/bin/env bash
# Long fuzzing runs of every parser of outside bytes (pipeline YAML, JUnit XML,
# forge webhook payloads, archive extraction, the agent protocol's JSON).
# CI runs the same tests with 2,000 cases each (crates/kiln-server/tests/fuzz.rs);
# this runs KILN_FUZZ_CASES of them (default 1,000,000), optimised.
#   fuzz/run.sh                 # every parser
#   fuzz/run.sh junit_xml       # one (pipeline_yaml, junit_xml, forge_payloads, archive_extraction, agent_protocol_json)
# A failure prints the smallest input found: add it to the parser's unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export KILN_FUZZ_CASES="${KILN_FUZZ_CASES:-1000000}"
exec cargo test --locked --release -p kiln-server --test fuzz -- --nocapture --test-threads 1 "$@"
