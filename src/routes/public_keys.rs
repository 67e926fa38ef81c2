//! A key's public keys for `private_key_jwt` client authentication (RFC
//! 7523), each operation needing `keys:manage` (members: their own keys;
//! admins: their company's):
//! - `GET    /api/v1/keys/{id}/public-keys`
//! - `POST   /api/v1/keys/{id}/public-keys`               body: one public JWK
//! - `DELETE /api/v1/keys/{id}/public-keys/{thumbprint}`  never a secretless key's last one

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::body::read_json;
use super::doc;
use super::error::ApiError;
use super::keys::MANAGEMENT_BODY_LIMIT;
use super::{AppState, Caller};
use crate::service::public_keys;

/// The key's public keys, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/keys/{id}/public-keys",
    operation_id = "listPublicKeys",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The key's public keys", body = doc::PublicKeyList),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn list(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let keys = public_keys::list_public_keys(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(json!({ "public_keys": keys })))
}

/// Registers a public key (a JWK: EC P-256 for ES256, OKP Ed25519 for
/// EdDSA, RSA 2048 to 8192 bits for RS256; private members refused) with
/// the key: from now on the key may authenticate with assertions it
/// signs. At most 5 per key; each thumbprint and `kid` once.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/public-keys",
    operation_id = "addPublicKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    request_body(content = doc::PublicJwkBody, content_type = "application/json", description = "The public key, as a JWK (RFC 7517)"),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Registered", body = crate::service::public_keys::PublicKeySummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        doc::BodyErrors,
    )
)]
pub async fn add(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let jwk: Value = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let added = public_keys::add_public_key(&state.service, &caller, &path, &jwk).await?;
    Ok(HttpResponse::Created().json(added))
}

/// Removes a public key: assertions it signs are refused from now on. The
/// last public key of a key without a secret is not removed (409).
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}/public-keys/{thumbprint}",
    operation_id = "removePublicKey",
    tag = "keys",
    params(
        ("id" = String, Path, description = "The key's id or client ID"),
        ("thumbprint" = String, Path, description = "The public key's RFC 7638 thumbprint"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Removed; the key as it was", body = crate::service::public_keys::PublicKeySummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
    )
)]
pub async fn remove(
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (key, thumbprint) = path.into_inner();
    let removed =
        public_keys::remove_public_key(&state.service, &caller, &key, &thumbprint).await?;
    Ok(HttpResponse::Ok().json(removed))
}
