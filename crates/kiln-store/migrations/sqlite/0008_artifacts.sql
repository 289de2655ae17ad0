-- Artifacts: files a job kept (the bytes are under FILES/artifacts/<job>/), one row per job and name.
CREATE TABLE artifacts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  build_id BIGINT NOT NULL,
  job_id BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  name TEXT NOT NULL,
  size BIGINT NOT NULL,
  sha256 TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  UNIQUE (job_id, name)
);
CREATE INDEX artifacts_build ON artifacts(build_id);
