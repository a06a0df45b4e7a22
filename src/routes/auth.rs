//! `/login` and `/signup`: forms that work with and without JavaScript.
//! Without it, the server function answers the post with a redirect back to
//! the page, which the server sends on to `?next=` once signed in
//! (`server::http::page_redirects`) or shows with the error; with it, the
//! form (an island) shows the error in place and goes on to `next`.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use super::value_of;
use crate::api::{SignIn, SignUp};
use crate::error::AppError;
use crate::model::User;

/// The error a refused submission came back with (`?__err=`, which the
/// router turns into the action's value).
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

/// The page to go to once signed in: `?next=` when it is a local path.
fn next_page() -> String {
    let query = use_query_map();
    crate::paths::safe_next(query.read_untracked().get("next").as_deref())
}

/// With JavaScript, a successful submission goes on to `next` (a full page
/// load: the header and the page are the server's). Without it, the post
/// is answered with a redirect that does the same.
fn go_on_success(value: impl Get<Value = Option<Result<User, AppError>>> + Send + Sync + 'static, next: String) {
    Effect::new(move |_| {
        if let Some(Ok(_)) = value.get() {
            let _ = window().location().assign(&next);
        }
    });
}

/// The email field both forms start with.
fn email_field(node: NodeRef<leptos::html::Input>) -> impl IntoView {
    view! {
        <label for="email">"Email"</label>
        <input node_ref=node id="email" type="email" name="email" required autocomplete="email" />
    }
}

/// The submit button, disabled and saying so while the form is sent.
fn submit_button(pending: Memo<bool>, idle: &'static str, busy: &'static str) -> impl IntoView {
    view! {
        <button type="submit" class="primary" disabled=move || pending.get()>
            {move || if pending.get() { busy } else { idle }}
        </button>
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    view! {
        <section class="auth-card">
            <h1>"Sign in"</h1>
            <LoginForm next=next_page() />
            <p class="muted">"New here? " <A href="/signup">"Create an account"</A></p>
        </section>
    }
}

/// An island, so that a refused sign-in keeps what was typed.
#[island(lazy)]
fn LoginForm(next: String) -> impl IntoView {
    crate::island_hydrated();
    crate::session::provide_url_action_error();
    let action = ServerAction::<SignIn>::new();
    go_on_success(action.value(), next);
    let pending = action.pending();
    let (email, password) = (NodeRef::new(), NodeRef::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        action.dispatch(SignIn { email: value_of(email), password: value_of(password) });
    };
    view! {
        <form action=SignIn::url() method="post" on:submit=submit>
            {email_field(email)}
            <label for="password">"Password"</label>
            <input
                node_ref=password
                id="password"
                type="password"
                name="password"
                required
                autocomplete="current-password"
            />
            {error_text(action.value())}
            {submit_button(pending, "Sign in", "Signing in…")}
        </form>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    view! {
        <section class="auth-card">
            <h1>"Create an account"</h1>
            <SignupForm next=next_page() />
            <p class="muted">"Already have an account? " <A href="/login">"Sign in"</A></p>
        </section>
    }
}

/// An island, so that a refused sign-up keeps what was typed.
#[island(lazy)]
fn SignupForm(next: String) -> impl IntoView {
    crate::island_hydrated();
    crate::session::provide_url_action_error();
    let action = ServerAction::<SignUp>::new();
    go_on_success(action.value(), next);
    let pending = action.pending();
    let (email, password) = (NodeRef::new(), NodeRef::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        action.dispatch(SignUp { email: value_of(email), password: value_of(password) });
    };
    view! {
        <form action=SignUp::url() method="post" on:submit=submit>
            {email_field(email)}
            <label for="password">"Password"</label>
            <input
                node_ref=password
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
            {submit_button(pending, "Sign up", "Creating…")}
        </form>
    }
}
