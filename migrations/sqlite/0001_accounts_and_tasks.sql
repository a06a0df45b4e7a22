-- Darkroom schema for SQLite. Times are milliseconds since the Unix epoch.
-- The invariants live here, not only in code:
--   * a balance never goes negative (CHECK);
--   * every change of a balance is a ledger row, applied by a trigger, so
--     balance = grants - charges + refunds always;
--   * at most one charge and one refund per task (UNIQUE entry_key);
--   * the ledger is append-only.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    balance       INTEGER NOT NULL DEFAULT 0 CONSTRAINT balance_not_negative CHECK (balance >= 0),
    created_at    INTEGER NOT NULL
);

CREATE TABLE credit_ledger (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL CHECK (kind IN ('grant', 'charge', 'refund')),
    -- signed: charges are negative, grants and refunds positive
    amount     INTEGER NOT NULL CHECK ((kind = 'charge' AND amount < 0) OR (kind <> 'charge' AND amount > 0)),
    task_id    TEXT,
    -- 'signup:<user>', 'charge:<task>', 'refund:<task>': one of each, ever
    entry_key  TEXT    NOT NULL CONSTRAINT ledger_entry_once UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id);

CREATE TRIGGER credit_ledger_applies AFTER INSERT ON credit_ledger
BEGIN
    UPDATE users SET balance = balance + NEW.amount WHERE id = NEW.user_id;
END;

CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
BEGIN
    SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;

CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
BEGIN
    SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;

-- One generation. 'submitting' is internal (between charge and the
-- provider's answer); the reconciler fails and refunds any left behind.
CREATE TABLE tasks (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id),
    prompt        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    cost          INTEGER NOT NULL CHECK (cost > 0),
    status        TEXT    NOT NULL CHECK (status IN ('submitting', 'processing', 'completed', 'failed')),
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
    -- coalescing: a poll may ask the provider only once next_check_at has
    -- passed, and claims the check by moving it forward (compare-and-set)
    next_check_at INTEGER NOT NULL,
    last_polled_at INTEGER,
    check_token   TEXT,
    CHECK (status <> 'completed' OR (object_key IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (status <> 'failed' OR (error IS NOT NULL AND finished_at IS NOT NULL))
);
CREATE INDEX tasks_by_user ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_unfinished ON tasks (status, next_check_at) WHERE status IN ('submitting', 'processing');
