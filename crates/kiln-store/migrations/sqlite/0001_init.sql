-- kiln schema v1 (SQLite). Timestamps are epoch milliseconds; booleans 0/1; JSON as TEXT.
CREATE TABLE projects (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  repo TEXT NOT NULL,
  branch TEXT NOT NULL,
  pipeline TEXT NOT NULL,
  public INTEGER NOT NULL DEFAULT 0,
  settings TEXT NOT NULL DEFAULT '{}',
  created_at BIGINT NOT NULL
);
CREATE TABLE builds (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  project_id BIGINT NOT NULL REFERENCES projects(id),
  status TEXT NOT NULL,
  branch TEXT NOT NULL,
  commit_sha TEXT NOT NULL DEFAULT '',
  requested_commit TEXT,
  message TEXT,
  author TEXT,
  trigger_kind TEXT NOT NULL,
  triggered_by TEXT NOT NULL,
  upstream_build BIGINT,
  error TEXT,
  materialized INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  started_at BIGINT,
  finished_at BIGINT
);
CREATE INDEX builds_project ON builds(project_id, id);
CREATE INDEX builds_unmaterialized ON builds(materialized, id);
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  build_id BIGINT NOT NULL REFERENCES builds(id),
  job_key TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  ready INTEGER NOT NULL DEFAULT 0,
  spec TEXT NOT NULL,
  requires TEXT NOT NULL,
  needs TEXT NOT NULL,
  attempt BIGINT NOT NULL DEFAULT 0,
  max_attempts BIGINT NOT NULL,
  agent_id BIGINT,
  agent_name TEXT,
  lease_until BIGINT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  exit_code BIGINT,
  reason TEXT,
  created_at BIGINT NOT NULL,
  queued_at BIGINT,
  started_at BIGINT,
  finished_at BIGINT
);
CREATE INDEX jobs_build ON jobs(build_id);
CREATE INDEX jobs_queue ON jobs(status, ready, id);
CREATE INDEX jobs_lease ON jobs(status, lease_until);
CREATE TABLE attempts (
  job_id BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  agent_name TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT,
  log_len BIGINT NOT NULL DEFAULT 0,
  started_at BIGINT NOT NULL,
  finished_at BIGINT,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE log_chunks (
  job_id BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  pos BIGINT NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (job_id, attempt, pos)
);
CREATE TABLE agents (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  token_hash TEXT NOT NULL,
  labels TEXT NOT NULL,
  concurrency BIGINT NOT NULL,
  status TEXT NOT NULL DEFAULT '{}',
  heartbeat_secs BIGINT NOT NULL,
  draining INTEGER NOT NULL DEFAULT 0,
  last_seen BIGINT,
  created_at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  token_hash TEXT NOT NULL UNIQUE,
  user_name TEXT NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0,
  label TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE kv (
  k TEXT PRIMARY KEY,
  v TEXT NOT NULL
);
