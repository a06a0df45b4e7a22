-- Images in: a person's upload to start from (checked, re-encoded without
-- its metadata, stored under its owner), and what a task started from.
CREATE TABLE uploads (
    id         TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    object_key TEXT    NOT NULL,
    width      BIGINT NOT NULL,
    height     BIGINT NOT NULL,
    byte_size  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_age ON uploads (created_at);
-- The task's own copy of its input image (`inputs/<task>`), removed with
-- the task; and the task whose image an upscale starts from.
ALTER TABLE tasks ADD COLUMN input_key TEXT;
ALTER TABLE tasks ADD COLUMN source_task_id TEXT;
-- The scale an upscale asked for.
ALTER TABLE tasks ADD COLUMN scale BIGINT;
