//! `/history`: every task, newest first, a page at a time. All processing
//! tasks on the page update live through one batched status call per
//! interval, keyed on the set of their ids.

use std::collections::HashMap;

use leptos::either::Either;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

use super::polling::{pace, poll_while};
use super::task_card::{TaskCard, clock};
use crate::api::{check_image_statuses, generator_setup, list_history};
use crate::model::{HistoryPage as Page, TaskStatus, TaskView};
use crate::session::RequireUser;

/// The page; its data is read once per render, here (see `RequireUser`).
#[component]
pub fn HistoryPage() -> impl IntoView {
    // `?cursor=` is where "Load more" leads without JavaScript.
    let start = use_query_map().with_untracked(|q| q.get("cursor"));
    let first = OnceResource::new(list_history(start));
    let setup = OnceResource::new(generator_setup());
    view! {
        <RequireUser>
            <section class="history">
                <h1>"History"</h1>
                {move || {
                    let interval = setup.get().and_then(|s| s.ok()).map(|s| s.poll_interval_ms).unwrap_or(3000);
                    first
                        .get()
                        .map(|r| match r {
                            Ok(page) => Either::Left(view! { <HistoryGrid first=page interval_ms=interval /> }),
                            Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.message}</p> }),
                        })
                }}
            </section>
        </RequireUser>
    }
}

/// The cards, live: an island with the first page of tasks as its props.
#[island(lazy)]
fn HistoryGrid(first: Page, interval_ms: u64) -> impl IntoView {
    crate::island_hydrated();
    // Every task on the page by id, and their order (newest first).
    let order = RwSignal::new(first.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
    let tasks = RwSignal::new(first.items.into_iter().map(|t| (t.id.clone(), t)).collect::<HashMap<_, _>>());
    let cursor = RwSignal::new(first.next_cursor);
    let loading_more = RwSignal::new(false);
    let more_error = RwSignal::new(None::<String>);

    // The set of processing ids, in page order (one set always gives the same
    // sequence, without sorting): the interval restarts whenever the set
    // changes, not only its size.
    let processing = Memo::new(move |_| {
        let ids: Vec<String> = order.with(|o| {
            tasks.with(|m| {
                o.iter().filter(|id| m.get(*id).is_some_and(|t| t.status == TaskStatus::Processing)).cloned().collect()
            })
        });
        (!ids.is_empty()).then_some(ids)
    });
    let in_flight = StoredValue::new(false);
    // The soonest advice among the page's unfinished tasks.
    let every = Memo::new(move |_| {
        let advice = tasks
            .with(|m| m.values().filter(|t| t.status == TaskStatus::Processing).filter_map(|t| t.poll_after_ms).min());
        pace(advice, interval_ms)
    });
    poll_while(processing, every, move |ids: Vec<String>| {
        if in_flight.get_value() {
            return;
        }
        in_flight.set_value(true);
        spawn_local(async move {
            let result = check_image_statuses(ids).await;
            in_flight.set_value(false);
            if let Ok(views) = result {
                let finished = views.iter().any(|v| v.status.is_finished());
                tasks.update(|m| {
                    for v in views {
                        // An answer sent before a Cancel must not undo it.
                        if m.get(&v.id).is_some_and(|old| old.status.is_finished() && !v.status.is_finished()) {
                            continue;
                        }
                        m.insert(v.id.clone(), v);
                    }
                });
                if finished {
                    crate::balance::refresh();
                }
            }
        });
    });

    // A link to the next page, which works without JavaScript; with it,
    // the next page is appended here instead.
    let load_more = move |ev: leptos::ev::MouseEvent| {
        ev.prevent_default();
        if loading_more.get_untracked() {
            return;
        }
        let Some(c) = cursor.get_untracked() else { return };
        loading_more.set(true);
        spawn_local(async move {
            match list_history(Some(c)).await {
                Ok(page) => {
                    order.update(|o| o.extend(page.items.iter().map(|t| t.id.clone())));
                    tasks.update(|m| m.extend(page.items.into_iter().map(|t| (t.id.clone(), t))));
                    cursor.set(page.next_cursor);
                    more_error.set(None);
                }
                Err(e) => more_error.set(Some(e.message)),
            }
            loading_more.set(false);
        });
    };

    let now = clock();
    let empty = Memo::new(move |_| order.with(Vec::is_empty));
    let more = Memo::new(move |_| cursor.with(Option::is_some));
    let cards = move || {
        if empty.get() {
            return Either::Left(view! {
                <div class="empty">
                    <p>"Nothing here yet."</p>
                    <a href="/" class="button primary">
                        "Generate your first image"
                    </a>
                </div>
            });
        }
        Either::Right(view! {
            <ul class="grid" role="list">
                <For each=move || order.get() key=|id| id.clone() let:id>
                    {
                        // Memoized: a poll re-renders only the cards it changed.
                        let task = Memo::new({
                            let id = id.clone();
                            move |_| tasks.with(|m| m.get(&id).cloned()).unwrap_or_else(|| TaskView::pending(id.clone(), String::new(), String::new(), 0, 0))
                        });
                        view! {
                            <li>
                                <TaskCard
                                    task
                                    now
                                    compact=true
                                    on_change=Callback::new(move |view: TaskView| {
                                        tasks.update(|m| {
                                            m.insert(view.id.clone(), view);
                                        });
                                    })
                                    on_delete=Callback::new(move |id: String| {
                                        order.update(|o| o.retain(|i| *i != id));
                                        tasks.update(|m| {
                                            m.remove(&id);
                                        });
                                    })
                                />
                            </li>
                        }
                    }
                </For>
            </ul>
        })
    };
    view! {
        {cards}
        {move || more_error.get().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        {move || {
            more.get()
                .then(|| {
                    view! {
                        <p class="more">
                            <a
                                class="button"
                                href=move || cursor.get().map(|c| format!("/history?cursor={c}"))
                                on:click=load_more
                                aria-disabled=move || loading_more.get().then_some("true")
                            >
                                {move || if loading_more.get() { "Loading…" } else { "Load more" }}
                            </a>
                        </p>
                    }
                })
        }}
    }
}
