//! `GET /api/v1/whoami` (any credential, no scope): who the credential acts
//! as. With an access token it touches no database, which makes it the
//! cheapest protected route: integrations use it to check their setup.

use actix_web::HttpResponse;
use serde_json::json;

use super::{Caller, Credential};

pub async fn whoami(caller: Caller) -> HttpResponse {
    let credential = match &caller.credential {
        Credential::AccessToken { .. } => "access_token",
        Credential::ApiKey { .. } => "api_key",
        Credential::Session(_) => "session",
    };
    HttpResponse::Ok().json(json!({
        "sub": caller.user_id,
        "tenant_id": caller.tenant_id,
        "role": caller.role.as_str(),
        "scope": caller.scopes.to_string(),
        "client_id": caller.client_id,
        "credential": credential,
    }))
}

