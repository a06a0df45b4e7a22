//! `/account`: who is signed in, the balance and where it came from (the
//! ledger, newest first, a page at a time: "Older entries" loads the next
//! page), buying credits (a plain form on to the checkout page, the
//! purchases and, back from checkout at `?purchase=<id>`, how it went), the
//! password change form (the page's one island), "Change email", "Sign out
//! everywhere" and "Delete account" (plain forms).

use leptos::either::Either;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

use super::refused::{Form, refused};
use super::value_of;
use crate::api::{
    BuyCredits, ChangeEmail, ChangePassword, DeleteAccount, SignOutEverywhere, change_password, list_ledger,
    list_packages, list_purchases,
};
use crate::error::AppError;
use crate::model::{CreditPackage, LedgerEntry, LedgerKind, LedgerPage, Purchase, PurchaseStatus};
use crate::session::{RequireUser, loaded, use_current_user};

/// The page; its data is read once per render, here (see `RequireUser`).
#[component]
pub fn AccountPage() -> impl IntoView {
    let user = use_current_user();
    // `?cursor=` is where "Older entries" leads without JavaScript.
    let (start, returned, email_sent) =
        use_query_map().with_untracked(|q| (q.get("cursor"), q.get("purchase"), q.get("email_sent").is_some()));
    let returned = StoredValue::new(returned);
    let first = OnceResource::new(list_ledger(start));
    let packages = OnceResource::new(list_packages());
    let purchases = OnceResource::new(list_purchases());
    view! {
        <RequireUser>
            <section class="account-page">
                <h1>"Account"</h1>
                {move || {
                    user.get()
                        .flatten()
                        .map(|user| {
                            view! {
                                <dl class="summary">
                                    <dt>"Email"</dt>
                                    <dd>{user.email}</dd>
                                    <dt>"Balance"</dt>
                                    <dd>{format!("{} credits", user.credits)}</dd>
                                </dl>
                            }
                        })
                }}
                {move || {
                    let returned = returned.get_value()?;
                    let list = loaded(purchases)?.ok()?;
                    list.into_iter().find(|p| p.id == returned).map(|p| view! { <Outcome purchase=p /> })
                }}
                {move || {
                    loaded(packages)
                        .and_then(|r| r.ok())
                        .filter(|p| !p.is_empty())
                        .map(|packages| view! { <BuyForm packages refused=refused(Form::BuyCredits) /> })
                }}
                {move || {
                    loaded(purchases)
                        .and_then(|r| r.ok())
                        .filter(|p| !p.is_empty())
                        .map(|list| view! { <Purchases list /> })
                }}
                <h2 id="ledger-heading">"Credits"</h2>
                {move || {
                    loaded(first)
                        .map(|r| match r {
                            Ok(page) => Either::Left(view! { <Ledger first=page /> }),
                            Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.message}</p> }),
                        })
                }}
                <PasswordForm refused=refused(Form::ChangePassword) />
                <EmailForm sent=email_sent refused=refused(Form::ChangeEmail) />
                <section class="sessions" aria-labelledby="sessions-heading">
                    <h2 id="sessions-heading">"Sessions"</h2>
                    <p class="hint">"Signs this account out on every device and browser, this one too."</p>
                    <form action=SignOutEverywhere::url() method="post">
                        <button type="submit">"Sign out everywhere"</button>
                    </form>
                </section>
                <DeleteForm refused=refused(Form::DeleteAccount) />
            </section>
        </RequireUser>
    }
}

