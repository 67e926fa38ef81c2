//! Tenant administration (admins only):
//! - `GET  /api/v1/users`              users with their sign-in locks
//! - `POST /api/v1/users/{id}/unlock`  lifts a sign-in lock
//! - `PUT  /api/v1/tenant/policy`      `{"api_only_users": bool}`
//! - `GET  /api/v1/audit`              the audit trail, filtered and paginated

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::openapi as doc;
use super::{AppState, Caller};
use crate::admin;
use crate::error::ApiError;
use crate::storage::AuditQuery;

/// The tenant's users with their sign-in locks. Admins only.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "listUsers",
    tag = "admin",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The users", body = doc::UserList),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let users = admin::list_users(&state.store, &caller.actor(), &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

/// Lifts a user's sign-in lock. Admins only.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/unlock",
    operation_id = "unlockUser",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (or email)")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Unlocked", body = doc::Unlocked),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn unlock(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    admin::unlock_user(&state.store, &caller.actor(), &path).await?;
    Ok(HttpResponse::Ok().json(json!({ "unlocked": true })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantPolicyUpdate)]
struct PolicyBody {
    /// Users holding an active key may no longer sign in with a password.
    api_only_users: bool,
}

/// Sets the tenant's sign-in policy. Admins only.
#[utoipa::path(
    put,
    path = "/api/v1/tenant/policy",
    operation_id = "setTenantPolicy",
    tag = "admin",
    request_body = PolicyBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The policy now in force", body = doc::TenantPolicy),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 415, response = doc::UnsupportedMediaType),
        (status = 422, response = doc::Unprocessable),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn set_policy(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: PolicyBody = read_json(&req, payload, 1024).await?;
    admin::set_api_only_users(
        &state.store,
        &caller.actor(),
        &caller.tenant_id,
        body.api_only_users,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "api_only_users": body.api_only_users })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The tenant's audit trail, oldest first. Admins only.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "listAudit",
    tag = "admin",
    params(
        ("action" = Option<String>, Query, description = "Only this action, e.g. `key.create`"),
        ("actor" = Option<String>, Query, description = "Only events by this actor"),
        ("target" = Option<String>, Query, description = "Only events about this target"),
        ("since" = Option<i64>, Query, description = "Unix seconds, inclusive"),
        ("until" = Option<i64>, Query, description = "Unix seconds, inclusive"),
        ("limit" = Option<u32>, Query, description = "Page size (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "A page of events", body = doc::AuditPage),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthenticated),
        (status = 403, response = doc::Forbidden),
        (status = 503, response = doc::Unavailable),
    )
)]
pub async fn audit(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let params: AuditParams = serde_urlencoded::from_str(req.query_string()).map_err(|e| {
        ApiError::bad_request("invalid_query", format!("invalid query parameters: {e}"))
    })?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let after_id = match params.cursor.as_deref() {
        None => None,
        Some(raw) => Some(
            URL_SAFE_NO_PAD
                .decode(raw)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|id| uuid::Uuid::parse_str(id).is_ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "the cursor is not one this API returned",
                    )
                })?,
        ),
    };
    let (events, has_more) = state
        .store
        .list_audit(&AuditQuery {
            tenant_id: &caller.tenant_id,
            action: params.action.as_deref(),
            actor: params.actor.as_deref(),
            target: params.target.as_deref(),
            since: params.since,
            until: params.until,
            after_id: after_id.as_deref(),
            limit,
        })
        .await?;
    let next_cursor = has_more
        .then(|| events.last().map(|e| URL_SAFE_NO_PAD.encode(&e.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next_cursor": next_cursor })))
}
