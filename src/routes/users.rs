//! Tenant administration:
//! - `GET   /api/v1/users`                `users:manage`: the company's users with their sign-in locks
//! - `POST  /api/v1/users`                `users:manage`: a new user, with a one-time set-password token
//! - `GET   /api/v1/users/{id}`           `users:manage`, or the user themself
//! - `PATCH /api/v1/users/{id}`           `users:manage`: role and permissions
//! - `POST  /api/v1/users/{id}/disable`   `users:manage`: their keys stop, their sessions end
//! - `POST  /api/v1/users/{id}/enable`    `users:manage`
//! - `POST  /api/v1/users/{id}/unlock`    `users:manage`: lifts a sign-in lock
//! - `PUT   /api/v1/tenant/policy`        `tenant:manage`: `{"api_only_users"?: bool, "default_rate_limit"?: {…} | null}`
//! - `GET   /api/v1/audit`                `audit:read`: the audit trail, filtered and paginated

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::body::read_json;
use super::doc;
use super::error::ApiError;
use super::keys::MANAGEMENT_BODY_LIMIT;
use super::{AppState, Caller};
use crate::domain::UserStatus;
use crate::service::audit::AuditFilter;
use crate::service::audit_trail;
use crate::service::{tenants, users};

/// The company's users with their sign-in locks (`users:manage`).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "listUsers",
    tag = "admin",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The users", body = doc::UserList),
        doc::CallerErrors,
    )
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let users = users::list_users(&state.service, &caller, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewUserRequest)]
struct NewUserBody {
    email: String,
    #[schema(examples("admin", "member"))]
    role: String,
    /// Granted permissions, e.g. `["reports:read", "keys:manage"]`. Admins
    /// hold `users:manage`, `tenant:manage` and `audit:read` through their role.
    #[serde(default)]
    permissions: Vec<String>,
}

/// Adds a user to the caller's company (`users:manage`). The answer carries
/// `set_password_token`, shown once: the new user sends it with a password
/// of their choice to `POST /api/v1/password` before it expires.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "createUser",
    tag = "admin",
    request_body = NewUserBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Created; `set_password_token` is shown only here", body = doc::NewUser),
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
    let body: NewUserBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let permissions = body.permissions.join(" ");
    let created = users::create_user(
        &state.service,
        &caller,
        users::NewUserRequest {
            tenant: None,
            email: &body.email,
            role: &body.role,
            permissions: &permissions,
        },
    )
    .await?;
    let mut doc = serde_json::to_value(&created.user).map_err(|_| ApiError::internal())?;
    doc["set_password_token"] = created.set_password_token.expose().into();
    doc["set_password_expires_at"] = created.set_password_expires_at.into();
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(doc))
}

/// One user (`users:manage`, or the user themself).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    operation_id = "showUser",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (or email)")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The user", body = crate::service::users::UserSummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn show(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = users::get_user(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserChange)]
struct UserChangeBody {
    #[schema(examples("admin", "member"))]
    role: Option<String>,
    /// Replaces the granted permissions.
    permissions: Option<Vec<String>>,
}

/// Changes a user's role and permissions (`users:manage`). The company's
/// last active admin cannot be demoted.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    operation_id = "changeUser",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (or email)")),
    request_body = UserChangeBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The user as changed", body = crate::service::users::UserSummary),
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
    let body: UserChangeBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let permissions = body.permissions.map(|p| p.join(" "));
    let user = users::change_user(
        &state.service,
        &caller,
        &path,
        users::UserChange {
            role: body.role.as_deref(),
            permissions: permissions.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(user))
}

async fn set_status(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
    status: UserStatus,
) -> Result<HttpResponse, ApiError> {
    let user = users::set_user_status(&state.service, &caller, &path, status).await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Disables a user (`users:manage`): their keys stop getting tokens and
/// their sessions end, for good.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/disable",
    operation_id = "disableUser",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (or email)")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Disabled", body = crate::service::users::UserSummary),
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
    set_status(caller, path, state, UserStatus::Disabled).await
}

/// Enables a disabled user (`users:manage`).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/enable",
    operation_id = "enableUser",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (or email)")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Enabled", body = crate::service::users::UserSummary),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn enable(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    set_status(caller, path, state, UserStatus::Active).await
}

/// Lifts a user's sign-in lock (`users:manage`).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/unlock",
    operation_id = "unlockUser",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (or email)")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Unlocked", body = doc::Unlocked),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn unlock(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    users::unlock_user(&state.service, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(json!({ "unlocked": true })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TenantPolicyUpdate)]
struct PolicyBody {
    /// Users holding an active key may no longer sign in with a password.
    api_only_users: Option<bool>,
    /// The rate of keys without their own, for reports and webhooks, and
    /// the most a member may give a key; `null` removes it.
    #[serde(default, deserialize_with = "super::keys::present")]
    #[schema(nullable)]
    default_rate_limit: Option<Option<super::keys::RateLimitBody>>,
}

/// Sets the company's policy (`tenant:manage`; send either member or
/// both). Turning `api_only_users` on ends the sessions of users holding
/// an active key; `default_rate_limit` applies at once to keys without a
/// rate of their own (to their tokens from the next one issued).
#[utoipa::path(
    put,
    path = "/api/v1/tenant/policy",
    operation_id = "setTenantPolicy",
    tag = "admin",
    request_body = PolicyBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The policy now in force", body = doc::TenantPolicy),
        doc::CallerErrors,
        doc::BodyErrors,
    )
)]
pub async fn set_policy(
    req: HttpRequest,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: PolicyBody = read_json(&req, payload, 1024).await?;
    let default_rate_limit = match body.default_rate_limit {
        Some(Some(rate)) => Some(Some(rate.parse("default_rate_limit")?)),
        Some(None) => Some(None),
        None => None,
    };
    let policy = tenants::set_policy(
        &state.service,
        &caller,
        None,
        tenants::PolicyChange {
            api_only_users: body.api_only_users,
            default_rate_limit,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(policy))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    request_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The company's audit trail, oldest first (`audit:read`).
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
        ("request_id" = Option<String>, Query, description = "Only events written by the request with this `X-Request-Id`"),
        ("limit" = Option<u32>, Query, description = "Page size (default 50)", minimum = 1, maximum = 500),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "A page of events", body = doc::AuditPage),
        doc::CallerErrors,
    )
)]
pub async fn audit(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: AuditParams = serde_urlencoded::from_str(&super::query_without_signature(&req))
        .map_err(|e| {
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
    let (events, has_more) = audit_trail::list(
        &state.service,
        &caller,
        AuditFilter {
            action: params.action.as_deref(),
            actor: params.actor.as_deref(),
            target: params.target.as_deref(),
            since: params.since,
            until: params.until,
            request_id: params.request_id.as_deref(),
            after_id: after_id.as_deref(),
            limit,
            newest_first: false,
        },
    )
    .await?;
    let next_cursor = has_more
        .then(|| events.last().map(|e| URL_SAFE_NO_PAD.encode(&e.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next_cursor": next_cursor })))
}
