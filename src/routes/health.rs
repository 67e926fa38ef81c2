//! `GET /healthz` (process up) and `GET /readyz` (database reachable, signing
//! key loaded, and whether the credential cache is trusted). Neither needs a
//! token.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::doc;
use super::error::ApiError;

/// Liveness: 200 while the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "meta",
    responses((status = 200, description = "The process is up", body = doc::Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and a signing key is loaded. The
/// credential cache's state is reported but does not decide: while it is
/// `bypassed` (its listening connection lost) the instance still answers
/// correctly, reading the database for every key, so taking it out of the
/// load balancer would only lose capacity.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready to serve", body = doc::Readiness),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.service.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "signing_key": state.keys.signing_kid(),
        "credential_cache": state.service.credentials.state().as_str(),
    })))
}
