-- kiln schema v10: who may do what. A project's visibility (public | internal | private), its members
-- with their roles, disabled users, and whether a build was given the project's secrets.
ALTER TABLE projects ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private';
UPDATE projects SET visibility = 'public' WHERE public = 1;
CREATE TABLE project_members (
  project_id BIGINT NOT NULL,
  user_name TEXT NOT NULL,
  role TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (project_id, user_name)
);
CREATE INDEX project_members_user ON project_members(user_name);
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN with_secrets INTEGER NOT NULL DEFAULT 0;
UPDATE builds SET with_secrets = 1 WHERE trigger_kind <> 'upload';
