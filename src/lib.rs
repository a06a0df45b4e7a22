//! Darkroom: turn a text prompt into an image through an asynchronous model
//! provider. One crate, two builds: `ssr` (the axum server) and `hydrate`
//! (the browser bundle). Everything server-only sits behind `ssr`.

// Leptos' typed views nest deeply: computing the layout of the task
// card's and the account page's views passes the default limit in the
// release builds (the debug and clippy builds do not show it).
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod balance;
pub mod codec;
pub mod error;
pub mod model;
pub mod paths;
pub mod routes;
pub mod session;

#[cfg(feature = "ssr")]
pub mod fal_webhooks;
#[cfg(feature = "ssr")]
pub mod provider;
#[cfg(feature = "ssr")]
pub mod rate;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod sim;
#[cfg(feature = "ssr")]
pub mod standard_webhooks;
#[cfg(feature = "ssr")]
pub mod stripe;
#[cfg(feature = "ssr")]
pub mod text;

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
    // Lets end-to-end tests wait for the page to become interactive: the
    // flag is set once every island on the page has hydrated (see
    // `island_hydrated`), or at once on a page without islands.
    let islands = leptos::prelude::document().query_selector_all("leptos-island").map_or(0, |l| l.length());
    ISLANDS_LEFT.set(islands);
    if islands == 0 {
        mark_hydrated();
    }
}

#[cfg(feature = "hydrate")]
thread_local! {
    /// Islands on the page that have not finished hydrating.
    static ISLANDS_LEFT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(feature = "hydrate")]
fn mark_hydrated() {
    let _ = js_sys::Reflect::set(&leptos::prelude::window(), &"__darkroom_hydrated".into(), &true.into());
}

/// Called by every island as it starts: the island script hydrates the
/// island right after its body returns, in the same task, and a 0 ms
/// timeout runs after that. Counting the islands, rather than waiting one
/// tick after `hydrate`, also holds for the islands that load their code on
/// demand (`#[island(lazy)]`: the history grid, the sign-in, sign-up and
/// password forms), whose bodies run once their file has arrived.
pub fn island_hydrated() {
    #[cfg(feature = "hydrate")]
    leptos::prelude::set_timeout(
        || {
            let left = ISLANDS_LEFT.get().saturating_sub(1);
            ISLANDS_LEFT.set(left);
            if left == 0 {
                mark_hydrated();
            }
        },
        std::time::Duration::ZERO,
    );
}
