-- Sessions of signed-in people, kept by the app's own store
-- (src/server/sessions.rs) in its own migrations. They replace the table
-- tower-sessions-sqlx-store created at start-up; its sessions are dropped
-- (people sign in once more).
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    -- the session's data as a JSON object
    data       TEXT    NOT NULL,
    -- milliseconds since the Unix epoch
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

DROP TABLE IF EXISTS tower_sessions;
