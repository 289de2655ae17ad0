-- kiln schema v6 (PostgreSQL): what starting a test runner costs. Per build's test group: how long its
-- list step took and the fixed cost per batch its history predicted; per project, branch and
-- group: the fixed cost per batch (wall time less the tests' own times) and the list step's
-- time the last build measured, for the next build to plan with.
ALTER TABLE test_groups ADD COLUMN list_ms BIGINT;
ALTER TABLE test_groups ADD COLUMN history_fixed_ms BIGINT;
CREATE TABLE test_group_history (
  project_id BIGINT NOT NULL,
  branch TEXT NOT NULL,
  group_key TEXT NOT NULL,
  fixed_ms BIGINT,
  list_ms BIGINT,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (project_id, branch, group_key)
);
-- Rerun only what failed: a retry build, the build it reruns, and per test group the only
-- tests it runs (none listed: all of them).
CREATE TABLE build_retries (
  build_id BIGINT PRIMARY KEY,
  retry_of BIGINT NOT NULL
);
CREATE TABLE retry_tests (
  build_id BIGINT NOT NULL,
  group_key TEXT NOT NULL,
  test_key TEXT NOT NULL,
  PRIMARY KEY (build_id, group_key, test_key)
);
