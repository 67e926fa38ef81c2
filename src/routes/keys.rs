//! The key management API (session, access token or key), every operation
//! needing `keys:manage`; members act on their own keys, admins on all of
//! their company's:
//! - `GET    /api/v1/keys`                       admins: the tenant's keys; members: their own; `?label=k=v`
//! - `POST   /api/v1/keys`                       returns the secret once
//! - `GET    /api/v1/keys/{id}`
//! - `PATCH  /api/v1/keys/{id}`                  name, description, labels, allowed_sources, rate_limit, require_dpop, tls_client_auth, tls_client_certificates
//! - `POST   /api/v1/keys/{id}/roll`             the owner only; returns the new secret once
//! - `POST   /api/v1/keys/{id}/disable`          refused everywhere at once, until enabled
//! - `POST   /api/v1/keys/{id}/enable`
//! - `POST   /api/v1/keys/{id}/revoke`           always works; the webhook mark moves on
//! - `POST   /api/v1/keys/{id}/webhook-signing`  moves the "signs webhooks" mark here
//! - `DELETE /api/v1/keys/{id}`                  body `{"confirm": "<phrase>"}`
//!
//! A key's public keys (`private_key_jwt`) are managed in `public_keys.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::doc;
use super::error::ApiError;
use super::{AppState, Caller};
use crate::domain::RateLimit;
use crate::service::ServiceError;
use crate::service::keys::{
    self, ClientAuthSetup, CreatedClient, CreatedKey, KeyChange, KeyControls, KeyListing,
    NewKeyRequest,
};

pub(super) const MANAGEMENT_BODY_LIMIT: usize = 64 * 1024;

/// The `label` filters of a listing (repeatable); `api_key` is the
/// credential (`allow_api_key_query`), read by `Caller`; nothing else.
fn label_filters(req: &HttpRequest) -> Result<Vec<String>, ApiError> {
    let query = super::query_without_signature(req);
    let query = query.as_ref();
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}"))
    })?;
    let mut labels = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "label" => labels.push(value),
            "api_key" => {}
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "unknown query parameter `{}`: filter with label=name=value",
                        crate::domain::redact_credentials(other)
                            .chars()
                            .take(40)
                            .collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(labels)
}

/// Admins: every key of the tenant; members: their own. Never a secret.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    operation_id = "listKeys",
    tag = "keys",
    params(
        ("label" = Option<Vec<String>>, Query, explode = true, description = "Only keys carrying this label, as `name=value` (e.g. `env=prod`); repeat it to require several"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The keys", body = doc::KeyList),
        doc::CallerErrors,
        (status = 422, response = doc::Unprocessable),
    )
)]
pub async fn list(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let labels = label_filters(&req)?;
    let keys = keys::list_keys_labelled(&state.service, &caller, KeyListing::All, &labels).await?;
    Ok(HttpResponse::Ok().json(json!({ "keys": keys })))
}

/// The answer that carries a new secret: 201, never cached.
fn created_with_secret(created: &CreatedKey) -> Result<HttpResponse, ApiError> {
    let mut doc = serde_json::to_value(&created.key).map_err(|_| ApiError::internal())?;
    doc["client_secret"] = created.secret.expose().into();
    doc["webhook_signing_key"] = created.webhook_signing_key.to_whsec().into();
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(doc))
}

/// The answer to a creation: 201, never cached; the secret (if the key
/// has one) and the public keys registered with it.
fn created_client(created: &CreatedClient) -> Result<HttpResponse, ApiError> {
    let mut doc = serde_json::to_value(&created.key).map_err(|_| ApiError::internal())?;
    if let Some(secret) = &created.secret {
        doc["client_secret"] = secret.expose().into();
    }
    doc["webhook_signing_key"] = created.webhook_signing_key.to_whsec().into();
    if !created.public_keys.is_empty() {
        doc["public_keys"] =
            serde_json::to_value(&created.public_keys).map_err(|_| ApiError::internal())?;
    }
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(doc))
}

/// A rate as JSON: `{"requests": 600, "per_seconds": 60, "burst": 100}`.
/// Signed, so a negative value is answered with what is wrong with it.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RateLimit)]
pub(super) struct RateLimitBody {
    /// Requests per period, 1 to 1000000.
    #[schema(minimum = 1, maximum = 1000000, examples(600))]
    requests: i64,
    /// The period in seconds, 1 to 86400.
    #[schema(minimum = 1, maximum = 86400, examples(60))]
    per_seconds: i64,
    /// Requests allowed at once, 1 to 10000 (default: `requests`, at most 10000).
    #[schema(minimum = 1, maximum = 10000, examples(100))]
    burst: Option<i64>,
}

