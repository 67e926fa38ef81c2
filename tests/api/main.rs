//! One integration-test binary (linking one binary per file is slow).

mod helpers;

mod attacks;
mod audit;
mod authorization;
mod cli;
mod console;
mod console_exchange;
mod console_key_rates;
mod console_public_keys;
mod console_webhooks;
mod credential_cache;
mod dpop;
mod faults;
mod fuzz;

mod integrator;
mod introspection;
mod key_controls;
mod keys_api;
mod logs;
mod migrations;
mod openapi;
mod openid_client;
mod operations;
mod postman;
mod presentation;
mod private_key_jwt;
mod private_key_jwt_clients;
mod privilege_defects;
mod public_key_owners;
mod python_client;
mod rate_limits;
mod resources;
mod sealed_storage;
mod sessions;
mod signed_webhooks;
mod sigv4;
mod tls;
mod token;
mod token_exchange;
mod tokens;
mod webhook_endpoint_limits;
mod webhook_owners;
mod webhooks;
