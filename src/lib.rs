//! Darkroom: turn a text prompt into an image through an asynchronous model
//! provider. One crate, two builds: `ssr` (the axum server) and `hydrate`
//! (the browser bundle). Everything server-only sits behind `ssr`.

// Leptos' typed views nest deeply; the generator page's passes the default.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod balance;
pub mod error;
pub mod model;
pub mod paths;
pub mod routes;
pub mod session;

#[cfg(feature = "ssr")]
pub mod provider;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod sim;
#[cfg(feature = "ssr")]
pub mod standard_webhooks;

/// Entry point of the browser bundle. The page is server-rendered HTML;
/// only its islands (`#[island]` components) become interactive: Leptos'
/// island script calls this, then hydrates each `<leptos-island>` in the
/// page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    use leptos::prelude::window;
    // A panic is logged to the console, and kept on the page for tests to
    // report (`window.__darkroom_panic`).
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let _ = js_sys::Reflect::set(&window(), &"__darkroom_panic".into(), &info.to_string().into());
    }));
    leptos::mount::hydrate_islands();
    // Lets end-to-end tests wait for the page to become interactive. The
    // island script hydrates the islands right after this returns, in
    // microtasks only (no island is lazy): a 0 ms timeout runs after all
    // of them.
    leptos::prelude::set_timeout(
        || {
            let _ = js_sys::Reflect::set(&window(), &"__darkroom_hydrated".into(), &true.into());
        },
        std::time::Duration::ZERO,
    );
}
