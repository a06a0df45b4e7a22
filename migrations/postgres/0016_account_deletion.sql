-- An account its owner deleted: the row stays for the books (the ledger
-- and purchases name its id), with its email replaced by 'deleted:<id>'
-- and no password.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;
