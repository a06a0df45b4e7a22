//! `/verify?token=…`: the link a sign-up is mailed when addresses are
//! verified. The page asks for one click ("Verify email", a POST, so a mail
//! scanner that opens links verifies nothing); the account is then signed
//! in with its free credits. Works without JavaScript.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

use super::refused::{Form, refused};
use crate::api::{VerifyEmail, verify_email};
use crate::error::AppError;

#[component]
pub fn VerifyPage() -> impl IntoView {
    let token = use_query_map().with_untracked(|q| q.get("token")).unwrap_or_default();
    view! {
        <section class="auth-card">
            <h1>"Confirm your email"</h1>
            <VerifyForm token refused=refused(Form::Verify) />
        </section>
    }
}

/// "Verify email"; on success, on to the generator.
#[island(lazy)]
fn VerifyForm(token: String, refused: Option<AppError>) -> impl IntoView {
    crate::island_hydrated();
    let error = RwSignal::new(refused);
    let pending = RwSignal::new(false);
    let token = StoredValue::new(token);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        spawn_local(async move {
            match verify_email(token.get_value()).await {
                // Still pending: the page is on its way out.
                Ok(_) => {
                    let _ = window().location().assign("/");
                }
                Err(e) => {
                    error.set(Some(e));
                    pending.set(false);
                }
            }
        });
    };
    view! {
        <form action=VerifyEmail::url() method="post" on:submit=submit>
            <input type="hidden" name="token" value=token.get_value() />
            <p class="hint">"One click confirms this address and signs you in with your free credits."</p>
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            <button type="submit" class="primary" disabled=move || pending.get()>
                {move || if pending.get() { "Verifying…" } else { "Verify email" }}
            </button>
        </form>
    }
}
