-- A generation the provider's budget has no room for yet waits 'queued':
-- charged, not yet submitted. A dispatcher moves it to 'submitting' by
-- compare-and-set when the budget allows, in fair order across people.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('queued', 'submitting', 'processing', 'completed', 'failed', 'canceled'));
DROP INDEX tasks_active_by_user;
CREATE INDEX tasks_active_by_user ON tasks (user_id) WHERE status IN ('queued', 'submitting', 'processing');
DROP INDEX tasks_unfinished;
CREATE INDEX tasks_unfinished ON tasks (deadline_at) WHERE status IN ('queued', 'submitting', 'processing');
CREATE INDEX tasks_queued ON tasks (created_at, id) WHERE status = 'queued';
-- When the task left the queue for the provider (its queue wait ends).
ALTER TABLE tasks ADD COLUMN submitted_at BIGINT;

-- The provider budget of each API token (keyed by a hash of it), shared by
-- every instance: per kind of call ('create', 'other') a token bucket
-- (the theoretical arrival time of the next call, in microseconds) and a
-- pause a 429 asked for (milliseconds since the Unix epoch).
CREATE TABLE provider_budget (
    token        TEXT   NOT NULL,
    call         TEXT   NOT NULL CHECK (call IN ('create', 'other')),
    tat_us       BIGINT NOT NULL,
    paused_until BIGINT NOT NULL,
    PRIMARY KEY (token, call)
);
