-- Darkroom schema for PostgreSQL; the same tables and invariants as the
-- SQLite migration of the same number. Times are milliseconds since the
-- Unix epoch.

CREATE TABLE users (
    id            TEXT   PRIMARY KEY,
    email         TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    balance       BIGINT NOT NULL DEFAULT 0 CONSTRAINT balance_not_negative CHECK (balance >= 0),
    created_at    BIGINT NOT NULL
);

CREATE TABLE credit_ledger (
    id         BIGSERIAL PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id),
    kind       TEXT   NOT NULL CHECK (kind IN ('grant', 'charge', 'refund')),
    amount     BIGINT NOT NULL CHECK ((kind = 'charge' AND amount < 0) OR (kind <> 'charge' AND amount > 0)),
    task_id    TEXT,
    entry_key  TEXT   NOT NULL CONSTRAINT ledger_entry_once UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id);

CREATE FUNCTION credit_ledger_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET balance = balance + NEW.amount WHERE id = NEW.user_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER credit_ledger_applies AFTER INSERT ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION credit_ledger_apply();

CREATE FUNCTION credit_ledger_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger is append-only';
END;
$$;
CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE OR DELETE ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION credit_ledger_reject();

CREATE TABLE tasks (
    id             TEXT   PRIMARY KEY,
    user_id        TEXT   NOT NULL REFERENCES users (id),
    prompt         TEXT   NOT NULL,
    model          TEXT   NOT NULL,
    cost           BIGINT NOT NULL CHECK (cost > 0),
    status         TEXT   NOT NULL CHECK (status IN ('submitting', 'processing', 'completed', 'failed')),
    prediction_id  TEXT,
    progress       BIGINT CHECK (progress BETWEEN 0 AND 100),
    error          TEXT,
    object_key     TEXT,
    content_type   TEXT,
    byte_size      BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    deadline_at    BIGINT NOT NULL,
    next_check_at  BIGINT NOT NULL,
    last_polled_at BIGINT,
    check_token    TEXT,
    CHECK (status <> 'completed' OR (object_key IS NOT NULL AND finished_at IS NOT NULL)),
    CHECK (status <> 'failed' OR (error IS NOT NULL AND finished_at IS NOT NULL))
);
CREATE INDEX tasks_by_user ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_unfinished ON tasks (status, next_check_at) WHERE status IN ('submitting', 'processing');
