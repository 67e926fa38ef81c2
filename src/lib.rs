//! Keyport: client credentials in, short-lived JWT access tokens out.

// Outside tests a panic is a bug: errors are returned and mapped to HTTP.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod issuer_keys;
pub mod mtls;
pub mod postman;
pub mod progress;
pub mod routes;
pub mod sealing;
pub mod service;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod webhooks;
