//! The task the generator shows, live: the card's code in a WebAssembly
//! file of its own ([`live_task_card`]), fetched once there is a task to
//! show or a prompt is typed ([`CardCode`]); until it has arrived, a task
//! to resume is the server's HTML (the island's children).

use leptos::prelude::*;
#[cfg(feature = "hydrate")]
use leptos::task::spawn_local;

use crate::model::TaskView;
use crate::routes::task_card::TaskCard;

/// The live task card, in a WebAssembly file of its own: the generator's
/// page fetches it once it has a task to show, so a first visit fetches
/// only the form's code.
#[lazy]
fn live_task_card(task: Signal<TaskView>, now: Signal<i64>, on_change: Callback<TaskView>) -> AnyView {
    view! { <TaskCard task now on_change /> }.into_any()
}

/// Whether the card's code has arrived, and asking for it (at most once).
#[derive(Clone, Copy)]
pub struct CardCode {
    arrived: RwSignal<bool>,
    asked: StoredValue<bool>,
}

impl CardCode {
    pub fn new() -> Self {
        Self { arrived: RwSignal::new(false), asked: StoredValue::new(false) }
    }

    /// Starts fetching the card's code, unless it was asked for already.
    pub fn want(self) {
        if !self.asked.get_value() {
            self.asked.set_value(true);
            #[cfg(feature = "hydrate")]
            spawn_local(async move {
                __preload_live_task_card().await;
                self.arrived.set(true);
            });
        }
    }
}

/// The value of a future that has nothing left to wait for (a lazy
/// function whose code has arrived), or `None` if it still waits.
fn loaded<T>(future: impl std::future::Future<Output = T>) -> Option<T> {
    use std::task::{Context, Poll, Waker};
    match std::pin::pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// The shown task's card: the server's (`children`, for `resumed_id`) until
/// the live card's code has arrived, then the live one. The server's card
/// is removed, not only hidden, once it is no longer the one to show.
/// `on_change`: what a Cancel on the card answered.
#[component]
pub fn LiveTask(
    task: Memo<Option<TaskView>>,
    code: CardCode,
    resumed_id: Option<String>,
    now: ReadSignal<i64>,
    on_change: Callback<TaskView>,
    children: Children,
) -> impl IntoView {
    // The card is rebuilt only when another task is shown, not on every poll.
    let shown_id = Memo::new(move |_| task.with(|t| t.as_ref().map(|t| t.id.clone())));
    Effect::new(move |_| {
        if shown_id.with(Option::is_some) {
            code.want();
        }
    });
    let server_card_shown =
        Memo::new(move |_| !code.arrived.get() && shown_id.with(|s| s.is_some() && *s == resumed_id));
    let server_card = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        if !server_card_shown.get()
            && let Some(el) = server_card.get()
        {
            el.set_inner_html("");
        }
    });
    view! {
        <div node_ref=server_card hidden=move || !server_card_shown.get()>
            {children()}
        </div>
        {move || {
            let shown = shown_id.get().filter(|_| code.arrived.get());
            shown.and_then(|_| task.get_untracked()).and_then(|initial: TaskView| {
                let current = Signal::derive(move || task.get().unwrap_or_else(|| initial.clone()));
                // The code is here: the card is built at once.
                loaded(live_task_card(current, now.into(), on_change))
            })
        }}
    }
}
