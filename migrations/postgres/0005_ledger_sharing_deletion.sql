-- The account page, share links, deletion and password change.

-- An operator's grant (the admin CLI) says why.
ALTER TABLE credit_ledger ADD COLUMN reason TEXT;
-- The account page reads a person's ledger newest first, a page at a time.
CREATE INDEX credit_ledger_by_user_newest ON credit_ledger (user_id, id DESC);

-- A completed task shared by its owner: anyone with /s/<share_token> sees
-- it. The image's size is read once, when it is first shared (the card of
-- the public page names it).
ALTER TABLE tasks ADD COLUMN share_token TEXT;
ALTER TABLE tasks ADD COLUMN image_width BIGINT;
ALTER TABLE tasks ADD COLUMN image_height BIGINT;
CREATE UNIQUE INDEX tasks_by_share_token ON tasks (share_token) WHERE share_token IS NOT NULL;

-- A deleted task leaves `tasks` in the transaction that records it here;
-- its stored objects are removed next, then this row. A row left behind (a
-- crash in between) is finished by the reconciler.
CREATE TABLE purges (
    task_id    TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

-- Sessions name their account, so a password change can end the others,
-- and the account's session epoch as of the password check that signed
-- them in: a password change moves the account's epoch on, so a sign-in
-- with the old password that was still being checked meanwhile yields a
-- session that never loads. (Sessions signed in before this migration end
-- at their next request.)
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN user_id TEXT;
ALTER TABLE sessions ADD COLUMN epoch BIGINT;
CREATE INDEX sessions_by_user ON sessions (user_id);
