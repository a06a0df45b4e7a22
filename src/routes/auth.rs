//! `/login` and `/signup`: one form ([`AuthForm`]) that works with and
//! without JavaScript. Without it, the server function answers the post
//! with a redirect back to the page, which the server sends on to `?next=`
//! once signed in (`server::http::page_redirects`) or shows with why it was
//! refused; with it, the form shows the error in place and goes on to
//! `next`.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use super::refused::{Form, refused};
use super::value_of;
use crate::api::{SignIn, SignUp, sign_in, sign_up};
use crate::error::AppError;

/// The page to go to once signed in: `?next=` when it is a local path.
fn next_page() -> String {
    let query = use_query_map();
    crate::paths::safe_next(query.read_untracked().get("next").as_deref())
}

#[component]
pub fn LoginPage() -> impl IntoView {
    // Where a password reset (`/login?reset=1`) or an account's deletion
    // (`?deleted=1`) leads.
    let (reset, deleted) = use_query_map().with_untracked(|q| (q.get("reset").is_some(), q.get("deleted").is_some()));
    view! {
        <section class="auth-card">
            <h1>"Sign in"</h1>
            {reset.then(|| view! { <p class="form-success" role="status">"Your new password is set: sign in with it."</p> })}
            {deleted.then(|| view! { <p class="form-success" role="status">"Your account is deleted."</p> })}
            <AuthForm kind=AuthKind::SignIn next=next_page() refused=refused(Form::SignIn) check_inbox=false />
            <p class="muted">
                <A href="/forgot">"Forgot password?"</A>
            </p>
            <p class="muted">"New here? " <A href="/signup">"Create an account"</A></p>
        </section>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    // Where a sign-up that must confirm its address leads without
    // JavaScript.
    let check_inbox = use_query_map().with_untracked(|q| q.get("check_inbox").is_some());
    view! {
        <section class="auth-card">
            <h1>"Create an account"</h1>
            <AuthForm kind=AuthKind::SignUp next=next_page() refused=refused(Form::SignUp) check_inbox />
            <p class="muted">"Already have an account? " <A href="/login">"Sign in"</A></p>
        </section>
    }
}

/// Which of the two account forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthKind {
    SignIn,
    SignUp,
}

/// The sign-in or sign-up form: an island, so that a refused submission
/// keeps what was typed and says why in place. Without JavaScript the form
/// posts itself and the server redirects back: `refused` is why, as the
/// page read it from the address (see `refused`). On success it goes on to
/// `next` (a full page load: the header and the page are the server's),
/// unless the sign-up must confirm its address first: then it says to
/// check the inbox (`check_inbox`, as the page read it from the address
/// without JavaScript).
#[island(lazy)]
fn AuthForm(kind: AuthKind, next: String, refused: Option<AppError>, check_inbox: bool) -> impl IntoView {
    crate::island_hydrated();
    let error = RwSignal::new(refused);
    let inbox = RwSignal::new(check_inbox);
    let pending = RwSignal::new(false);
    let (email, password) = (NodeRef::new(), NodeRef::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if pending.get_untracked() {
            return;
        }
        pending.set(true);
        let (e, p, next) = (value_of(email), value_of(password), next.clone());
        spawn_local(async move {
            let answer = match kind {
                AuthKind::SignIn => sign_in(e, p).await,
                AuthKind::SignUp => sign_up(e, p).await,
            };
            match answer {
                Ok(user) if user.check_inbox => {
                    error.set(None);
                    inbox.set(true);
                    pending.set(false);
                }
                // Still pending: the page is on its way out.
                Ok(_) => {
                    let _ = window().location().assign(&next);
                }
                Err(e) => {
                    error.set(Some(e));
                    pending.set(false);
                }
            }
        });
    };
    let (action, idle, busy) = match kind {
        AuthKind::SignIn => (SignIn::url(), "Sign in", "Signing in…"),
        AuthKind::SignUp => (SignUp::url(), "Sign up", "Creating…"),
    };
    let password_field = match kind {
        AuthKind::SignIn => view! {
            <input
                node_ref=password
                id="password"
                type="password"
                name="password"
                required
                autocomplete="current-password"
            />
        }
        .into_any(),
        AuthKind::SignUp => view! {
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
        }
        .into_any(),
    };
    view! {
        <form action=action method="post" on:submit=submit>
            <label for="email">"Email"</label>
            <input node_ref=email id="email" type="email" name="email" required autocomplete="email" />
            <label for="password">"Password"</label>
            {password_field}
            {move || error.get().map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
            {move || {
                inbox
                    .get()
                    .then(|| {
                        view! {
                            <p class="form-success" role="status">
                                "Check your inbox: we sent a link to confirm the address. It works for a day."
                            </p>
                        }
                    })
            }}
            <button type="submit" class="primary" disabled=move || pending.get()>
                {move || if pending.get() { busy } else { idle }}
            </button>
        </form>
    }
}
