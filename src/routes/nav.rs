//! The header shared by every page: the brand, the navigation and, when
//! signed in, the balance ("N credits", an island that follows charges and
//! refunds) and "Sign out" (a plain form: the server signs out and answers
//! with the sign-in page).

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::components::A;

use crate::api::SignOut;
use crate::balance::Balance;
use crate::session::use_current_user;

#[component]
pub fn Header() -> impl IntoView {
    let user = use_current_user();
    view! {
        <header class="topbar">
            <A href="/" attr:class="brand">
                <span class="brand-mark" aria-hidden="true"></span>
                "Darkroom"
            </A>
            <Suspense fallback=|| ()>
                {move || {
                    user.get()
                        .flatten()
                        .map(|user| {
                            view! {
                                <nav class="nav" aria-label="Main">
                                    <A href="/">"Generate"</A>
                                    <A href="/history">"History"</A>
                                    <A href="/account">"Account"</A>
                                </nav>
                                <div class="account">
                                    <Balance credits=user.credits />
                                    <span class="email">{user.email}</span>
                                    <form action=SignOut::url() method="post" class="inline">
                                        <button type="submit" class="link-button">
                                            "Sign out"
                                        </button>
                                    </form>
                                </div>
                            }
                        })
                }}
            </Suspense>
        </header>
    }
}
