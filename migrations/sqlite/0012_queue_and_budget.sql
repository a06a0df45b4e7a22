-- A generation the provider's budget has no room for yet waits 'queued':
-- charged, not yet submitted. A dispatcher moves it to 'submitting' by
-- compare-and-set when the budget allows, in fair order across people.
-- SQLite cannot change a CHECK in place, so the table is rebuilt with the
-- new status (columns named, in the order they were added), then its
-- indexes; nothing references tasks.
CREATE TABLE tasks_new (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id),
    prompt        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    cost          INTEGER NOT NULL CHECK (cost > 0),
    status        TEXT    NOT NULL
        CHECK (status IN ('queued', 'submitting', 'processing', 'completed', 'failed', 'canceled')),
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
    cancel_requested_at INTEGER,
    leased_until  INTEGER,
    share_token   TEXT,
    image_width   INTEGER,
    image_height  INTEGER,
    aspect_ratio  TEXT,
    num_outputs   INTEGER NOT NULL DEFAULT 1 CHECK (num_outputs BETWEEN 1 AND 4),
    seed          INTEGER CHECK (seed BETWEEN 0 AND 4294967295),
    negative_prompt TEXT,
    output_types  TEXT,
    checked_at    BIGINT,
    -- When the task left the queue for the provider (its queue wait ends).
    submitted_at  INTEGER,
    CHECK (status <> 'completed' OR (object_key IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (status <> 'failed' OR (error IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (status <> 'canceled' OR finished_at IS NOT NULL)
);
INSERT INTO tasks_new (id, user_id, prompt, model, cost, status, prediction_id, progress, error, object_key,
    content_type, byte_size, created_at, updated_at, finished_at, deadline_at, next_check_at, last_polled_at,
    check_token, cancel_requested_at, leased_until, share_token, image_width, image_height, aspect_ratio,
    num_outputs, seed, negative_prompt, output_types, checked_at)
SELECT id, user_id, prompt, model, cost, status, prediction_id, progress, error, object_key,
    content_type, byte_size, created_at, updated_at, finished_at, deadline_at, next_check_at, last_polled_at,
    check_token, cancel_requested_at, leased_until, share_token, image_width, image_height, aspect_ratio,
    num_outputs, seed, negative_prompt, output_types, checked_at
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_by_user ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_unfinished ON tasks (status, next_check_at) WHERE status IN ('queued', 'submitting', 'processing');
CREATE INDEX tasks_active_by_user ON tasks (user_id) WHERE status IN ('queued', 'submitting', 'processing');
CREATE INDEX tasks_by_prediction ON tasks (prediction_id);
CREATE UNIQUE INDEX tasks_by_share_token ON tasks (share_token) WHERE share_token IS NOT NULL;
CREATE INDEX tasks_queued ON tasks (created_at, id) WHERE status = 'queued';

-- The provider budget lives in memory on SQLite (one process); the table
-- exists so the schema is the same on both databases.
CREATE TABLE provider_budget (
    token        TEXT    NOT NULL,
    call         TEXT    NOT NULL CHECK (call IN ('create', 'other')),
    tat_us       INTEGER NOT NULL,
    paused_until INTEGER NOT NULL,
    PRIMARY KEY (token, call)
);
