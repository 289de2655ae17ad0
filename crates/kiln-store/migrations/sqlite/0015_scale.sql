-- A lease on expanding a build: the server reading its pipeline holds it; when it runs out
-- (the server died) another server takes the build over.
ALTER TABLE builds ADD COLUMN expand_until BIGINT;
-- Background duties (poller, cron, reaper, notifier) held by one server at a time.
CREATE TABLE duties (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until BIGINT NOT NULL
);
