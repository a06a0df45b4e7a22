-- A person may cancel a generation: the task ends 'canceled' (refunded).
-- SQLite cannot change a CHECK in place, so the table is rebuilt with the
-- new status, then its indexes; nothing references tasks.
CREATE TABLE tasks_new (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id),
    prompt        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    cost          INTEGER NOT NULL CHECK (cost > 0),
    status        TEXT    NOT NULL CHECK (status IN ('submitting', 'processing', 'completed', 'failed', 'canceled')),
    prediction_id TEXT,
    progress      INTEGER CHECK (progress BETWEEN 0 AND 100),
    error         TEXT,
    object_key    TEXT,
    content_type  TEXT,
    byte_size     INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    deadline_at   INTEGER NOT NULL,
    next_check_at INTEGER NOT NULL,
    last_polled_at INTEGER,
    check_token   TEXT,
    CHECK (status <> 'completed' OR (object_key IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (status <> 'failed' OR (error IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (status <> 'canceled' OR finished_at IS NOT NULL)
);
INSERT INTO tasks_new SELECT * FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_by_user ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_unfinished ON tasks (status, next_check_at) WHERE status IN ('submitting', 'processing');
CREATE INDEX tasks_active_by_user ON tasks (user_id) WHERE status IN ('submitting', 'processing');
-- Provider webhooks name the prediction.
CREATE INDEX tasks_by_prediction ON tasks (prediction_id);
-- The owner asked to cancel (written before the provider is asked, so a
-- poll that then sees the prediction canceled knows it was the owner).
ALTER TABLE tasks ADD COLUMN cancel_requested_at INTEGER;
-- Until when a poller holds the download lease (a provider event must not
-- take a task over while its output is being stored).
ALTER TABLE tasks ADD COLUMN leased_until INTEGER;
