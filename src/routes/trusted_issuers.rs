//! Token exchange trust (RFC 8693), every operation needing `tenant:manage`
//! (admins), each audited:
//! - `GET    /api/v1/trusted-issuers`                         with their rules
//! - `POST   /api/v1/trusted-issuers`                         `{"issuer", "jwks_url", "audience", "description"?}`
//! - `DELETE /api/v1/trusted-issuers/{id}`                    and its rules
//! - `POST   /api/v1/trusted-issuers/{id}/rules`              `{"conditions", "user", "scopes", "description"?}`
//! - `DELETE /api/v1/trusted-issuers/{id}/rules/{rule_id}`

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::body::read_json;
use super::doc;
use super::error::ApiError;
use super::keys::MANAGEMENT_BODY_LIMIT;
use super::{AppState, Caller};
use crate::service::exchange::{
    self, ExchangeRule, NewExchangeRule, NewTrustedIssuer, TrustedIssuer,
};

#[derive(Serialize, utoipa::ToSchema)]
pub struct TrustedIssuerList {
    issuers: Vec<TrustedIssuer>,
}

/// The company's trusted issuers, each with its rules.
#[utoipa::path(
    get,
    path = "/api/v1/trusted-issuers",
    operation_id = "listTrustedIssuers",
    tag = "admin",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The trusted issuers", body = TrustedIssuerList),
        doc::CallerErrors,
    )
)]
pub async fn list(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let issuers = exchange::list_issuers(&state.service, &caller, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "issuers": issuers })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewTrustedIssuerRequest)]
struct NewIssuerBody {
    /// The `iss` its tokens carry, e.g. `https://token.actions.githubusercontent.com`.
    issuer: String,
    /// Where it publishes its public keys (https, public address).
    jwks_url: String,
    /// The audience its tokens must name to be meant for this company.
    audience: String,
    description: Option<String>,
}

/// Trusts an issuer's tokens for token exchange; rules then say which user
/// they act as.
#[utoipa::path(
    post,
    path = "/api/v1/trusted-issuers",
    operation_id = "createTrustedIssuer",
    tag = "admin",
    request_body = NewIssuerBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Trusted", body = TrustedIssuer),
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
    let body: NewIssuerBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let issuer = exchange::add_issuer(
        &state.service,
        &caller,
        None,
        NewTrustedIssuer {
            issuer: &body.issuer,
            jwks_url: &body.jwks_url,
            audience: &body.audience,
            description: body.description.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(issuer))
}

/// Stops trusting an issuer; its rules go with it, and tokens they granted
/// fail every re-check (introspection, management) from now on.
#[utoipa::path(
    delete,
    path = "/api/v1/trusted-issuers/{id}",
    operation_id = "deleteTrustedIssuer",
    tag = "admin",
    params(("id" = String, Path, description = "The trusted issuer's id")),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "No longer trusted"),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn delete(
    path: web::Path<String>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    exchange::remove_issuer(&state.service, &caller, None, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewExchangeRuleRequest)]
struct NewRuleBody {
    /// All must hold: `[{"claim": "sub", "equals": "repo:acme/erp:ref:refs/heads/main"}]`,
    /// or `"matches"` with `*` standing for any run of characters.
    #[schema(value_type = Vec<Object>)]
    conditions: serde_json::Value,
    /// The user the exchanged tokens act as: an id or an email.
    user: String,
    /// Space-separated; within the user's permissions.
    scopes: String,
    description: Option<String>,
}

/// Adds a rule to a trusted issuer.
#[utoipa::path(
    post,
    path = "/api/v1/trusted-issuers/{id}/rules",
    operation_id = "createExchangeRule",
    tag = "admin",
    params(("id" = String, Path, description = "The trusted issuer's id")),
    request_body = NewRuleBody,
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 201, description = "Added", body = ExchangeRule),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
        doc::BodyErrors,
    )
)]
pub async fn create_rule(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body: NewRuleBody = read_json(&req, payload, MANAGEMENT_BODY_LIMIT).await?;
    let rule = exchange::add_rule(
        &state.service,
        &caller,
        None,
        &path,
        NewExchangeRule {
            conditions: &body.conditions,
            user: &body.user,
            scopes: &body.scopes,
            description: body.description.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(rule))
}

#[utoipa::path(
    delete,
    path = "/api/v1/trusted-issuers/{id}/rules/{rule_id}",
    operation_id = "deleteExchangeRule",
    tag = "admin",
    params(
        ("id" = String, Path, description = "The trusted issuer's id"),
        ("rule_id" = String, Path, description = "The rule's id"),
    ),
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "Deleted; tokens it granted fail every re-check"),
        doc::CallerErrors,
        (status = 404, response = doc::NotFound),
    )
)]
pub async fn delete_rule(
    path: web::Path<(String, String)>,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (issuer_id, rule_id) = path.into_inner();
    exchange::remove_rule(&state.service, &caller, None, &issuer_id, &rule_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
