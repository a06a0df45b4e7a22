//! Every write of `purchases`, and the ledger rows money makes. Each
//! change is a compare-and-set on the purchase, in one transaction with its
//! ledger row, and each ledger row has a key of its own, so no replay,
//! duplicate, parallel delivery or new event id for the same payment moves
//! credits twice:
//!
//! ```text
//!   buy: insert_pending ──▶ pending ──▶ set_checkout (the session's id)
//!                             │
//!            grant: paid ─────┼──────────────▶ paid ──▶ refunded (in full)
//!   (ledger `purchase:<id>`)  │                 │ payment refunds, disputes
//!                             ▼                 ▼ (ledger rows keyed by
//!   mark_failed: declined for good,          what Stripe counts)
//!   expired, unknown    ──▶ failed
//! ```

use sqlx::Row;

use crate::error::Result;
use crate::model::{Purchase, PurchaseStatus};
use crate::server::clock::rfc3339;
use crate::server::config::CreditPackage;
use crate::server::credits;
use crate::server::db::Db;
use crate::server::ids::UserId;

/// One row of `purchases`.
#[derive(Debug, Clone)]
pub struct PurchaseRow {
    pub id: String,
    pub user_id: UserId,
    pub credits: i64,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub checkout_id: Option<String>,
    pub payment_intent: Option<String>,
    pub amount_refunded: i64,
    pub created_at: i64,
}

impl PurchaseRow {
    fn read(r: &sqlx::any::AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            user_id: UserId::from_db(r.try_get("user_id")?),
            credits: r.try_get("credits")?,
            amount: r.try_get("amount")?,
            currency: r.try_get("currency")?,
            status: r.try_get("status")?,
            checkout_id: r.try_get("checkout_id")?,
            payment_intent: r.try_get("payment_intent")?,
            amount_refunded: r.try_get("amount_refunded")?,
            created_at: r.try_get("created_at")?,
        })
    }

    /// What its owner sees.
    pub fn view(&self) -> Purchase {
        Purchase {
            id: self.id.clone(),
            credits: self.credits,
            price: super::price(self.amount, &self.currency),
            status: match self.status.as_str() {
                "paid" => PurchaseStatus::Paid,
                "failed" => PurchaseStatus::Failed,
                "refunded" => PurchaseStatus::Refunded,
                _ => PurchaseStatus::Pending,
            },
            at: rfc3339(self.created_at),
        }
    }

    /// Credits worth `part` of the price (minor units), rounded down: a
    /// refund or a dispute of the whole price is all the credits.
    pub fn credits_for(&self, part: i64) -> i64 {
        if part >= self.amount {
            self.credits
        } else {
            (i128::from(self.credits) * i128::from(part.max(0)) / i128::from(self.amount)) as i64
        }
    }
}

const COLUMNS: &str = "id, user_id, credits, amount, currency, status, checkout_id, payment_intent, amount_refunded, \
                       created_at";

/// Records a purchase of `package`, `pending`, before Stripe is called.
pub async fn insert_pending(db: &Db, id: &str, user: &UserId, package: &CreditPackage, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO purchases (id, user_id, package, credits, amount, currency, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
    )
    .bind(id)
    .bind(user.as_str())
    .bind(&package.id)
    .bind(package.credits)
    .bind(package.amount)
    .bind(&package.currency)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// The purchase's Checkout Session, once Stripe made it.
pub async fn set_checkout(db: &Db, id: &str, checkout: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE purchases SET checkout_id = $1, updated_at = $2 WHERE id = $3 AND checkout_id IS NULL")
        .bind(checkout)
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn load(db: &Db, id: &str) -> Result<Option<PurchaseRow>> {
    let row =
        sqlx::query(&format!("SELECT {COLUMNS} FROM purchases WHERE id = $1")).bind(id).fetch_optional(db).await?;
    row.as_ref().map(PurchaseRow::read).transpose()
}

/// The purchase paid by `payment_intent`.
pub async fn by_payment(db: &Db, payment_intent: &str) -> Result<Option<PurchaseRow>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM purchases WHERE payment_intent = $1"))
        .bind(payment_intent)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(PurchaseRow::read).transpose()
}

/// Most purchases a person's list shows.
const LISTED: i64 = 50;

/// `user`'s latest purchases, newest first.
pub async fn of_user(db: &Db, user: &UserId) -> Result<Vec<PurchaseRow>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM purchases WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2"))
        .bind(user.as_str())
        .bind(LISTED)
        .fetch_all(db)
        .await?
        .iter()
        .map(PurchaseRow::read)
        .collect()
}

/// Pending purchases made between `since` and `until` that have a
/// session: (purchase, session), oldest first, at most `limit`.
pub async fn pending(db: &Db, since: i64, until: i64, limit: i64) -> Result<Vec<(String, String)>> {
    sqlx::query(
        "SELECT id, checkout_id FROM purchases WHERE status = 'pending' AND checkout_id IS NOT NULL \
         AND created_at >= $1 AND created_at <= $2 ORDER BY created_at LIMIT $3",
    )
    .bind(since)
    .bind(until)
    .bind(limit)
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("checkout_id")?)))
    .collect()
}

