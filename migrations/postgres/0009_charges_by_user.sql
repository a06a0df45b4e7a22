-- The per-minute cap on a person's generations counts their charges (the
-- append-only ledger), which deleting a task does not remove: counting
-- task rows let a generate-then-delete loop start generations without end.
CREATE INDEX credit_ledger_charges_by_user ON credit_ledger (user_id, kind, created_at);
