//! Client-side polling: the tasks a page shows ([`LiveTasks`]) kept live
//! by one poller ([`use_task_poller`]) that the generator and the history
//! share, on an interval that runs while there is something to poll,
//! restarts when that something changes, polls at once when a hidden tab
//! becomes visible, and stops when the page unmounts. Effects never run
//! during server rendering, so none of this runs on the server.

use std::collections::HashMap;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::check_image_statuses;
use crate::error::ErrorKind;
use crate::model::TaskView;

/// The tasks a page shows, by id.
#[derive(Clone, Copy)]
pub struct LiveTasks(RwSignal<HashMap<String, TaskView>>);

impl LiveTasks {
    pub fn new(initial: impl IntoIterator<Item = TaskView>) -> Self {
        Self(RwSignal::new(initial.into_iter().map(|t| (t.id.clone(), t)).collect()))
    }

    /// The task `id` (tracked).
    pub fn get(self, id: &str) -> Option<TaskView> {
        self.0.with(|m| m.get(id).cloned())
    }

    /// Whether the page still shows task `id` (tracked).
    pub fn contains(self, id: &str) -> bool {
        self.0.with(|m| m.contains_key(id))
    }

    /// A task as an action on it answered (a new generation, a cancel):
    /// taken as it is.
    pub fn set(self, view: TaskView) {
        self.0.update(|m| {
            m.insert(view.id.clone(), view);
        });
    }

    /// More tasks (the next page of history).
    pub fn extend(self, views: impl IntoIterator<Item = TaskView>) {
        self.0.update(|m| m.extend(views.into_iter().map(|t| (t.id.clone(), t))));
    }

    pub fn remove(self, id: &str) {
        self.0.update(|m| {
            m.remove(id);
        });
    }

    /// Runs `f` over the tasks (tracked).
    pub fn with<R>(self, f: impl FnOnce(&HashMap<String, TaskView>) -> R) -> R {
        self.0.with(f)
    }

    /// Takes the answers of a poll; returns those that finished with it.
    /// An answer sent before a Cancel (or any other ending the page already
    /// knows) never brings a task back to processing.
    fn merge(self, views: Vec<TaskView>) -> Vec<TaskView> {
        let mut finished = Vec::new();
        self.0.update(|m| {
            for view in views {
                match m.get(&view.id) {
                    Some(old) if old.status.is_finished() && !view.status.is_finished() => continue,
                    Some(old) if !old.status.is_finished() && view.status.is_finished() => finished.push(view.clone()),
                    _ => {}
                }
                m.insert(view.id.clone(), view);
            }
        });
        finished
    }
}

/// Keeps the tasks `watched` names (the page's unfinished ones, in a stable
/// order; `None` when there are none) live: one batched status call at a
/// time, at the pace the server advises within `interval_ms`. Each task
/// that finishes is given to `on_finished`, and the balance is read again;
/// a task the server no longer shows this person (deleted elsewhere) leaves
/// the page; signed out meanwhile, polling stops and the balance's refresh
/// sends the page to sign in.
pub fn use_task_poller(
    tasks: LiveTasks,
    watched: Memo<Option<Vec<String>>>,
    interval_ms: u64,
    on_finished: Callback<TaskView>,
) {
    let in_flight = StoredValue::new(false);
    let signed_out = RwSignal::new(false);
    // The soonest advice among the watched tasks.
    let every = Memo::new(move |_| {
        let advice = watched.with(|ids| {
            ids.as_ref().and_then(|ids| {
                tasks.with(|m| ids.iter().filter_map(|id| m.get(id)).filter_map(|t| t.poll_after_ms).min())
            })
        });
        pace(advice, interval_ms)
    });
    let key = Memo::new(move |_| watched.get().filter(|_| !signed_out.get()));
    poll_while(key, every, move |ids: Vec<String>| {
        if in_flight.get_value() {
            return;
        }
        in_flight.set_value(true);
        spawn_local(async move {
            let answer = check_image_statuses(ids.clone()).await;
            in_flight.set_value(false);
            match answer {
                Ok(views) => {
                    let gone: Vec<&String> = ids.iter().filter(|id| !views.iter().any(|v| v.id == **id)).collect();
                    for id in &gone {
                        tasks.remove(id);
                    }
                    let finished = tasks.merge(views);
                    for view in &finished {
                        on_finished.run(view.clone());
                    }
                    if !finished.is_empty() || !gone.is_empty() {
                        crate::balance::refresh();
                    }
                }
                Err(e) if e.kind == ErrorKind::Unauthorized => {
                    signed_out.set(true);
                    crate::balance::refresh();
                }
                // Passing trouble: the next tick asks again.
                Err(_) => {}
            }
        });
    });
}

/// The ids of the unfinished tasks among `ids` (tracked), `None` when
/// there are none: what a page gives [`use_task_poller`] to watch.
pub fn unfinished(tasks: LiveTasks, ids: impl IntoIterator<Item = String>) -> Option<Vec<String>> {
    let ids: Vec<String> =
        tasks.with(|m| ids.into_iter().filter(|id| m.get(id).is_some_and(|t| !t.status.is_finished())).collect());
    (!ids.is_empty()).then_some(ids)
}

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
