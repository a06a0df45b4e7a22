//! The pages, one file each, and the client-side polling they share.

pub mod auth;
pub mod generator;
pub mod history;
pub mod polling;
pub mod task_card;
