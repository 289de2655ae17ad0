-- kiln schema v3 (PostgreSQL): distributed test runs, test results and timing history.
-- One queue per build and sharded job (group_key = job key without " [i/n]").
CREATE TABLE test_groups (
  build_id BIGINT NOT NULL,
  group_key TEXT NOT NULL,
  state TEXT NOT NULL,
  lister_job BIGINT,
  lister_attempt BIGINT,
  error TEXT,
  shards BIGINT NOT NULL,
  retries BIGINT NOT NULL,
  static_split INTEGER NOT NULL DEFAULT 0,
  version BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (build_id, group_key)
);
CREATE TABLE test_items (
  id BIGSERIAL PRIMARY KEY,
  build_id BIGINT NOT NULL,
  group_key TEXT NOT NULL,
  test_key TEXT NOT NULL,
  seq BIGINT NOT NULL,
  estimate_ms BIGINT,
  try_number BIGINT NOT NULL DEFAULT 0,
  shard BIGINT,
  state TEXT NOT NULL,
  batch_id BIGINT,
  outcome TEXT,
  superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX test_items_queue ON test_items(build_id, group_key, state, seq);
CREATE INDEX test_items_batch ON test_items(batch_id);
CREATE TABLE test_batches (
  id BIGSERIAL PRIMARY KEY,
  build_id BIGINT NOT NULL,
  group_key TEXT NOT NULL,
  job_id BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  state TEXT NOT NULL,
  exit_code BIGINT,
  claimed_at BIGINT NOT NULL,
  finished_at BIGINT
);
CREATE INDEX test_batches_group ON test_batches(build_id, group_key, state);
CREATE INDEX test_batches_job ON test_batches(job_id, attempt);
CREATE TABLE test_results (
  id BIGSERIAL PRIMARY KEY,
  build_id BIGINT NOT NULL,
  job_id BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  batch_id BIGINT,
  item_id BIGINT,
  report TEXT NOT NULL,
  group_key TEXT NOT NULL,
  test_key TEXT NOT NULL,
  suite TEXT NOT NULL,
  classname TEXT NOT NULL,
  name TEXT NOT NULL,
  file TEXT,
  duration_ms BIGINT NOT NULL,
  outcome TEXT NOT NULL,
  message TEXT,
  try_number BIGINT NOT NULL DEFAULT 0,
  flaky INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL
);
CREATE INDEX test_results_build ON test_results(build_id, id);
CREATE INDEX test_results_item ON test_results(item_id);
CREATE INDEX test_results_report ON test_results(job_id, attempt, report);
CREATE TABLE test_history (
  project_id BIGINT NOT NULL,
  branch TEXT NOT NULL,
  test_key TEXT NOT NULL,
  runs BIGINT NOT NULL,
  failures BIGINT NOT NULL,
  flaky BIGINT NOT NULL,
  avg_ms BIGINT NOT NULL,
  last_ms BIGINT NOT NULL,
  last_outcome TEXT NOT NULL,
  recent TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (project_id, branch, test_key)
);
CREATE TABLE test_history_builds (
  build_id BIGINT PRIMARY KEY
);
