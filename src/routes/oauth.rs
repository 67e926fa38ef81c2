//! `POST /oauth/token`: RFC 6749 §4.4 client credentials. Authenticated by the
//! key's client ID and secret (Basic or body); no token needed.

use actix_web::http::header::{self, AUTHORIZATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::body::{BodyError, media_type, read_limited};
use super::token_request::parse_token_request;
use crate::clients::{self, ClientAuthError};
use crate::domain::{ClientId, ClientSecret, ScopeSet, now};
use crate::error::{OAuthError, OAuthErrorCode};
use crate::tokens::AccessTokenClaims;

/// Token requests are a few hundred bytes; anything near this is not one.
const TOKEN_BODY_LIMIT: usize = 16 * 1024;

pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let body = read_limited(&req, payload, TOKEN_BODY_LIMIT)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => OAuthError::payload_too_large(limit),
            BodyError::Unreadable => OAuthError::invalid_request("the request body could not be read"),
        })?;
    let authorization: Vec<&[u8]> = req
        .headers()
        .get_all(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .collect();
    let request = parse_token_request(&authorization, media_type(&req).as_deref(), &body)?;

    // Shape checks first: a malformed client ID or secret costs no database work.
    let client_id = ClientId::parse(&request.credentials.client_id)
        .map_err(|_| OAuthError::invalid_client("client authentication failed"))?;
    let secret = ClientSecret::parse(&request.credentials.client_secret)
        .map_err(|_| OAuthError::invalid_client("client authentication failed"))?;

    let issued_at = now();
    let key = clients::authenticate(&state.store, &client_id, &secret, issued_at)
        .await
        .map_err(|e| match e {
            ClientAuthError::Storage(err) => OAuthError::from(err),
            // The caller proved the secret, so it may learn why it is refused.
            other => OAuthError::invalid_client(other.to_string()),
        })?;

    let settings = &state.settings.tokens;
    let scopes = match request.scope.as_deref() {
        None => key.scopes.clone(),
        Some(raw) => {
            let asked = ScopeSet::parse(raw)
                .map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e.to_string()))?;
            let beyond = asked.missing_from(&key.scopes);
            if !beyond.is_empty() {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    format!("the key does not hold: {beyond}"),
                ));
            }
            if asked.is_empty() { key.scopes.clone() } else { asked }
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "the key holds no scopes: its owner has no permissions it may use",
        ));
    }
    if let Some(resource) = request.resource.as_deref()
        && resource != settings.audience
    {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            format!("this server issues tokens only for `{}`", settings.audience),
        ));
    }

    let max_ttl = settings.max_ttl.as_secs() as i64;
    let ttl = key
        .token_ttl_seconds
        .unwrap_or(settings.default_ttl.as_secs() as i64)
        .clamp(1, max_ttl);
    let claims = AccessTokenClaims {
        iss: settings.issuer.clone(),
        sub: key.owner_id.clone(),
        aud: settings.audience.clone(),
        exp: issued_at + ttl,
        iat: issued_at,
        nbf: issued_at,
        jti: Uuid::new_v4().to_string(),
        client_id: key.client_id.clone(),
        scope: scopes.to_string(),
        tenant_id: key.tenant_id.clone(),
        roles: vec![key.owner_role.as_str().to_owned()],
    };
    let access_token = state.keys.sign(&claims).map_err(|e| {
        log::error!("signing failed: {e}");
        OAuthError::new(OAuthErrorCode::ServerError, "the server failed; the error was logged")
    })?;

    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": claims.scope,
        })))
}
