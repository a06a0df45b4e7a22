//! `/account`: who is signed in, the balance and where it came from (the
//! ledger, newest first, a page at a time), and the password change form.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

use crate::api::{ChangePassword, list_ledger};
use crate::model::{LedgerEntry, LedgerKind, LedgerPage};
use crate::session::{RequireUser, use_session};

#[component]
pub fn AccountPage() -> impl IntoView {
    view! {
        <RequireUser>
            <Account />
        </RequireUser>
    }
}

#[component]
fn Account() -> impl IntoView {
    let session = use_session();
    // `?cursor=` is where "Older entries" leads without JavaScript.
    let start = use_query_map().with_untracked(|q| q.get("cursor"));
    let first = OnceResource::new(list_ledger(start));
    view! {
        <section class="account-page">
            <h1>"Account"</h1>
            <Transition fallback=|| ()>
                {move || {
                    session
                        .current()
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
            </Transition>
            <h2 id="ledger-heading">"Credits"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || {
                    first
                        .get()
                        .map(|r| match r {
                            Ok(page) => view! { <Ledger first=page /> }.into_any(),
                            Err(e) => view! { <p class="form-error" role="alert">{e.message}</p> }.into_any(),
                        })
                }}
            </Suspense>
            <PasswordForm />
        </section>
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
    let entries = RwSignal::new(first.items);
    let cursor = RwSignal::new(first.next_cursor);
    let loading = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let more = move |ev: leptos::ev::MouseEvent| {
        ev.prevent_default();
        if loading.get_untracked() {
            return;
        }
        let Some(c) = cursor.get_untracked() else { return };
        loading.set(true);
        spawn_local(async move {
            match list_ledger(Some(c)).await {
                Ok(page) => {
                    entries.update(|e| e.extend(page.items));
                    cursor.set(page.next_cursor);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.message)),
            }
            loading.set(false);
        });
    };
    view! {
        <Show
            when=move || entries.with(|e| !e.is_empty())
            fallback=|| view! { <p class="muted">"No credits have moved yet."</p> }
        >
            <table class="ledger" aria-labelledby="ledger-heading">
                <thead>
                    <tr>
                        <th scope="col">"Date"</th>
                        <th scope="col">"What"</th>
                        <th scope="col" class="amount">"Credits"</th>
                    </tr>
                </thead>
                <tbody>
                    <For each=move || entries.get() key=|e| e.id let:entry>
                        <LedgerRow entry />
                    </For>
                </tbody>
            </table>
        </Show>
        {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        <Show when=move || cursor.with(Option::is_some)>
            <p class="more">
                <a
                    class="button"
                    href=move || cursor.get().map(|c| format!("/account?cursor={c}"))
                    on:click=more
                    aria-disabled=move || loading.get().then_some("true")
                >
                    {move || if loading.get() { "Loading…" } else { "Older entries" }}
                </a>
            </p>
        </Show>
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

#[component]
fn PasswordForm() -> impl IntoView {
    let action = ServerAction::<ChangePassword>::new();
    let pending = action.pending();
    let form = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = action.value().get()
            && let Some(form) = form.get()
        {
            form.reset();
        }
    });
    view! {
        <section class="password" aria-labelledby="password-heading">
            <h2 id="password-heading">"Change password"</h2>
            <ActionForm action node_ref=form>
                <label for="current_password">"Current password"</label>
                <input
                    id="current_password"
                    type="password"
                    name="current_password"
                    required
                    autocomplete="current-password"
                />
                <label for="new_password">"New password"</label>
                <input
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
                    action
                        .value()
                        .get()
                        .map(|r| match r {
                            Ok(()) => {
                                view! {
                                    <p class="form-success" role="status">
                                        "Password changed. Every other session was signed out."
                                    </p>
                                }
                                    .into_any()
                            }
                            Err(e) => view! { <p class="form-error" role="alert">{e.message}</p> }.into_any(),
                        })
                }}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Changing…" } else { "Change password" }}
                </button>
            </ActionForm>
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
