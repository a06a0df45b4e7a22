//! Client-side polling: an interval that runs while there is something to
//! poll, restarts when that something changes, polls at once when a hidden
//! tab becomes visible, and stops when the page unmounts. Effects never run
//! during server rendering, so none of this runs on the server.

use std::time::Duration;

use leptos::prelude::*;

/// Calls `tick(key)` every `every` while `key` is `Some`. A change of key
/// (not only of its size) restarts the interval.
pub fn poll_while<K>(key: Memo<Option<K>>, every: Duration, tick: impl Fn(K) + Clone + 'static)
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
