-- Mail goes out from this table, not from the request that asks for it: a
-- slow or absent mail server never holds a request, and a restart loses
-- nothing. A message is claimed by moving next_attempt_at on (compare-and-
-- set, so one instance sends it), deleted once the server took it, and
-- tried again later (with backoff) when it did not.
CREATE TABLE mail_outbox (
    id              TEXT    PRIMARY KEY,
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at);

-- A password reset link: its token is kept only as a SHA-256 digest, works
-- once (used_at) and until expires_at.
CREATE TABLE password_resets (
    token_hash TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_resets_by_user ON password_resets (user_id);
