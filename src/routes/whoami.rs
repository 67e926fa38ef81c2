//! `GET /api/v1/whoami` (any credential, SigV4 signatures included; no
//! scope): who the credential acts as. With an access token it touches no database, which makes it the
//! cheapest protected route: integrations use it to check their setup.

use actix_web::HttpResponse;

use serde::Serialize;
use utoipa::ToSchema;

use super::Caller;

/// Who a credential acts as.
#[derive(Serialize, ToSchema)]
pub struct Identity {
    /// The user the credential acts as.
    sub: String,
    tenant_id: String,
    #[schema(examples("admin", "member"))]
    role: String,
    /// Space-separated scopes the credential carries.
    scope: String,
    /// The key behind the request; absent for a session.
    client_id: Option<String>,
    /// How the request was authenticated: `access_token`, `api_key` (the
    /// key presented), `sigv4` (signed with AWS Signature Version 4) or
    /// `session`.
    #[schema(examples("access_token", "api_key", "sigv4", "session"))]
    credential: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    operation_id = "whoami",
    tag = "meta",
    security(("bearer" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Who the credential acts as", body = Identity),
        (status = 400, response = super::doc::BadRequest),
        (status = 401, response = super::doc::Unauthenticated),
        (status = 503, response = super::doc::Unavailable),
    )
)]
pub async fn whoami(caller: Caller) -> HttpResponse {
    let Caller(principal) = caller;
    let (sub, tenant_id, role) = match &principal.user {
        Some(user) => (
            user.user_id.clone(),
            user.tenant_id.clone(),
            user.role.as_str().to_owned(),
        ),
        None => Default::default(),
    };
    HttpResponse::Ok().json(Identity {
        scope: principal.scopes.to_string(),
        role,
        credential: principal.credential.kind().to_owned(),
        sub,
        tenant_id,
        client_id: principal.credential.client_id().map(str::to_owned),
    })
}
