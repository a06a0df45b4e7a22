-- People buy credits (Stripe Checkout). A purchase is written `pending`
-- before Stripe is called and granted once, by compare-and-set, when the
-- payment is confirmed; refunds and disputes debit what it granted.
CREATE TABLE purchases (
    id              TEXT    PRIMARY KEY,
    user_id         TEXT    NOT NULL REFERENCES users (id),
    package         TEXT    NOT NULL,
    credits         INTEGER NOT NULL CHECK (credits > 0),
    -- the price, in the currency's minor unit (cents)
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'refunded')),
    checkout_id     TEXT    UNIQUE,
    payment_intent  TEXT    UNIQUE,
    -- refunded so far, minor units (Stripe's cumulative amount_refunded)
    amount_refunded INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX purchases_by_user ON purchases (user_id, created_at DESC);
CREATE INDEX purchases_pending ON purchases (created_at) WHERE status = 'pending';

-- Money coming in and going back out is in the ledger too. SQLite cannot
-- change a CHECK in place: the ledger is rebuilt (columns named, in the
-- order they were added), with its indexes and triggers.
CREATE TABLE credit_ledger_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL REFERENCES users (id),
    kind       TEXT    NOT NULL
        CHECK (kind IN ('grant', 'charge', 'refund', 'purchase', 'payment_refund', 'dispute', 'dispute_won')),
    -- signed: charges, payment refunds and disputes are negative
    amount     INTEGER NOT NULL CHECK (
        (kind IN ('charge', 'payment_refund', 'dispute') AND amount < 0)
        OR (kind NOT IN ('charge', 'payment_refund', 'dispute') AND amount > 0)),
    task_id    TEXT,
    entry_key  TEXT    NOT NULL CONSTRAINT ledger_entry_once UNIQUE,
    created_at INTEGER NOT NULL,
    reason     TEXT,
    note       TEXT,
    operator   TEXT,
    purchase_id TEXT
);
INSERT INTO credit_ledger_new (id, user_id, kind, amount, task_id, entry_key, created_at, reason, note, operator)
SELECT id, user_id, kind, amount, task_id, entry_key, created_at, reason, note, operator FROM credit_ledger;
DROP TABLE credit_ledger;
ALTER TABLE credit_ledger_new RENAME TO credit_ledger;
CREATE INDEX credit_ledger_user ON credit_ledger (user_id);
CREATE INDEX credit_ledger_by_user_newest ON credit_ledger (user_id, id DESC);
CREATE INDEX credit_ledger_charges_by_user ON credit_ledger (user_id, kind, created_at);

-- A refund or a dispute may take back credits already spent: what the
-- balance cannot cover becomes debt (a person's credits are balance − debt,
-- and one of the two is always 0). Anything added pays the debt first. A
-- charge never touches debt: it needs the balance (the CHECK), so a person
-- in debt cannot generate until they top up.
ALTER TABLE users ADD COLUMN debt INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0);
CREATE TRIGGER credit_ledger_applies AFTER INSERT ON credit_ledger WHEN NEW.kind = 'charge'
BEGIN
    UPDATE users SET balance = balance + NEW.amount WHERE id = NEW.user_id;
END;
CREATE TRIGGER credit_ledger_applies_net AFTER INSERT ON credit_ledger WHEN NEW.kind <> 'charge'
BEGIN
    UPDATE users SET balance = MAX(0, balance - debt + NEW.amount), debt = MAX(0, debt - balance - NEW.amount)
    WHERE id = NEW.user_id;
END;
CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
BEGIN
    SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;
CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
BEGIN
    SELECT RAISE(ABORT, 'credit_ledger is append-only');
END;
