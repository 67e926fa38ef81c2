//! A resource server that accepts Keyport's tokens, in a few lines of axum.
//!
//!     ISSUER=http://127.0.0.1:8080 LISTEN=127.0.0.1:8082 \
//!         cargo run -p keyport-verify --features axum --example axum
//!
//! `GET /protected` needs a token with `reports:read` and answers
//! `{"sub": …}`; `AUDIENCE` defaults to Keyport's `keyport-api`.

use axum::routing::get;
use axum::{Json, Router};
use keyport_verify::axum::RequireToken;
use keyport_verify::{Authenticated, Verifier};

async fn protected(token: Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": token.sub }))
}

/// The service: one route, behind the token check.
pub fn router(verifier: Verifier) -> Router {
    Router::new().route(
        "/protected",
        get(protected).layer(RequireToken::new(verifier).scope("reports:read")),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let issuer = std::env::var("ISSUER").expect("ISSUER: Keyport's issuer URL");
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8082".to_owned());
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| "keyport-api".to_owned());
    let verifier = Verifier::discover(issuer, audience)
        .await
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {listen}");
    axum::serve(listener, router(verifier)).await
}
