-- People buy credits (Stripe Checkout). A purchase is written `pending`
-- before Stripe is called and granted once, by compare-and-set, when the
-- payment is confirmed; refunds and disputes debit what it granted.
CREATE TABLE purchases (
    id              TEXT   PRIMARY KEY,
    user_id         TEXT   NOT NULL REFERENCES users (id),
    package         TEXT   NOT NULL,
    credits         BIGINT NOT NULL CHECK (credits > 0),
    -- the price, in the currency's minor unit (cents)
    amount          BIGINT NOT NULL CHECK (amount > 0),
    currency        TEXT   NOT NULL,
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'refunded')),
    checkout_id     TEXT   UNIQUE,
    payment_intent  TEXT   UNIQUE,
    -- refunded so far, minor units (Stripe's cumulative amount_refunded)
    amount_refunded BIGINT NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX purchases_by_user ON purchases (user_id, created_at DESC);
CREATE INDEX purchases_pending ON purchases (created_at) WHERE status = 'pending';

-- Money coming in and going back out is in the ledger too.
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('grant', 'charge', 'refund', 'purchase', 'payment_refund', 'dispute', 'dispute_won'));
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_check CHECK (
    (kind IN ('charge', 'payment_refund', 'dispute') AND amount < 0)
    OR (kind NOT IN ('charge', 'payment_refund', 'dispute') AND amount > 0));
ALTER TABLE credit_ledger ADD COLUMN purchase_id TEXT;

-- A refund or a dispute may take back credits already spent: what the
-- balance cannot cover becomes debt (a person's credits are balance − debt,
-- and one of the two is always 0). Anything added pays the debt first. A
-- charge never touches debt: it needs the balance (the CHECK), so a person
-- in debt cannot generate until they top up.
ALTER TABLE users ADD COLUMN debt BIGINT NOT NULL DEFAULT 0 CONSTRAINT debt_not_negative CHECK (debt >= 0);
CREATE OR REPLACE FUNCTION credit_ledger_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'charge' THEN
        UPDATE users SET balance = balance + NEW.amount WHERE id = NEW.user_id;
    ELSE
        UPDATE users SET balance = GREATEST(0, balance - debt + NEW.amount),
                         debt = GREATEST(0, debt - balance - NEW.amount)
        WHERE id = NEW.user_id;
    END IF;
    RETURN NEW;
END;
$$;
