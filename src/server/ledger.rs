//! A person's ledger as the account page shows it: every grant, charge,
//! refund, purchase, payment refund and dispute, newest first, in words. The rows are the credit ledger itself
//! (append-only, the source of every balance), so the amounts of all pages
//! add up to the balance.

use sqlx::Row;

use super::clock::rfc3339;
use super::ids::UserId;
use super::state::AppState;
use crate::error::{AppError, Result};
use crate::model::{LedgerEntry, LedgerKind, LedgerPage};
use crate::text::clip;

/// Ledger rows per page.
pub const PAGE_SIZE: usize = 50;
/// Most characters of a prompt a ledger line repeats.
const PROMPT_CHARS: usize = 80;

/// A page of `user`'s ledger, newest first; `cursor` is the previous
/// page's `next_cursor` (opaque to clients).
pub async fn page(state: &AppState, user: &UserId, cursor: Option<&str>) -> Result<LedgerPage> {
    let before = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
        None => i64::MAX,
        Some(c) => c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| AppError::invalid("not a valid cursor"))?,
    };
    let rows = sqlx::query(
        "SELECT l.id, l.kind, l.amount, l.task_id, l.note, l.entry_key, l.created_at, t.prompt, t.status, \
         p.amount AS price, p.currency \
         FROM credit_ledger l LEFT JOIN tasks t ON t.id = l.task_id LEFT JOIN purchases p ON p.id = l.purchase_id \
         WHERE l.user_id = $1 AND l.id < $2 ORDER BY l.id DESC LIMIT $3",
    )
    .bind(user.as_str())
    .bind(before)
    .bind((PAGE_SIZE + 1) as i64)
    .fetch_all(&state.db)
    .await?;
    let mut items = Vec::with_capacity(rows.len().min(PAGE_SIZE));
    let mut last_id = None;
    for row in rows.iter().take(PAGE_SIZE) {
        let kind: String = row.try_get("kind")?;
        let kind = match kind.as_str() {
            "grant" => LedgerKind::Grant,
            "charge" => LedgerKind::Charge,
            "refund" => LedgerKind::Refund,
            "purchase" => LedgerKind::Purchase,
            "payment_refund" => LedgerKind::PaymentRefund,
            "dispute" => LedgerKind::Dispute,
            "dispute_won" => LedgerKind::DisputeWon,
            other => return Err(AppError::internal(format!("unknown ledger kind {other}"))),
        };
        let price: Option<i64> = row.try_get("price")?;
        let currency: Option<String> = row.try_get("currency")?;
        let paid = price.zip(currency).map(|(a, c)| crate::server::config::price_text(a, &c));
        let entry_key: String = row.try_get("entry_key")?;
        // The note written for the person; an operator's reason stays with
        // the operators.
        let reason: Option<String> = row.try_get("note")?;
        let prompt: Option<String> = row.try_get("prompt")?;
        let status: Option<String> = row.try_get("status")?;
        let task_id: Option<String> = row.try_get("task_id")?;
        let at_ms: i64 = row.try_get("created_at")?;
        let id: i64 = row.try_get("id")?;
        last_id = Some(id);
        items.push(LedgerEntry {
            id,
            at: rfc3339(at_ms),
            at_ms,
            kind,
            amount: row.try_get("amount")?,
            image_url: match (&task_id, status.as_deref()) {
                (Some(id), Some("completed")) => Some(format!("/images/{id}")),
                _ => None,
            },
            task_id,
            what: match paid {
                Some(paid) => describe_money(kind, &paid),
                None => describe(kind, &entry_key, reason.as_deref(), prompt.as_deref()),
            },
            reason,
            task_exists: prompt.is_some(),
        });
    }
    let next_cursor = if rows.len() > PAGE_SIZE { last_id.map(|id| id.to_string()) } else { None };
    Ok(LedgerPage { items, next_cursor })
}

/// A ledger row in words. `prompt` is `None` when the task was deleted.
pub fn describe(kind: LedgerKind, entry_key: &str, reason: Option<&str>, prompt: Option<&str>) -> String {
    match (kind, prompt) {
        (LedgerKind::Grant, _) if entry_key.starts_with("signup:") => "Sign-up credits".to_owned(),
        (LedgerKind::Grant, _) => match reason {
            Some(r) => format!("Granted: {r}"),
            None => "Granted".to_owned(),
        },
        (LedgerKind::Charge, Some(p)) => format!("Image: {}", clip(p, PROMPT_CHARS)),
        (LedgerKind::Charge, None) => "Image (deleted)".to_owned(),
        (LedgerKind::Refund, Some(p)) => format!("Refund: {}", clip(p, PROMPT_CHARS)),
        (LedgerKind::Refund, None) => "Refund (deleted image)".to_owned(),
        (LedgerKind::Purchase, _) => "Bought credits".to_owned(),
        (LedgerKind::PaymentRefund, _) => "Payment refunded".to_owned(),
        (LedgerKind::Dispute, _) => "Payment disputed".to_owned(),
        (LedgerKind::DisputeWon, _) => "Dispute won: credits back".to_owned(),
    }
}

/// A row about money, with the purchase's price.
pub fn describe_money(kind: LedgerKind, price: &str) -> String {
    match kind {
        LedgerKind::Purchase => format!("Bought credits ({price})"),
        LedgerKind::PaymentRefund => format!("Payment refunded (of {price})"),
        LedgerKind::Dispute => format!("Payment of {price} disputed"),
        LedgerKind::DisputeWon => format!("Dispute of {price} won: credits back"),
        other => describe(other, "", None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_described_in_words() {
        assert_eq!(describe(LedgerKind::Grant, "signup:u1", None, None), "Sign-up credits");
        assert_eq!(describe(LedgerKind::Grant, "grant:x", Some("beta tester"), None), "Granted: beta tester");
        assert_eq!(describe(LedgerKind::Charge, "charge:t", None, Some("a cat")), "Image: a cat");
        assert_eq!(describe(LedgerKind::Charge, "charge:t", None, None), "Image (deleted)");
        assert_eq!(describe(LedgerKind::Refund, "refund:t", None, Some("a\n  cat")), "Refund: a cat");
        assert_eq!(describe(LedgerKind::Refund, "refund:t", None, None), "Refund (deleted image)");
        assert_eq!(describe_money(LedgerKind::Purchase, "5.00 USD"), "Bought credits (5.00 USD)");
        assert_eq!(describe_money(LedgerKind::Dispute, "5.00 USD"), "Payment of 5.00 USD disputed");
        let long = describe(LedgerKind::Charge, "charge:t", None, Some(&"x".repeat(500)));
        assert_eq!(long.chars().count(), "Image: ".len() + PROMPT_CHARS);
        assert!(long.ends_with('…'));
    }
}
