//! HTTP routes, one module per area, and the pieces they share.

mod body;
mod health;
mod oauth;
mod records;
mod token_request;
mod wellknown;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::Settings;
use crate::error::ApiError;
use crate::storage::Store;
use crate::tokens::KeyRing;

pub use token_request::{ClientCredentials, TokenRequest, parse_basic_authorization, parse_token_request};

/// What every handler may reach.
pub struct AppState {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub settings: Arc<Settings>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/healthz").route(web::get().to(health::healthz)))
        .service(endpoint("/readyz").route(web::get().to(health::readyz)))
        .service(endpoint("/oauth/token").route(web::post().to(oauth::token)))
        .service(
            endpoint("/.well-known/oauth-authorization-server")
                .route(web::get().to(wellknown::metadata)),
        )
        .service(endpoint("/.well-known/jwks.json").route(web::get().to(wellknown::jwks)))
        .service(
            endpoint("/api/v1/reports/{collection}").route(web::get().to(records::pull)),
        )
        .service(
            endpoint("/api/v1/reports/{collection}/{record_id}")
                .route(web::get().to(records::pull_one)),
        )
        .service(
            endpoint("/api/v1/webhooks/{collection}").route(web::post().to(records::push)),
        );
}

/// A resource whose unsupported methods answer 405 in the documented format.
fn endpoint(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not supported on {}", req.method(), req.path()),
    ))
}

/// The answer for paths no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found(format!(
        "no endpoint at {}",
        req.path().chars().take(200).collect::<String>()
    )))
}