/// `pending` → `paid` with the credits granted, in one transaction; false
/// when it was granted already (the ledger's key also holds if a purchase
/// were ever marked paid another way).
pub async fn grant(db: &Db, purchase: &PurchaseRow, payment_intent: Option<&str>, now: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    let paid = sqlx::query(
        "UPDATE purchases SET status = 'paid', payment_intent = COALESCE(payment_intent, $1), updated_at = $2 \
         WHERE id = $3 AND status = 'pending'",
    )
    .bind(payment_intent)
    .bind(now)
    .bind(&purchase.id)
    .execute(&mut *tx)
    .await?;
    if paid.rows_affected() != 1 {
        return Ok(false);
    }
    let granted =
        ledger(&mut tx, purchase, "purchase", purchase.credits, &format!("purchase:{}", purchase.id), now).await?;
    tx.commit().await?;
    Ok(granted)
}

/// `pending` → `failed`: never paid (declined for good, expired, or the
/// checkout could not be made).
pub async fn mark_failed(db: &Db, id: &str, now: i64) -> Result<bool> {
    let done =
        sqlx::query("UPDATE purchases SET status = 'failed', updated_at = $1 WHERE id = $2 AND status = 'pending'")
            .bind(now)
            .bind(id)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Stripe refunded `amount_refunded` (cumulative, minor units) of the
/// purchase's payment: the credits it is worth are taken back, less what
/// earlier refunds took, in one transaction that holds the purchase's row
/// (refund events for one payment are applied one after the other). An
/// older or repeated event (its total not above what is recorded) changes
/// nothing. Returns the credits taken back.
pub async fn refund(db: &Db, purchase: &PurchaseRow, amount_refunded: i64, now: i64) -> Result<i64> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "UPDATE purchases SET updated_at = $1 WHERE id = $2 AND status IN ('paid', 'refunded') RETURNING amount_refunded",
    )
    .bind(now)
    .bind(&purchase.id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(0) };
    let recorded: i64 = row.try_get("amount_refunded")?;
    let total = amount_refunded.min(purchase.amount);
    if total <= recorded {
        return Ok(0);
    }
    let taken = purchase.credits_for(total) - purchase.credits_for(recorded);
    sqlx::query(
        "UPDATE purchases SET amount_refunded = $1, status = CASE WHEN $1 >= amount THEN 'refunded' ELSE status END \
         WHERE id = $2",
    )
    .bind(total)
    .bind(&purchase.id)
    .execute(&mut *tx)
    .await?;
    if taken > 0 {
        ledger(&mut tx, purchase, "payment_refund", -taken, &format!("payment_refund:{}:{total}", purchase.id), now)
            .await?;
    }
    tx.commit().await?;
    Ok(taken)
}

/// A dispute of `amount` (minor units) opened: the credits it is worth are
/// held back (once per dispute). Returns them, or 0 if done already.
pub async fn dispute_opened(db: &Db, purchase: &PurchaseRow, dispute: &str, amount: i64, now: i64) -> Result<i64> {
    let taken = purchase.credits_for(amount);
    if taken <= 0 {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    let done = ledger(&mut tx, purchase, "dispute", -taken, &format!("dispute:{dispute}"), now).await?;
    tx.commit().await?;
    Ok(if done { taken } else { 0 })
}

/// A dispute won: what it held back is given back (once, and only what a
/// `dispute` row of it took). Returns the credits, or 0.
pub async fn dispute_won(db: &Db, purchase: &PurchaseRow, dispute: &str, now: i64) -> Result<i64> {
    let mut tx = db.begin().await?;
    let held = sqlx::query("SELECT amount FROM credit_ledger WHERE entry_key = $1")
        .bind(format!("dispute:{dispute}"))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(held) = held else { return Ok(0) };
    let back = -held.try_get::<i64, _>("amount")?;
    let done = ledger(&mut tx, purchase, "dispute_won", back, &format!("dispute_won:{dispute}"), now).await?;
    tx.commit().await?;
    Ok(if done { back } else { 0 })
}

/// Inserts a ledger row of `purchase` (the trigger moves the balance and
/// the debt); false when its key exists already.
async fn ledger(
    conn: &mut sqlx::AnyConnection,
    purchase: &PurchaseRow,
    kind: &str,
    amount: i64,
    key: &str,
    now: i64,
) -> Result<bool> {
    credits::purchase_entry(conn, &purchase.user_id, &purchase.id, kind, amount, key, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(credits: i64, amount: i64) -> PurchaseRow {
        PurchaseRow {
            id: "p".into(),
            user_id: UserId::from_db("u".into()),
            credits,
            amount,
            currency: "usd".into(),
            status: "paid".into(),
            checkout_id: None,
            payment_intent: None,
            amount_refunded: 0,
            created_at: 0,
        }
    }

    #[test]
    fn refunds_and_disputes_are_worth_their_share_of_the_credits() {
        let p = row(100, 500);
        assert_eq!(p.credits_for(200), 40);
        assert_eq!(p.credits_for(500), 100);
        assert_eq!(p.credits_for(999), 100, "never more than the purchase granted");
        assert_eq!(p.credits_for(0), 0);
        // Cumulative refunds add up to the whole, whatever the steps.
        let odd = row(100, 300);
        let steps = [(0, 1), (1, 2), (2, 300)];
        let taken: i64 = steps.iter().map(|(a, b)| odd.credits_for(*b) - odd.credits_for(*a)).sum();
        assert_eq!(taken, 100);
    }
}
