//! The pages, one file each, the header, and the client-side polling they
//! share. Pages import the session (`crate::session`), never the shell.

pub mod account;
pub mod auth;
pub mod generator;
pub mod history;
pub mod nav;
pub mod password;
pub mod polling;
pub mod refused;
pub mod task_card;
pub mod verify;

use leptos::html::Input;
use leptos::prelude::*;

/// What an input of a form holds now (empty before it is mounted).
///
/// An island's form is a plain `<form action=… method="post">`, which
/// works without JavaScript; with it, the island's `on:submit` reads its
/// inputs with this and dispatches the server function itself, instead of
/// `ActionForm` decoding the form (which carries a form decoder and a
/// type-erased view into the browser bundle per form).
pub fn value_of(input: NodeRef<Input>) -> String {
    input.get_untracked().map(|i| i.value()).unwrap_or_default()
}
