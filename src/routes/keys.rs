//! The key management API (session, access token or key), every operation
//! needing `keys:manage`; members act on their own keys, admins on all of
//! their company's:
//! - `GET    /api/v1/keys`                       admins: the tenant's keys; members: their own
//! - `POST   /api/v1/keys`                       returns the secret once
//! - `GET    /api/v1/keys/{id}`
//! - `POST   /api/v1/keys/{id}/revoke`           always works; the webhook mark moves on
//! - `POST   /api/v1/keys/{id}/webhook-signing`  moves the "signs webhooks" mark here
//! - `DELETE /api/v1/keys/{id}`                  body `{"confirm": "<phrase>"}`

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::error::ApiError;
use super::openapi as doc;
use super::{AppState, Caller};
use crate::service::keys::{self, KeyListing, NewKeyRequest};

pub(super) const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;

/// Admins: every key of the tenant; members: their own. Never a secret.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    operation_id = "listKeys",
    tag = "keys",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The keys", body = doc::KeyList),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = keys::list_keys(&state.service, &caller, KeyListing::All).await?;
    Ok(HttpResponse::Ok().json(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewKeyRequest)]
struct NewKeyBody {
    /// What the key is for, e.g. "ERP nightly sync" (trimmed; no control characters).
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// Scopes within the owner's permissions; absent: all of them.
    #[schema(min_items = 1)]
    scopes: Option<Vec<String>>,
    /// Seconds from now until the key stops working (at most ten years).
    #[schema(minimum = 1, maximum = 315360000)]
    expires_in_seconds: Option<u64>,
    /// Lifetime of the key's access tokens, at most `max_token_ttl_seconds`.
    #[schema(minimum = 1)]
    token_ttl_seconds: Option<u64>,
}

/// Creates a key for the caller (needs `keys:manage`, at most
/// `max_active_keys_per_user` active keys). The secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    operation_id = "createKey",
    tag = "keys",
    request_body = NewKeyBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Created; `client_secret` is shown only here", body = doc::NewKey),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 415, response = doc::UnsupportedMediaType),
        (status = 422, response = doc::Unprocessable),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: NewKeyBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let scopes = body.scopes.map(|s| s.join(" "));
    let created = keys::create_key(
        &state.service,
        &caller,
        NewKeyRequest {
            owner_email: None,
            name: &body.name,
            scopes: scopes.as_deref(),
            expires_in: body.expires_in_seconds.map(Duration::from_secs),
            token_ttl: body.token_ttl_seconds.map(Duration::from_secs),
        },
    )
    .await?;
    let mut doc = serde_json::to_value(&created.key).map_err(|_| ApiError::internal())?;
    doc["client_secret"] = created.secret.expose().into();
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(doc))
}

/// One key, by id or client ID.
#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}",
    operation_id = "showKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The key", body = crate::service::keys::KeySummary),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn show(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = keys::find_key(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(key))
}

/// Revokes a key for good, at once; the row stays for the audit trail. If
/// it signed its owner's webhooks, the mark moves to the owner's newest
/// other active key (or the owner is left without one).
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/revoke",
    operation_id = "revokeKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Revoked", body = crate::service::keys::KeySummary),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn revoke(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = keys::revoke_key(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(key))
}

/// This key now signs its owner's webhooks (the mark moves here).
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/webhook-signing",
    operation_id = "markWebhookSigning",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Marked", body = crate::service::keys::KeySummary),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn mark_webhook_signing(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = keys::mark_webhook_signing(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(key))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeleteKeyConfirmation)]
pub(super) struct DeleteBody {
    /// `delete <client_id>`
    confirm: String,
}

/// Deletes a key for good. Needs `{"confirm": "delete <client_id>"}`;
/// without it, the 409 answer carries `confirmation_phrase`.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    operation_id = "deleteKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    // A `ref` keeps the body optional without making `null` a valid body.
    request_body(content = ref("#/components/schemas/DeleteKeyConfirmation"), content_type = "application/json", description = "The confirmation; leave the body (and Content-Type) out to learn the phrase"),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 415, response = doc::UnsupportedMediaType),
        (status = 422, response = doc::Unprocessable),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn delete(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Without a body, the answer tells the caller the phrase to send.
    let confirmation = if req.headers().contains_key("content-type") {
        Some(
            read_json::<DeleteBody>(&req, payload, MANAGEMENT_BODY_LIMIT)
                .await?
                .confirm,
        )
    } else {
        None
    };
    keys::delete_key(&state.service, &caller, &path, confirmation.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}
