//! Keyport: client credentials in, short-lived JWT access tokens out.

pub mod admin;
pub mod cli;
pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod routes;
pub mod startup;
pub mod storage;
pub mod tokens;
