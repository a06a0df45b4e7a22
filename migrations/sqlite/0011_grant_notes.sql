-- An operator's grant keeps its reason for the operators (the CLI shows
-- it) and who granted it (user@host), neither ever shown to the person;
-- the person sees the note written for them, if any. Grants made before
-- showed their reason to the person: it stays their note.
ALTER TABLE credit_ledger ADD COLUMN note TEXT;
ALTER TABLE credit_ledger ADD COLUMN operator TEXT;
UPDATE credit_ledger SET note = reason WHERE kind = 'grant' AND reason IS NOT NULL;
