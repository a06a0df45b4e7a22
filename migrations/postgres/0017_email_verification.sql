-- A verified email: the address took a link we sent. Accounts made before
-- verification existed count as verified.
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;
UPDATE users SET email_verified_at = created_at;

-- A verification link: kept as its token's SHA-256 digest, for the address
-- it was sent to; works once (used_at) and until expires_at.
CREATE TABLE email_verifications (
    token_hash TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    email      TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX email_verifications_by_user ON email_verifications (user_id);
