-- Agent identity: enrolment secrets an admin creates and revokes, limited to labels or projects;
-- each agent keeps the limits of the secret it enrolled with.
CREATE TABLE enrolments (
  id BIGSERIAL PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  labels TEXT NOT NULL DEFAULT '{}',
  projects TEXT NOT NULL DEFAULT '[]',
  uses_left BIGINT,
  used BIGINT NOT NULL DEFAULT 0,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
ALTER TABLE agents ADD COLUMN enrolment_id BIGINT;
ALTER TABLE agents ADD COLUMN label_limit TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN project_limit TEXT NOT NULL DEFAULT '[]';
