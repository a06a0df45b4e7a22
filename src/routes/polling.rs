//! Client-side polling: an interval that runs while there is something to
//! poll, restarts when that something changes, polls at once when a hidden
//! tab becomes visible, and stops when the page unmounts. Effects never run
//! during server rendering, so none of this runs on the server.

use std::time::Duration;

use leptos::prelude::*;

/// Calls `tick(key)` every `every` while `key` is `Some`. A change of key
/// (not only of its size) or of the pace restarts the interval.
pub fn poll_while<K>(key: Memo<Option<K>>, every: Memo<Duration>, tick: impl Fn(K) + Clone + 'static)
where
    K: Clone + PartialEq + Send + Sync + 'static,
{
    let handle = StoredValue::new(None::<IntervalHandle>);
    let stop = move || {
        if let Some(h) = handle.try_update_value(|h| h.take()).flatten() {
            h.clear();
        }
    };

    let on_tick = tick.clone();
    Effect::new(move |_| {
        stop();
        let every = every.get();
        if let Some(k) = key.get() {
            let tick = on_tick.clone();
            if let Ok(h) = set_interval_with_handle(move || tick(k.clone()), every) {
                handle.set_value(Some(h));
            }
        }
    });

    // A backgrounded tab's timers are throttled: catch up as soon as it is
    // visible again.
    Effect::new(move |_| {
        let tick = tick.clone();
        let listener = window_event_listener_untyped("visibilitychange", move |_| {
            if document().visibility_state() == web_sys::VisibilityState::Visible
                && let Some(k) = key.get_untracked()
            {
                tick(k);
            }
        });
        on_cleanup(move || listener.remove());
    });

    on_cleanup(stop);
}

/// The pace a page polls at: the server's advice (`poll_after_ms`) bounded
/// by [500 ms, the configured interval].
pub fn pace(advice_ms: Option<u64>, interval_ms: u64) -> Duration {
    let interval = interval_ms.max(500);
    Duration::from_millis(advice_ms.unwrap_or(interval).clamp(500, interval))
}

/// Says in the tab's title that a task finished while the tab was hidden,
/// until the tab is seen again. One listener however many tasks finish
/// meanwhile; the title it restores is the one from before the first.
pub fn tell_hidden_tab(finished: &str) {
    #[cfg(feature = "hydrate")]
    {
        use std::cell::RefCell;
        thread_local! {
            /// The title to restore and the listener that restores it.
            static WAITING: RefCell<Option<(String, WindowListenerHandle)>> = const { RefCell::new(None) };
        }
        let doc = document();
        if doc.visibility_state() != web_sys::VisibilityState::Hidden {
            return;
        }
        let already = WAITING.with(|w| w.borrow().is_some());
        if !already {
            let previous = doc.title();
            let listener = window_event_listener_untyped("visibilitychange", move |_| {
                if document().visibility_state() == web_sys::VisibilityState::Visible
                    && let Some((title, handle)) = WAITING.with(|w| w.borrow_mut().take())
                {
                    document().set_title(&title);
                    handle.remove();
                }
            });
            WAITING.with(|w| *w.borrow_mut() = Some((previous, listener)));
        }
        doc.set_title(finished);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = finished;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_follows_the_advice_within_bounds() {
        assert_eq!(pace(None, 3000), Duration::from_millis(3000));
        assert_eq!(pace(Some(1200), 3000), Duration::from_millis(1200));
        assert_eq!(pace(Some(100), 3000), Duration::from_millis(500));
        assert_eq!(pace(Some(9000), 3000), Duration::from_millis(3000));
        assert_eq!(pace(Some(800), 100), Duration::from_millis(500));
    }
}
