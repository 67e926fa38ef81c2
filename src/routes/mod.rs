//! HTTP routes, one module per area, and the pieces they share.

mod body;
mod caller;
mod health;
mod keys;
mod oauth;
pub mod observe;
mod postman;
mod records;
mod session;
mod token_request;
mod users;
mod wellknown;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::Settings;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::revocation::RevokedTokens;
use crate::storage::Store;
use crate::throttle::FailureThrottle;
use crate::tokens::KeyRing;
use crate::usage::LastUsed;

pub use caller::{Caller, Credential};
pub use token_request::{
    ClientCredentials, TokenQuery, TokenRequest, parse_basic_authorization, parse_token_query,
    parse_token_request,
};

/// What every handler may reach.
pub struct AppState {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub settings: Arc<Settings>,
    pub last_used: LastUsed,
    pub revoked: RevokedTokens,
    pub throttle: FailureThrottle,
    pub metrics: Arc<Metrics>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/healthz").route(web::get().to(health::healthz)))
        .service(endpoint("/metrics").route(web::get().to(observe::metrics)))
        .service(endpoint("/readyz").route(web::get().to(health::readyz)))
        .service(endpoint("/oauth/token").route(web::post().to(oauth::token)))
        .service(endpoint("/oauth/introspect").route(web::post().to(oauth::introspect)))
        .service(endpoint("/oauth/revoke").route(web::post().to(oauth::revoke)))
        .service(
            endpoint("/.well-known/oauth-authorization-server")
                .route(web::get().to(wellknown::metadata)),
        )
        .service(endpoint("/.well-known/jwks.json").route(web::get().to(wellknown::jwks)))
        .service(endpoint("/api/v1/reports/{collection}").route(web::get().to(records::pull)))
        .service(
            endpoint("/api/v1/reports/{collection}/{record_id}")
                .route(web::get().to(records::pull_one)),
        )
        .service(endpoint("/api/v1/webhooks/{collection}").route(web::post().to(records::push)))
        .service(
            endpoint("/api/v1/postman/collection.json").route(web::get().to(postman::collection)),
        )
        .service(
            endpoint("/api/v1/session")
                .route(web::post().to(session::sign_in))
                .route(web::delete().to(session::sign_out)),
        )
        .service(
            endpoint("/api/v1/session/password").route(web::post().to(session::change_password)),
        )
        .service(
            endpoint("/api/v1/keys")
                .route(web::get().to(keys::list))
                .route(web::post().to(keys::create)),
        )
        .service(
            endpoint("/api/v1/keys/{id}")
                .route(web::get().to(keys::show))
                .route(web::delete().to(keys::delete)),
        )
        .service(endpoint("/api/v1/keys/{id}/revoke").route(web::post().to(keys::revoke)))
        .service(
            endpoint("/api/v1/keys/{id}/webhook-signing")
                .route(web::post().to(keys::mark_webhook_signing)),
        )
        .service(endpoint("/api/v1/users").route(web::get().to(users::list)))
        .service(endpoint("/api/v1/users/{id}/unlock").route(web::post().to(users::unlock)))
        .service(endpoint("/api/v1/tenant/policy").route(web::put().to(users::set_policy)))
        .service(endpoint("/api/v1/audit").route(web::get().to(users::audit)));
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
