//! The pages, one file each, the header, and the client-side polling they
//! share. Pages import the session (`crate::session`), never the shell.

pub mod account;
pub mod auth;
pub mod generator;
pub mod history;
pub mod nav;
pub mod polling;
pub mod task_card;
