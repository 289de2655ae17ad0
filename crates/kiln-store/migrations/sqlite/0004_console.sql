-- kiln schema v4: the console — users, sessions, uploaded test runs, and indexes for the builds page.
CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL
);
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_name TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_name);
CREATE INDEX api_tokens_user ON api_tokens(user_name);
-- An uploaded test run: the package agents unpack instead of a checkout, and the pipeline it runs.
CREATE TABLE uploads (
  build_id BIGINT PRIMARY KEY,
  package TEXT NOT NULL,
  pipeline TEXT,
  files BIGINT NOT NULL,
  size BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
-- The builds page filters one project's builds by branch, status or trigger, newest first.
CREATE INDEX builds_project_branch ON builds(project_id, branch, id);
CREATE INDEX builds_project_status ON builds(project_id, status, id);
CREATE INDEX builds_project_trigger ON builds(project_id, trigger_kind, id);
CREATE INDEX builds_trigger ON builds(trigger_kind, id);
