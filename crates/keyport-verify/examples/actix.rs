//! A resource server that accepts Keyport's tokens, in a few lines.
//!
//!     ISSUER=http://127.0.0.1:8080 LISTEN=127.0.0.1:8081 \
//!         cargo run -p keyport-verify --features actix --example actix
//!
//! `GET /protected` needs a token with `reports:read` and answers
//! `{"sub": …}`; `AUDIENCE` defaults to Keyport's `keyport-api`.

use actix_web::{App, HttpResponse, HttpServer, web};
use keyport_verify::{Authenticated, Verifier};

async fn protected(token: Authenticated) -> actix_web::Result<HttpResponse> {
    token.require_scope("reports:read")?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sub": token.sub })))
}

/// The service: the verifier and one route.
pub fn configure(verifier: Verifier) -> impl Fn(&mut web::ServiceConfig) + Clone {
    move |config| {
        config
            .app_data(web::Data::new(verifier.clone()))
            .route("/protected", web::get().to(protected));
    }
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
    let service = configure(verifier);
    HttpServer::new(move || App::new().configure(service.clone()))
        .bind(listen)?
        .run()
        .await
}
