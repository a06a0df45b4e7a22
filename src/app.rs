//! The application shell and the router, rendered on the server only: in
//! the browser just the islands (`#[island]` components) hydrate, and links
//! are plain page loads. The header is in `routes::nav`, the signed-in
//! state every page shares in `session`.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use crate::routes::nav::Header;
use crate::routes::{
    account::AccountPage, auth::LoginPage, auth::SignupPage, generator::GeneratorPage, history::HistoryPage,
    password::ForgotPage, password::ResetPage, verify::VerifyPage,
};
use crate::session::CurrentUser;

/// The HTML document around the app (server-rendered once per page load).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options islands=true />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    CurrentUser::provide();

    view! {
        <Stylesheet id="leptos" href="/pkg/darkroom.css" />
        <Title text="Darkroom" />
        <Router>
            <Header />
            <main class="page">
                <Routes fallback=|| view! { <NotFound /> }>
                    <Route path=path!("/") view=GeneratorPage ssr=SsrMode::Async />
                    <Route path=path!("/history") view=HistoryPage ssr=SsrMode::Async />
                    <Route path=path!("/account") view=AccountPage ssr=SsrMode::Async />
                    <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async />
                    <Route path=path!("/signup") view=SignupPage ssr=SsrMode::Async />
                    <Route path=path!("/forgot") view=ForgotPage ssr=SsrMode::Async />
                    <Route path=path!("/reset") view=ResetPage ssr=SsrMode::Async />
                    <Route path=path!("/verify") view=VerifyPage ssr=SsrMode::Async />
                </Routes>
            </main>
        </Router>
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
