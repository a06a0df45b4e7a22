//! The balance in the header ("N credits"), one value shared by every
//! island on the page: the generator and the history grid change it (a
//! charge, a refund) and the header follows without a reload.
//!
//! Islands hydrate separately and share no context, so in the browser the
//! value lives in a thread-local signal (the page has one thread). On the
//! server every call gets a fresh signal: one server thread renders many
//! people's pages.

use leptos::prelude::*;

/// The page's balance, starting at `initial` (what the server rendered)
/// unless another island already made it.
pub fn shared(initial: i64) -> RwSignal<i64> {
    #[cfg(feature = "hydrate")]
    {
        thread_local! {
            static SHARED: std::cell::OnceCell<ArcRwSignal<i64>> = const { std::cell::OnceCell::new() };
        }
        RwSignal::from(SHARED.with(|s| s.get_or_init(|| ArcRwSignal::new(initial)).clone()))
    }
    #[cfg(not(feature = "hydrate"))]
    {
        RwSignal::new(initial)
    }
}

/// Re-reads the balance from the server (after a charge or a refund). An
/// answer older than the latest call's is dropped; a visitor signed out
/// meanwhile (elsewhere) reloads, and the server sends them to sign in.
pub fn refresh() {
    #[cfg(feature = "hydrate")]
    {
        use std::cell::Cell;
        thread_local! {
            static LATEST: Cell<u64> = const { Cell::new(0) };
        }
        let call = LATEST.with(|l| {
            l.set(l.get() + 1);
            l.get()
        });
        leptos::task::spawn_local(async move {
            let answer = crate::api::current_user().await;
            if LATEST.with(Cell::get) != call {
                return;
            }
            match answer {
                Ok(Some(user)) => shared(user.credits).set(user.credits),
                Ok(None) => {
                    let _ = window().location().reload();
                }
                // Passing trouble: the next change refreshes again.
                Err(_) => {}
            }
        });
    }
}

/// "N credits" in the header.
#[island]
pub fn Balance(credits: i64) -> impl IntoView {
    crate::island_hydrated();
    let balance = shared(credits);
    view! {
        <span class="balance" data-testid="balance">
            {move || format!("{} credits", balance.get())}
        </span>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "hydrate"))]
    #[test]
    fn the_server_never_shares_a_balance_between_pages() {
        let owner = Owner::new();
        owner.set();
        let first = shared(100);
        let second = shared(7);
        first.set(90);
        assert_eq!(second.get_untracked(), 7);
        assert_eq!(shared(5).get_untracked(), 5);
    }

    #[cfg(feature = "hydrate")]
    #[test]
    fn islands_on_one_page_share_one_balance() {
        let owner = Owner::new();
        owner.set();
        let header = shared(100);
        let generator = shared(100);
        generator.set(90);
        assert_eq!(header.get_untracked(), 90);
        // The first island's value stands: later ones only join it.
        assert_eq!(shared(42).get_untracked(), 90);
    }
}
