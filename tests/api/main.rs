//! Integration tests: the real app (SQLite file, local object store, the
//! built-in provider over HTTP) on a random port, driven over HTTP.

mod account;
mod accounts;
mod cancel;
mod cli;
mod clients;
mod helpers;
mod images;
mod inputs;
mod mail;
mod pages;
mod payments;
mod provider;
mod providers;
mod queue;
mod scaleout;
mod security;
mod sim;
mod storage;
mod tasks;
mod webhooks;
