//! `/forgot` and `/reset?token=…`: a person who forgot their password
//! asks for a link by mail, and the link's page sets a new one. Both forms
//! work without JavaScript (the server answers the post with a redirect:
//! `/forgot?sent=1`, `/login?reset=1`, or back with why it was refused).

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::refused::{Form, refused};
use super::value_of;
use crate::api::{RequestPasswordReset, ResetPassword, request_password_reset, reset_password};
use crate::error::AppError;

/// What a person is told once they asked: the same whether or not an
/// account uses the address.
const SENT: &str = "If an account uses that address, a link to reset its password is on its way. It works for an hour.";

#[component]
pub fn ForgotPage() -> impl IntoView {
    let sent = use_query_map().with_untracked(|q| q.get("sent").is_some());
    view! {
        <section class="auth-card">
            <h1>"Reset your password"</h1>
            <ForgotForm sent refused=refused(Form::Forgot) />
            <p class="muted">"Remembered it? " <A href="/login">"Sign in"</A></p>
        </section>
    }
}

/// The email field and "Send reset link"; once sent, what happens next.
#[island(lazy)]
fn ForgotForm(sent: bool, refused: Option<AppError>) -> impl IntoView {
    crate::island_hydrated();
    let error = RwSignal::new(refused);
    let sent = RwSignal::new(sent);
    let pending = RwSignal::new(false);
    let email = NodeRef::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        let address = value_of(email);
        spawn_local(async move {
            match request_password_reset(address).await {
                Ok(()) => {
                    error.set(None);
                    sent.set(true);
                }
                Err(e) => error.set(Some(e)),
            }
            pending.set(false);
        });
    };
    view! {
        <form action=RequestPasswordReset::url() method="post" on:submit=submit>
            <p class="hint">"Enter the address you signed up with and we will send you a link."</p>
            <label for="email">"Email"</label>
            <input node_ref=email id="email" type="email" name="email" required autocomplete="email" />
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            {move || sent.get().then(|| view! { <p class="form-success" role="status">{SENT}</p> })}
            <button type="submit" class="primary" disabled=move || pending.get()>
                {move || if pending.get() { "Sending…" } else { "Send reset link" }}
            </button>
        </form>
    }
}

#[component]
pub fn ResetPage() -> impl IntoView {
    let token = use_query_map().with_untracked(|q| q.get("token")).unwrap_or_default();
    view! {
        <section class="auth-card">
            <h1>"Choose a new password"</h1>
            <ResetForm token refused=refused(Form::Reset) />
            <p class="muted">"Link expired? " <A href="/forgot">"Ask for a new one"</A></p>
        </section>
    }
}

/// "New password" and "Set password"; on success, on to sign in.
#[island(lazy)]
fn ResetForm(token: String, refused: Option<AppError>) -> impl IntoView {
    crate::island_hydrated();
    let error = RwSignal::new(refused);
    let pending = RwSignal::new(false);
    let password = NodeRef::new();
    let token = StoredValue::new(token);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        let new_password = value_of(password);
        spawn_local(async move {
            match reset_password(token.get_value(), new_password).await {
                // Still pending: the page is on its way out.
                Ok(()) => {
                    let _ = window().location().assign("/login?reset=1");
                }
                Err(e) => {
                    error.set(Some(e));
                    pending.set(false);
                }
            }
        });
    };
    view! {
        <form action=ResetPassword::url() method="post" on:submit=submit>
            <input type="hidden" name="token" value=token.get_value() />
            <label for="new-password">"New password"</label>
            <input
                node_ref=password
                id="new-password"
                type="password"
                name="new_password"
                required
                minlength="8"
                autocomplete="new-password"
                aria-describedby="new-password-hint"
            />
            <p id="new-password-hint" class="hint">"At least 8 characters. You will be signed out everywhere."</p>
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            <button type="submit" class="primary" disabled=move || pending.get()>
                {move || if pending.get() { "Setting…" } else { "Set password" }}
            </button>
        </form>
    }
}
