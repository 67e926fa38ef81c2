//! `GET /healthz` (process up) and `GET /readyz` (database reachable, signing
//! key loaded). Neither needs a token.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "signing_key": state.keys.signing_kid(),
    })))
}
