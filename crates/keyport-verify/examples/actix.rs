//! A resource server that accepts Keyport's tokens, in a few lines.
//!
//!     ISSUER=http://127.0.0.1:8080 LISTEN=127.0.0.1:8081 \
//!         cargo run -p keyport-verify --features actix --example actix
//!
//! `GET /protected` needs a token with `reports:read` and answers
//! `{"sub": …}`; `AUDIENCE` defaults to Keyport's `keyport-api`.

use actix_web::{App, HttpResponse, HttpServer, web};
use keyport_verify::Verifier;
use keyport_verify::actix::BearerClaims;

async fn protected(token: BearerClaims) -> actix_web::Result<HttpResponse> {
    token.require_scope("reports:read")?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sub": token.sub })))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let issuer = std::env::var("ISSUER").expect("ISSUER: Keyport's issuer URL");
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8081".to_owned());
    let audience = std::env::var("AUDIENCE").unwrap_or_else(|_| "keyport-api".to_owned());
    let verifier = Verifier::discover(issuer, audience)
        .await
        .map_err(std::io::Error::other)?;
    println!("listening on {listen}");
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(verifier.clone()))
            .route("/protected", web::get().to(protected))
    })
    .bind(listen)?
    .run()
    .await
}
