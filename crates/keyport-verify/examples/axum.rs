//! A resource server that accepts Keyport's tokens, in a few lines of axum.
//!
//!     ISSUER=http://127.0.0.1:8080 LISTEN=127.0.0.1:8082 \
//!         cargo run -p keyport-verify --features axum --example axum
//!
//! `GET /protected` needs a token with `reports:read` and answers
//! `{"sub": …}`; `GET /public` answers `{"sub": null}` to anyone (what
//! `benches/resource_server.sh` compares the protected route with).
//! `AUDIENCE` defaults to Keyport's `keyport-api`.

use axum::routing::get;
use axum::{Json, Router};
use keyport_verify::axum::RequireToken;
use keyport_verify::{Authenticated, Verifier};

async fn protected(token: Authenticated) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": token.sub }))
}

async fn public() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sub": null }))
}

/// The service: one route behind the token check, one open.
pub fn router(verifier: Verifier) -> Router {
    Router::new()
        .route(
            "/protected",
            get(protected).layer(RequireToken::new(verifier).scope("reports:read")),
        )
        .route("/public", get(public))
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
