//! Who is signed in, as every page sees it: the shared [`Session`], and the
//! guards that send a visitor to sign in ([`RequireUser`]) or, once signed
//! in, on to the page they asked for ([`AwayIfSignedIn`]). The server makes
//! the same redirects before rendering (`server::http::page_redirects`);
//! these cover navigation inside the app.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;

use crate::api::current_user;
use crate::model::User;

/// Who is signed in, shared by every page; `refresh` re-reads it (after
/// signing in or out, and when a balance changes).
#[derive(Clone, Copy)]
pub struct Session {
    version: RwSignal<u32>,
    pub user: Resource<Result<Option<User>, crate::error::AppError>>,
}

impl Session {
    /// Starts reading who is signed in (provided once, by the app).
    pub fn provide() -> Self {
        let version = RwSignal::new(0);
        let user = Resource::new(move || version.get(), |_| current_user());
        Self { version, user }
    }

    /// Re-reads the signed-in user and balance.
    pub fn refresh(&self) {
        self.version.update(|v| *v += 1);
    }

    /// The signed-in user, if known (tracked).
    pub fn current(&self) -> Option<User> {
        self.user.get().and_then(|r| r.ok()).flatten()
    }
}

/// Reads the session from context.
pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Renders the page for a signed-in visitor, or sends them to `/login`.
/// It asks the server once per page (not on every balance change), so the
/// page below it keeps its state while the header refreshes.
#[component]
pub fn RequireUser(children: ChildrenFn) -> impl IntoView {
    let signed_in = OnceResource::new(current_user());
    let location = leptos_router::hooks::use_location();
    let login = move || {
        let search = location.search.get_untracked();
        let page = if search.is_empty() {
            location.pathname.get_untracked()
        } else {
            format!("{}?{search}", location.pathname.get_untracked())
        };
        crate::paths::login_url(&page)
    };
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || {
                signed_in
                    .get()
                    .map(|user| match user {
                        Ok(Some(_)) => Either::Left(children()),
                        _ => Either::Right(view! { <Redirect path=login() /> }),
                    })
            }}
        </Suspense>
    }
}

/// The page to go to after signing in: `?next=` when it is a local path.
pub fn next_page() -> String {
    let query = use_query_map();
    crate::paths::safe_next(query.read_untracked().get("next").as_deref())
}

/// Sends a visitor who is already signed in on to the page they asked for
/// (the server does the same before rendering; this covers in-app
/// navigation).
#[component]
pub fn AwayIfSignedIn() -> impl IntoView {
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
