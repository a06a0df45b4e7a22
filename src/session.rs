//! Who is signed in, as the server-rendered pages see it ([`CurrentUser`],
//! read once per page), and the guard that sends a visitor to sign in
//! ([`RequireUser`]). The server makes the sign-in redirects before
//! rendering (`server::http::page_redirects`); links are plain page loads.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::components::Redirect;

use crate::api::current_user;
use crate::error::AppError;
use crate::model::User;

/// The signed-in person for this page, read once (provided by the app).
#[derive(Clone, Copy)]
pub struct CurrentUser(OnceResource<Result<Option<User>, AppError>>);

impl CurrentUser {
    /// Starts reading who is signed in.
    pub fn provide() {
        provide_context(Self(OnceResource::new(current_user())));
    }

    /// `None` while loading, then `Some(user)` or `Some(None)` (tracked).
    pub fn get(&self) -> Option<Option<User>> {
        loaded(self.0).map(|r| r.ok().flatten())
    }
}

/// A page resource's value: `None` while it loads (tracked).
///
/// Every page reads its resources through this, never with `get`. On the
/// server the resource is loaded on another worker thread, which stores the
/// value under a write lock; `OnceResource::get` reads with `try_read` and
/// panics ("already been disposed") when that read meets the write
/// (leptos-rs/leptos#3681, `Get::get` unwraps a failed `try_get`). The
/// panic ends the page's render and its request is never answered. A read
/// that meets the write is a resource still loading: the loader wakes the
/// `<Suspense>` once the value is stored, and the next read finds it.
pub fn loaded<T: Clone + Send + Sync + 'static>(resource: OnceResource<T>) -> Option<T> {
    resource.try_get().flatten()
}

/// Reads the current user from context.
pub fn use_current_user() -> CurrentUser {
    expect_context::<CurrentUser>()
}

/// Renders the page for a signed-in visitor, or sends them to `/login`.
///
/// `children` must only *read* resources, never create them: the page
/// component creates them before, once per render. On the server, Leptos
/// 0.8's `<Suspense>` calls its children several times per render (once to
/// find the resources they read, again once those have loaded to find reads
/// that depended on them, then to render: leptos-rs/leptos#4688, answered
/// by the `strict` Suspense of 0.9 only). A resource created in `children`
/// would start its server function on every pass; the surplus ones are
/// never awaited, and one that first runs after the response has ended
/// finds its request's context gone ("AppState missing"). The same holds
/// for a `<Suspense>` inside `children`: read everything here, in one.
#[component]
pub fn RequireUser(children: ChildrenFn) -> impl IntoView {
    let user = use_current_user();
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
                user.get()
                    .map(|user| match user {
                        Some(_) => Either::Left(children()),
                        None => Either::Right(view! { <Redirect path=login() /> }),
                    })
            }}
        </Suspense>
    }
}
