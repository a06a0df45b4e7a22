//! `/login` and `/signup`: plain forms that work with and without
//! JavaScript (server functions answer a form post with a redirect).

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api::{SignIn, SignUp};
use crate::error::AppError;
use crate::model::User;
use crate::session::{AwayIfSignedIn, next_page, use_session};

/// After a successful submission with JavaScript: refresh the header and go
/// to the page the visitor asked for (the generator by default).
fn on_success(value: impl Get<Value = Option<Result<User, AppError>>> + Send + Sync + 'static) {
    let session = use_session();
    let navigate = use_navigate();
    let next = next_page();
    Effect::new(move |_| {
        if let Some(Ok(_)) = value.get() {
            session.refresh();
            navigate(&next, Default::default());
        }
    });
}

fn error_text(value: impl Get<Value = Option<Result<User, AppError>>> + Send + Sync + 'static) -> impl IntoView {
    move || {
        value.get().and_then(|r| r.err()).map(|e| {
            view! {
                <p class="form-error" role="alert">
                    {e.message}
                </p>
            }
        })
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<SignIn>::new();
    on_success(action.value());
    let pending = action.pending();
    view! {
        <AwayIfSignedIn />
        <section class="auth-card">
            <h1>"Sign in"</h1>
            <ActionForm action>
                <label for="email">"Email"</label>
                <input id="email" type="email" name="email" required autocomplete="email" />
                <label for="password">"Password"</label>
                <input id="password" type="password" name="password" required autocomplete="current-password" />
                {error_text(action.value())}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </ActionForm>
            <p class="muted">"New here? " <A href="/signup">"Create an account"</A></p>
        </section>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    on_success(action.value());
    let pending = action.pending();
    view! {
        <AwayIfSignedIn />
        <section class="auth-card">
            <h1>"Create an account"</h1>
            <ActionForm action>
                <label for="email">"Email"</label>
                <input id="email" type="email" name="email" required autocomplete="email" />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    type="password"
                    name="password"
                    required
                    minlength="8"
                    autocomplete="new-password"
                    aria-describedby="password-hint"
                />
                <p id="password-hint" class="hint">"At least 8 characters."</p>
                {error_text(action.value())}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Creating…" } else { "Sign up" }}
                </button>
            </ActionForm>
            <p class="muted">"Already have an account? " <A href="/login">"Sign in"</A></p>
        </section>
    }
}
