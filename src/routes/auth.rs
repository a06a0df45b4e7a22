//! `/login` and `/signup`: plain forms that work with and without
//! JavaScript (server functions answer a form post with a redirect).

use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::components::{A, Redirect};
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api::{SignIn, SignUp, current_user};
use crate::app::use_session;
use crate::error::AppError;
use crate::model::User;

/// The page to go to after signing in: `?next=` when it is a local path.
fn next_page() -> String {
    let query = use_query_map();
    crate::paths::safe_next(query.read_untracked().get("next").as_deref())
}

/// Sends a visitor who is already signed in on to the page they asked for
/// (the server does the same before rendering; this covers in-app
/// navigation).
#[component]
fn AwayIfSignedIn() -> impl IntoView {
    let user = OnceResource::new(current_user());
    let next = next_page();
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let next = next.clone();
                user.get()
                    .map(move |u| match u {
                        Ok(Some(_)) => Either::Left(view! { <Redirect path=next /> }),
                        _ => Either::Right(()),
                    })
            }}
        </Suspense>
    }
}

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
