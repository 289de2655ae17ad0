-- Notifications (issue 7): an outbox of deliveries, and on each build the last status notified.
-- Builds that already exist count as notified: turning notifications on never mails old builds.
ALTER TABLE builds ADD COLUMN notified_status TEXT;
UPDATE builds SET notified_status = status;
CREATE INDEX builds_unnotified ON builds(id) WHERE notified_status IS NULL OR notified_status <> status;
CREATE TABLE notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  project_id BIGINT NOT NULL,
  build_id BIGINT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT NOT NULL,
  event TEXT NOT NULL,
  build_status TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  last_error TEXT,
  next_at BIGINT NOT NULL,
  locked_until BIGINT,
  created_at BIGINT NOT NULL,
  sent_at BIGINT
);
CREATE INDEX notifications_due ON notifications(status, next_at);
CREATE INDEX notifications_project ON notifications(project_id, id);
CREATE INDEX notifications_build ON notifications(build_id, target);
