-- Change sources: what a push said (for path filters).
ALTER TABLE builds ADD COLUMN before_commit TEXT;
ALTER TABLE builds ADD COLUMN changed_paths TEXT;
CREATE INDEX builds_status ON builds(status);
