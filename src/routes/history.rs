//! `/history`: every task, newest first, a page at a time. All processing
//! tasks on the page update live through one batched status call per
//! interval, keyed on the set of their ids.

use leptos::either::Either;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

use super::polling::{LiveTasks, unfinished, use_task_poller};
use super::refused::{Form, refused};
use super::task_card::{ImageOffers, TaskCard, clock};
use crate::api::{generator_setup, list_history};
use crate::model::{HistoryPage as Page, TaskView, UpscaleOffer, VaryOffer};
use crate::session::{RequireUser, loaded};

/// The page; its data is read once per render, here (see `RequireUser`).
#[component]
pub fn HistoryPage() -> impl IntoView {
    // `?cursor=` is where "Load more" leads without JavaScript.
    let start = use_query_map().with_untracked(|q| q.get("cursor"));
    let first = OnceResource::new(list_history(start));
    let setup = OnceResource::new(generator_setup());
    // An "Upscale" or "Vary" posted without JavaScript that was refused.
    let refused = refused(Form::Upscale).or_else(|| refused(Form::Vary));
    view! {
        <RequireUser>
            <section class="history">
                <h1>"History"</h1>
                {refused.clone().map(|e| view! { <p class="form-error" role="alert">{e.message}</p> })}
                {move || {
                    let setup = loaded(setup).and_then(|s| s.ok());
                    let interval = setup.as_ref().map_or(3000, |s| s.poll_interval_ms);
                    let (upscale, vary) = setup.map_or((None, None), |s| (s.upscale, s.vary));
                    loaded(first)
                        .map(|r| match r {
                            Ok(page) => {
                                Either::Left(view! { <HistoryGrid first=page interval_ms=interval upscale vary /> })
                            }
                            Err(e) => Either::Right(view! { <p class="form-error" role="alert">{e.message}</p> }),
                        })
                }}
            </section>
        </RequireUser>
    }
}

/// The cards, live: an island with the first page of tasks as its props;
/// `upscale` and `vary`: what "Upscale" and "Vary" offer, when the site
/// does.
#[island(lazy)]
fn HistoryGrid(first: Page, interval_ms: u64, upscale: Option<UpscaleOffer>, vary: Option<VaryOffer>) -> impl IntoView {
    crate::island_hydrated();
    // Every task on the page by id, and their order (newest first).
    let order = RwSignal::new(first.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>());
    let tasks = LiveTasks::new(first.items);
    let cursor = RwSignal::new(first.next_cursor);
    let loading_more = RwSignal::new(false);
    let more_error = RwSignal::new(None::<String>);

    // The processing ids, in page order (one set always gives the same
    // sequence, without sorting): the interval restarts whenever the set
    // changes, not only its size.
    let processing = Memo::new(move |_| unfinished(tasks, order.get()));
    use_task_poller(tasks, processing, interval_ms, Callback::new(|_| {}));
    // An upscale or a variation started here shows first.
    ImageOffers::provide(
        upscale,
        vary,
        Callback::new(move |view: TaskView| {
            order.update(|o| o.insert(0, view.id.clone()));
            tasks.set(view);
        }),
    );

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
                    tasks.extend(page.items);
                    cursor.set(page.next_cursor);
                    more_error.set(None);
                }
                Err(e) => more_error.set(Some(e.message)),
            }
            loading_more.set(false);
        });
    };

    let now = clock();
    // A task gone from the server (deleted elsewhere) leaves the grid.
    let shown = Memo::new(move |_| order.get().into_iter().filter(|id| tasks.contains(id)).collect::<Vec<_>>());
    let empty = Memo::new(move |_| shown.with(Vec::is_empty));
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
                <For each=move || shown.get() key=|id| id.clone() let:id>
                    {
                        // Memoized: a poll re-renders only the cards it changed.
                        let task = Memo::new({
                            let id = id.clone();
                            move |_| tasks.get(&id).unwrap_or_else(|| TaskView::pending(id.clone(), String::new(), String::new(), 0, 0))
                        });
                        view! {
                            <li>
                                <TaskCard
                                    task
                                    now
                                    compact=true
                                    on_change=Callback::new(move |view: TaskView| tasks.set(view))
                                    on_delete=Callback::new(move |id: String| {
                                        order.update(|o| o.retain(|i| *i != id));
                                        tasks.remove(&id);
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
