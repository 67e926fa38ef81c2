//! Keyport: client credentials in, short-lived JWT access tokens out.

// Outside tests a panic is a bug: errors are returned and mapped to HTTP.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod postman;
pub mod push_queue;
pub mod revocation;
pub mod routes;
pub mod sessions;
pub mod startup;
pub mod storage;
pub mod throttle;
pub mod tokens;
pub mod usage;
