//! The application shell, the router and the header shared by every page.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::hooks::use_navigate;
use leptos_router::{SsrMode, path};

use crate::api::{SignOut, current_user};
use crate::model::User;
use crate::routes::{auth::LoginPage, auth::SignupPage, generator::GeneratorPage, history::HistoryPage};

/// The HTML document around the app (server-rendered once per page load).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The page's Content-Security-Policy names the nonce Leptos puts on the
    // inline scripts it renders.
    #[cfg(feature = "ssr")]
    crate::server::security::set_page_policy(&options);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// Who is signed in, shared by every page; `refresh` re-reads it (after
/// signing in or out, and when a balance changes).
#[derive(Clone, Copy)]
pub struct Session {
    version: RwSignal<u32>,
    pub user: Resource<Result<Option<User>, crate::error::AppError>>,
}

impl Session {
    fn new() -> Self {
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

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let session = Session::new();
    provide_context(session);

    view! {
        <Stylesheet id="leptos" href="/pkg/darkroom.css" />
        <Title text="Darkroom" />
        <Router>
            <Header />
            <main class="page">
                <Routes fallback=|| view! { <NotFound /> }>
                    <Route path=path!("/") view=GeneratorPage ssr=SsrMode::Async />
                    <Route path=path!("/history") view=HistoryPage ssr=SsrMode::Async />
                    <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async />
                    <Route path=path!("/signup") view=SignupPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
    }
}

#[component]
fn Header() -> impl IntoView {
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

#[component]
fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="narrow">
            <h1>"Not found"</h1>
            <p>
                "There is nothing at this address. " <A href="/">"Back to the generator"</A>
            </p>
        </section>
    }
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
                        _ => Either::Right(view! { <leptos_router::components::Redirect path=login() /> }),
                    })
            }}
        </Suspense>
    }
}
