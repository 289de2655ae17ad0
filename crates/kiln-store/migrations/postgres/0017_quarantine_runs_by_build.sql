-- kiln schema v17 (postgres): a build's quarantine runs are found by build, so deleting a build
-- (retention) deletes them without reading every run.
CREATE INDEX test_runs_build ON test_runs (build_id);
