//! Outbound webhook endpoints, every operation needing `webhooks:manage`;
//! members manage their own endpoints, admins their company's:
//! - `GET    /api/v1/webhook-endpoints`
//! - `POST   /api/v1/webhook-endpoints`                       `{"url", "events", "collections"?, "description"?}`
//! - `GET    /api/v1/webhook-endpoints/{id}`
//! - `PATCH  /api/v1/webhook-endpoints/{id}`                  any of url, events, collections, description, enabled
//! - `DELETE /api/v1/webhook-endpoints/{id}`
//! - `POST   /api/v1/webhook-endpoints/{id}/test`             queues a `webhook.test` event
//! - `GET    /api/v1/webhook-endpoints/{id}/attempts`         newest first, `?limit=` (1 to 200)
//! - `POST   /api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver`

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::body::read_json;
use super::doc;
use super::error::ApiError;
use super::keys::MANAGEMENT_BODY_LIMIT;
use super::{AppState, Caller};
use crate::service::webhooks::{self, AttemptSummary, EndpointRequest, EndpointSummary};

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    endpoints: Vec<EndpointSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    attempts: Vec<AttemptSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QueuedEvent {
    /// The `webhook-id` the test delivery carries.
    event_id: String,
}

/// The company's endpoints (admins), or the caller's own (members).
#[utoipa::path(
    get,
    path = "/api/v1/webhook-endpoints",
    operation_id = "listWebhookEndpoints",
    tag = "webhooks",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        doc::CallerErrors,
    )
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let endpoints = webhooks::list_endpoints(&state.service, &caller).await?;
    Ok(HttpResponse::Ok().json(json!({ "endpoints": endpoints })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhookEndpointRequest)]
struct NewEndpointBody {
    /// `https://…` on a public address (see the SSRF settings).
    url: String,
    /// Any of `record.created`, `key.created`, `key.revoked`, `key.deleted`,
    /// `key.expiring`, `user.locked`.
    events: Vec<String>,
    /// For `record.created`: only these collections. Absent or empty: all.
    #[serde(default)]
    collections: Vec<String>,
    description: Option<String>,
}

/// Registers an endpoint; its deliveries are signed with the caller's key
/// that holds the webhook-signing mark.
#[utoipa::path(
    post,
    path = "/api/v1/webhook-endpoints",
    operation_id = "createWebhookEndpoint",
    tag = "webhooks",
    request_body = NewEndpointBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Registered", body = EndpointSummary),
        doc::CallerErrors,
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
    let body: NewEndpointBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let endpoint = webhooks::create_endpoint(
        &state.service,
        &caller,
        EndpointRequest {
            url: Some(&body.url),
            description: Some(body.description.as_deref()),
            events: Some(&body.events),
            collections: Some(&body.collections),
            enabled: None,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(endpoint))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhook-endpoints/{id}",
    operation_id = "getWebhookEndpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The endpoint", body = EndpointSummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn show(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = webhooks::get_endpoint(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointChange)]
struct EndpointChangeBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    collections: Option<Vec<String>>,
    /// `null` or `""` removes it.
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    /// `true` enables (and forgets past failures); `false` disables.
    enabled: Option<bool>,
}

/// Tells a member that is present (maybe `null`) from one that is absent.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Changes what the body names; enabling clears the failure record.
#[utoipa::path(
    patch,
    path = "/api/v1/webhook-endpoints/{id}",
    operation_id = "changeWebhookEndpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    request_body = EndpointChangeBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointSummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
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
    let body: EndpointChangeBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let endpoint = webhooks::update_endpoint(
        &state.service,
        &caller,
        &path,
        EndpointRequest {
            url: body.url.as_deref(),
            description: body.description.as_ref().map(|d| d.as_deref()),
            events: body.events.as_deref(),
            collections: body.collections.as_deref(),
            enabled: body.enabled,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(endpoint))
}

#[utoipa::path(
    delete,
    path = "/api/v1/webhook-endpoints/{id}",
    operation_id = "deleteWebhookEndpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "Deleted, with its pending deliveries and attempts"),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn delete(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    webhooks::delete_endpoint(&state.service, &caller, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Queues a signed `webhook.test` event for this endpoint alone.
#[utoipa::path(
    post,
    path = "/api/v1/webhook-endpoints/{id}/test",
    operation_id = "testWebhookEndpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 202, description = "Queued", body = QueuedEvent),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn test(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let event_id = webhooks::send_test_event(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Accepted().json(QueuedEvent { event_id }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AttemptQuery {
    /// How many attempts, newest first (1 to 200, default 50).
    limit: Option<u32>,
}

/// The endpoint's latest attempts: time, status, latency, the first 1 KiB
/// of the answer.
#[utoipa::path(
    get,
    path = "/api/v1/webhook-endpoints/{id}/attempts",
    operation_id = "listWebhookAttempts",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id"), AttemptQuery),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Attempts, newest first", body = AttemptList),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn attempts(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Parsed by hand so a presigned URL's X-Amz-* parameters are left out.
    let query: AttemptQuery = serde_urlencoded::from_str(&super::query_without_signature(&req))
        .map_err(|e| {
            ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}"))
        })?;
    let attempts =
        webhooks::list_attempts(&state.service, &caller, &path, query.limit.unwrap_or(50)).await?;
    Ok(HttpResponse::Ok().json(json!({ "attempts": attempts })))
}

/// Sends one delivery again, now, with the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/api/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver",
    operation_id = "redeliverWebhook",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint's id"),
        ("delivery_id" = String, Path, description = "A delivery of that endpoint (from its attempts)"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 202, description = "Queued again"),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn redeliver(
    caller: Caller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (endpoint_id, delivery_id) = path.into_inner();
    webhooks::redeliver(&state.service, &caller, &endpoint_id, &delivery_id).await?;
    Ok(HttpResponse::Accepted().json(json!({ "delivery_id": delivery_id, "queued": true })))
}