/// "Buy credits": a package and the button, a plain form on to the
/// checkout page (it works without JavaScript).
#[component]
fn BuyForm(packages: Vec<CreditPackage>, refused: Option<AppError>) -> impl IntoView {
    view! {
        <section class="buy" id="buy" aria-labelledby="buy-heading">
            <h2 id="buy-heading">"Buy credits"</h2>
            <form action=BuyCredits::url() method="post" class="buy-form">
                <label for="package">"Package"</label>
                <select id="package" name="package">
                    {packages
                        .into_iter()
                        .map(|p| {
                            view! { <option value=p.id.clone()>{format!("{} credits — {}", p.credits, p.price)}</option> }
                        })
                        .collect_view()}
                </select>
                <button type="submit" class="primary">
                    "Buy credits"
                </button>
            </form>
            {refused.map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            <p class="hint">"You pay on Stripe's checkout page, then come back here."</p>
        </section>
    }
}

/// How a purchase went, back from the checkout page.
#[component]
fn Outcome(purchase: Purchase) -> impl IntoView {
    let (class, text) = match purchase.status {
        PurchaseStatus::Paid => ("form-success", format!("Payment received: {} credits added.", purchase.credits)),
        PurchaseStatus::Pending => (
            "hint",
            "Waiting for the payment to be confirmed: not paid yet. Reload this page to look again.".to_owned(),
        ),
        PurchaseStatus::Failed => ("form-error", "The payment did not go through; nothing was charged.".to_owned()),
        PurchaseStatus::Refunded => ("hint", "This payment was refunded.".to_owned()),
    };
    view! {
        <p class=class role="status" data-testid="purchase-outcome">
            {text}
        </p>
    }
}

/// The person's purchases, newest first.
#[component]
fn Purchases(list: Vec<Purchase>) -> impl IntoView {
    view! {
        <h2 id="purchases-heading">"Purchases"</h2>
        <table class="ledger purchases" aria-labelledby="purchases-heading">
            <thead>
                <tr>
                    <th scope="col">"Date"</th>
                    <th scope="col">"Credits"</th>
                    <th scope="col">"Price"</th>
                    <th scope="col">"Status"</th>
                </tr>
            </thead>
            <tbody>
                {list
                    .into_iter()
                    .map(|p| {
                        let status = match p.status {
                            PurchaseStatus::Pending => "Pending",
                            PurchaseStatus::Paid => "Paid",
                            PurchaseStatus::Failed => "Failed",
                            PurchaseStatus::Refunded => "Refunded",
                        };
                        view! {
                            <tr>
                                <td>
                                    <time datetime=p.at.clone()>{short_date(&p.at)}</time>
                                </td>
                                <td>{p.credits}</td>
                                <td>{p.price}</td>
                                <td>{status}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// "+100", "−10" (a real minus sign).
pub fn signed(amount: i64) -> String {
    if amount < 0 { format!("−{}", amount.unsigned_abs()) } else { format!("+{amount}") }
}

/// "2026-12-01 09:30" (UTC) from an RFC 3339 time.
fn short_date(rfc3339: &str) -> String {
    let date_time = rfc3339.get(..16).unwrap_or(rfc3339);
    format!("{} UTC", date_time.replacen('T', " ", 1))
}

#[component]
fn Ledger(first: LedgerPage) -> impl IntoView {
    let LedgerPage { items, next_cursor } = first;
    let table = if items.is_empty() {
        Either::Left(view! { <p class="muted">"No credits have moved yet."</p> })
    } else {
        Either::Right(view! {
            <table class="ledger" aria-labelledby="ledger-heading">
                <thead>
                    <tr>
                        <th scope="col">"Date"</th>
                        <th scope="col">"What"</th>
                        <th scope="col" class="amount">"Credits"</th>
                    </tr>
                </thead>
                <tbody>{items.into_iter().map(|entry| view! { <LedgerRow entry /> }).collect_view()}</tbody>
            </table>
        })
    };
    view! {
        {table}
        {next_cursor
            .map(|c| {
                view! {
                    <p class="more">
                        <a class="button" href=format!("/account?cursor={c}")>
                            "Older entries"
                        </a>
                    </p>
                }
            })}
    }
}

#[component]
fn LedgerRow(entry: LedgerEntry) -> impl IntoView {
    let what = match entry.image_url {
        Some(url) => view! { <a href=url target="_blank" rel="noopener">{entry.what}</a> }.into_any(),
        None => view! { <span>{entry.what}</span> }.into_any(),
    };
    let kind = match entry.kind {
        LedgerKind::Grant => "grant",
        LedgerKind::Charge => "charge",
        LedgerKind::Refund => "refund",
        LedgerKind::Purchase => "purchase",
        LedgerKind::PaymentRefund => "payment_refund",
        LedgerKind::Dispute => "dispute",
        LedgerKind::DisputeWon => "dispute_won",
    };
    view! {
        <tr data-kind=kind>
            <td>
                <time datetime=entry.at.clone()>{short_date(&entry.at)}</time>
            </td>
            <td>{what}</td>
            <td class="amount">{signed(entry.amount)}</td>
        </tr>
    }
}

/// "Change email": the new address and the password. A plain form; the
/// address changes when the link mailed to it is opened (`sent`: the page
/// came back from sending it).
#[component]
fn EmailForm(sent: bool, refused: Option<AppError>) -> impl IntoView {
    view! {
        <section class="change-email" aria-labelledby="change-email-heading">
            <h2 id="change-email-heading">"Change email"</h2>
            <form action=ChangeEmail::url() method="post">
                <label for="new_email">"New email"</label>
                <input id="new_email" type="email" name="new_email" required autocomplete="email" />
                <label for="email_password">"Password to confirm"</label>
                <input id="email_password" type="password" name="password" required autocomplete="current-password" />
                <p class="hint">"We send a link to the new address; your email changes when you open it."</p>
                {sent
                    .then(|| {
                        view! {
                            <p class="form-success" role="status">
                                "We sent a link to the new address: open it to finish the change."
                            </p>
                        }
                    })}
                {refused.map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
                <button type="submit">"Change email"</button>
            </form>
        </section>
    }
}

/// "Delete account": the password, and the button. A plain form: on to
/// the sign-in page once done, or back here with why not.
#[component]
fn DeleteForm(refused: Option<AppError>) -> impl IntoView {
    view! {
        <section class="delete-account" aria-labelledby="delete-account-heading">
            <h2 id="delete-account-heading">"Leave Darkroom"</h2>
            <p class="hint" id="delete-account-hint">
                "Deletes your images, the images you started from and your credits, and signs you out everywhere. \
                 Purchases stay in the site's books, without your email."
            </p>
            <form action=DeleteAccount::url() method="post">
                <label for="delete_password">"Your password"</label>
                <input
                    id="delete_password"
                    type="password"
                    name="password"
                    required
                    autocomplete="current-password"
                    aria-describedby="delete-account-hint"
                />
                {refused.map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
                <button type="submit" class="danger">"Delete account"</button>
            </form>
        </section>
    }
}

/// An island: says "Password changed." (or why not) in place. Without
/// JavaScript the form posts itself; `refused` is why the server sent it
/// back (see `refused`).
#[island(lazy)]
fn PasswordForm(refused: Option<AppError>) -> impl IntoView {
    crate::island_hydrated();
    let outcome = RwSignal::new(refused.map(Err::<(), _>));
    let pending = RwSignal::new(false);
    let form = NodeRef::<leptos::html::Form>::new();
    let (current, new) = (NodeRef::new(), NodeRef::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        let (current_password, new_password) = (value_of(current), value_of(new));
        spawn_local(async move {
            let answer = change_password(current_password, new_password).await;
            if answer.is_ok()
                && let Some(form) = form.get_untracked()
            {
                form.reset();
            }
            outcome.set(Some(answer));
            pending.set(false);
        });
    };
    view! {
        <section class="password" aria-labelledby="password-heading">
            <h2 id="password-heading">"Change password"</h2>
            <form action=ChangePassword::url() method="post" node_ref=form on:submit=submit>
                <label for="current_password">"Current password"</label>
                <input
                    node_ref=current
                    id="current_password"
                    type="password"
                    name="current_password"
                    required
                    autocomplete="current-password"
                />
                <label for="new_password">"New password"</label>
                <input
                    node_ref=new
                    id="new_password"
                    type="password"
                    name="new_password"
                    required
                    minlength="8"
                    autocomplete="new-password"
                    aria-describedby="new-password-hint"
                />
                <p id="new-password-hint" class="hint">"At least 8 characters. Other devices will be signed out."</p>
                {move || {
                    outcome
                        .get()
                        .map(|r| match r {
                            Ok(()) => {
                                Either::Left(view! {
                                    <p class="form-success" role="status">
                                        "Password changed. Every other session was signed out."
                                    </p>
                                })
                            }
                            Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.message}</p> }),
                        })
                }}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Changing…" } else { "Change password" }}
                </button>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_dates_read_naturally() {
        assert_eq!(signed(100), "+100");
        assert_eq!(signed(-10), "−10");
        assert_eq!(short_date("2026-12-01T09:30:12.345Z"), "2026-12-01 09:30 UTC");
    }
}
