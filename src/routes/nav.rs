//! The header shared by every page: the brand, the navigation and, when
//! signed in, the balance ("N credits") and "Sign out".

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use crate::api::SignOut;
use crate::session::use_session;

#[component]
pub fn Header() -> impl IntoView {
    let session = use_session();
    let sign_out = ServerAction::<SignOut>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = sign_out.value().get() {
            session.refresh();
            navigate("/login", Default::default());
        }
    });

    view! {
        <header class="topbar">
            <A href="/" attr:class="brand">
                <span class="brand-mark" aria-hidden="true"></span>
                "Darkroom"
            </A>
            <Transition fallback=|| ()>
                {move || {
                    session
                        .current()
                        .map(|user| {
                            view! {
                                <nav class="nav" aria-label="Main">
                                    <A href="/">"Generate"</A>
                                    <A href="/history">"History"</A>
                                    <A href="/account">"Account"</A>
                                </nav>
                                <div class="account">
                                    <span class="balance" data-testid="balance">
                                        {format!("{} credits", user.credits)}
                                    </span>
                                    <span class="email">{user.email}</span>
                                    <ActionForm action=sign_out attr:class="inline">
                                        <button type="submit" class="link-button">
                                            "Sign out"
                                        </button>
                                    </ActionForm>
                                </div>
                            }
                        })
                }}
            </Transition>
        </header>
    }
}