impl RateLimitBody {
    /// The domain's rate, or 422 saying what is wrong with this one.
    pub(super) fn parse(self, field: &str) -> Result<RateLimit, ApiError> {
        RateLimit::new(self.requests, self.per_seconds, self.burst)
            .map_err(|e| ServiceError::Invalid(format!("{field}: {e}")).into())
    }
}

/// A member that may be absent (leave as is), `null` (remove) or a value:
/// serde's `Option` alone cannot tell the first two apart.
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Labels as a JSON object, in the pairs the service takes.
fn label_pairs(labels: Option<BTreeMap<String, String>>) -> Option<Vec<(String, String)>> {
    labels.map(|labels| labels.into_iter().collect())
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
    /// What the key is for, at length (at most 500 characters; no control characters).
    #[schema(max_length = 500)]
    description: Option<String>,
    /// Up to 10 labels: names of 1 to 32 of `a-z 0-9 _ . -`, values of 1 to 64 printable characters.
    labels: Option<BTreeMap<String, String>>,
    /// Up to 20 CIDR ranges (IPv4 or IPv6, none overlapping) the key may be used from; absent or empty: anywhere.
    #[schema(max_items = 20, examples(json!(["10.0.0.0/8", "2001:db8::/32"])))]
    allowed_sources: Option<Vec<String>>,
    /// The key's own rate for reports and webhooks; absent: the company's
    /// default (if any). A member may not go above the default.
    rate_limit: Option<RateLimitBody>,
    /// Allow AWS Signature Version 4 requests: the client ID is the access
    /// key ID, the secret the secret access key. The secret is then kept,
    /// sealed under the master key, since verifying a signature needs it;
    /// otherwise only its digest is stored. Default false.
    sigv4: Option<bool>,
    /// `false`: the key gets no secret (none is shown or kept) and
    /// authenticates only with `private_key_jwt`, so it needs `public_keys`.
    /// Default true.
    client_secret: Option<bool>,
    /// Public keys (JWKs: ES256, EdDSA, RS256; at most 5) for
    /// `private_key_jwt` client authentication (RFC 7523).
    #[schema(max_items = 5, value_type = Option<Vec<Object>>)]
    public_keys: Option<Vec<serde_json::Value>>,
    /// Require a DPoP proof (RFC 9449) with every token request: the key's
    /// tokens are then always bound to the client's key. Default false.
    require_dpop: Option<bool>,
    /// RFC 8705 `tls_client_auth`: the key authenticates with a certificate
    /// issued by a CA in `tls_client_ca_file` that shows this subject:
    /// `subject_dn:<DN>` (RFC 4514), or one subject alternative name as
    /// `san_dns:<name>`, `san_uri:<URI>`, `san_ip:<address>` or
    /// `san_email:<address>`.
    #[schema(examples("san_dns:erp.example.com"))]
    tls_client_auth: Option<String>,
    /// RFC 8705 `self_signed_tls_client_auth`: certificates the key
    /// accepts, each a PEM certificate or its `x5t#S256` thumbprint (at
    /// most 5; only thumbprints are kept).
    #[schema(max_items = 5)]
    tls_client_certificates: Option<Vec<String>>,
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
        (status = 201, description = "Created; `client_secret` is shown only here (absent with `\"client_secret\": false`)", body = doc::NewKey),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        doc::BodyErrors,
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
    let labels = label_pairs(body.labels);
    let rate_limit = body
        .rate_limit
        .map(|rate| rate.parse("rate_limit"))
        .transpose()?;
    let public_keys = body.public_keys.unwrap_or_default();
    let created = keys::create_client(
        &state.service,
        &caller,
        NewKeyRequest {
            owner_email: None,
            name: &body.name,
            scopes: scopes.as_deref(),
            expires_in: body.expires_in_seconds.map(Duration::from_secs),
            token_ttl: body.token_ttl_seconds.map(Duration::from_secs),
            sigv4: body.sigv4.unwrap_or(false),
        },
        KeyControls {
            description: body.description.as_deref(),
            labels: labels.as_deref(),
            allowed_sources: body.allowed_sources.as_deref(),
            rate_limit: rate_limit.map(Some),
            require_dpop: body.require_dpop,
            tls_client_auth: body.tls_client_auth.as_deref().map(Some),
            tls_client_certificates: body.tls_client_certificates.as_deref(),
        },
        ClientAuthSetup {
            secret: body.client_secret.unwrap_or(true),
            public_keys: &public_keys,
        },
    )
    .await?;
    created_client(&created)
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
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyChange)]
struct KeyChangeBody {
    /// A new name (trimmed; no control characters).
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// A new description; `""` removes it.
    #[schema(max_length = 500)]
    description: Option<String>,
    /// The whole new set of labels; `{}` removes them all.
    labels: Option<BTreeMap<String, String>>,
    /// The whole new allow-list (CIDR ranges); `[]`: anywhere.
    #[schema(max_items = 20)]
    allowed_sources: Option<Vec<String>>,
    /// The key's own rate; `null` removes it (the company's default
    /// applies). A member may not go above the default.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable)]
    rate_limit: Option<Option<RateLimitBody>>,
    /// Require a DPoP proof (RFC 9449) with every token request, or stop
    /// requiring it. Tokens issued before keep their form.
    require_dpop: Option<bool>,
    /// RFC 8705 `tls_client_auth` subject (see `createKey`); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable)]
    tls_client_auth: Option<Option<String>>,
    /// The whole new list of `self_signed_tls_client_auth` certificates
    /// (PEM or `x5t#S256`, at most 5); `[]` removes them. To rotate without
    /// downtime, add the new certificate first, then remove the old one.
    #[schema(max_items = 5)]
    tls_client_certificates: Option<Vec<String>>,
}

