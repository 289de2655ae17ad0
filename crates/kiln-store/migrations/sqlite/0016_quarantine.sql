-- kiln schema v16 (sqlite): quarantine of flaky tests.
-- Each test's recent runs per project (its final try in a build: clean, flaky or failed),
-- the evidence the rules judge; the builds already judged; the tests quarantined now; every
-- change (quarantined or released, auto or by whom) with the runs that caused it; and per
-- build and test group the tests quarantined when its list was uploaded. A quarantined test's
-- clean runs count from the builds after `after_build` (its last run when it was quarantined).
-- Builds finished before this migration are not judged: the evidence starts here.
CREATE TABLE test_runs (
  project_id BIGINT NOT NULL,
  test_key TEXT NOT NULL,
  build_id BIGINT NOT NULL,
  job_id BIGINT NOT NULL,
  outcome TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (project_id, test_key, build_id)
);
CREATE TABLE quarantine_builds (
  build_id BIGINT PRIMARY KEY
);
CREATE TABLE quarantine_changes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  project_id BIGINT NOT NULL,
  test_key TEXT NOT NULL,
  kind TEXT NOT NULL,
  cause TEXT NOT NULL,
  by_user TEXT,
  reason TEXT NOT NULL,
  builds TEXT NOT NULL,
  jobs TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX quarantine_changes_project ON quarantine_changes (project_id, id);
CREATE TABLE quarantined_tests (
  project_id BIGINT NOT NULL,
  test_key TEXT NOT NULL,
  change_id BIGINT NOT NULL,
  after_build BIGINT NOT NULL,
  PRIMARY KEY (project_id, test_key)
);
CREATE TABLE build_quarantine (
  build_id BIGINT NOT NULL,
  group_key TEXT NOT NULL,
  test_key TEXT NOT NULL,
  PRIMARY KEY (build_id, group_key, test_key)
);
INSERT INTO quarantine_builds (build_id) SELECT id FROM builds WHERE finished_at IS NOT NULL;