/// Changes a key's name, description, labels, allow-list or rate (the
/// members sent; the others stay). A new allow-list applies to the key's
/// next use and, at once, to its tokens at the management endpoints; a new
/// rate to the key presented directly at once, and to tokens issued from
/// now on.
#[utoipa::path(
    patch,
    path = "/api/v1/keys/{id}",
    operation_id = "changeKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    request_body = KeyChangeBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The changed key", body = crate::service::keys::KeySummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        doc::BodyErrors,
    )
)]
pub async fn change(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: KeyChangeBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let labels = label_pairs(body.labels);
    let rate_limit = match body.rate_limit {
        Some(Some(rate)) => Some(Some(rate.parse("rate_limit")?)),
        Some(None) => Some(None),
        None => None,
    };
    let key = keys::update_key(
        &state.service,
        &caller,
        &path,
        KeyChange {
            name: body.name.as_deref(),
            controls: KeyControls {
                description: body.description.as_deref(),
                labels: labels.as_deref(),
                allowed_sources: body.allowed_sources.as_deref(),
                rate_limit,
                require_dpop: body.require_dpop,
                tls_client_auth: body.tls_client_auth.as_ref().map(|s| s.as_deref()),
                tls_client_certificates: body.tls_client_certificates.as_deref(),
            },
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(key))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RollKeyRequest)]
pub(super) struct RollBody {
    /// Seconds the old key keeps working (default 86400, at most
    /// `max_roll_grace_seconds`, 604800 by default).
    #[schema(minimum = 1)]
    grace_seconds: Option<i64>,
}

/// Rolls a key (its owner only): creates its successor with the same name,
/// scopes, token lifetime, allow-list, description and labels, moves the
/// webhook-signing mark to it if the old key held it, and sets the old key
/// to expire when the grace period ends. Counts against the active-key
/// limit. The new secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/roll",
    operation_id = "rollKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    // A `ref` keeps the body optional without making `null` a valid body.
    request_body(content = ref("#/components/schemas/RollKeyRequest"), content_type = "application/json", description = "The grace period; leave the body (and Content-Type) out for 24 hours"),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "The new key; `client_secret` is shown only here", body = doc::NewKey),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        doc::BodyErrors,
    )
)]
pub async fn roll(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let grace_seconds = if req.headers().contains_key("content-type") {
        read_json::<RollBody>(&req, payload, MANAGEMENT_BODY_LIMIT)
            .await?
            .grace_seconds
    } else {
        None
    };
    let rolled = keys::roll_key(&state.service, &caller, &path, grace_seconds).await?;
    created_with_secret(&rolled.new)
}

/// Disables a key: refused everywhere at once, like a revoked key, until it
/// is enabled again. It keeps its webhook-signing mark.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/disable",
    operation_id = "disableKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Disabled", body = crate::service::keys::KeySummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
    )
)]
pub async fn disable(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = keys::disable_key(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(key))
}

/// Enables a disabled key again, at once. A revoked key cannot be enabled.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/enable",
    operation_id = "enableKey",
    tag = "keys",
    params(("id" = String, Path, description = "The key's id or client ID")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Enabled", body = crate::service::keys::KeySummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
    )
)]
pub async fn enable(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = keys::enable_key(&state.service, &caller, &path).await?;
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
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
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
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
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
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        doc::BodyErrors,
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
