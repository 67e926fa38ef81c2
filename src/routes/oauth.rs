//! The OAuth endpoints, all authenticated by a key's client ID and secret
//! (HTTP Basic or body parameters):
//! - `POST /oauth/token`: RFC 6749 §4.4 client credentials;
//! - `POST /oauth/introspect`: RFC 7662, for tokens of the caller's tenant;
//! - `POST /oauth/revoke`: RFC 7009, for the caller's own tokens (an admin's
//!   key: any token of the tenant).

use std::net::IpAddr;

use actix_web::http::header::{self, AUTHORIZATION};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::body::{BodyError, media_type, read_limited};
use super::observe::note_client_id;
use super::openapi as doc;
use super::token_request::{ClientCredentials, TokenQuery, parse_token_query, parse_token_request};
use crate::audit::{self, Actor};
use crate::clients::{self, AuthenticatedKey, ClientAuthError};
use crate::domain::{ClientId, ClientSecret, Role, ScopeSet, now};
use crate::error::{OAuthError, OAuthErrorCode};
use crate::tokens::AccessTokenClaims;

/// OAuth requests are a few hundred bytes; anything near this is not one.
const OAUTH_BODY_LIMIT: usize = 16 * 1024;

async fn read_body(req: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, OAuthError> {
    read_limited(req, payload, OAUTH_BODY_LIMIT)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => OAuthError::payload_too_large(limit),
            BodyError::Unreadable => {
                OAuthError::invalid_request("the request body could not be read")
            }
        })
}

fn authorization_headers(req: &HttpRequest) -> Vec<&[u8]> {
    req.headers()
        .get_all(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .collect()
}

/// Checks the client's credentials: shape first (no database work for a
/// malformed secret), throttling of repeated failures, then the key itself.
async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    credentials: &ClientCredentials,
) -> Result<AuthenticatedKey, OAuthError> {
    let address = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Some(retry_after) = state.throttle.check(&credentials.client_id, address) {
        return Err(OAuthError::throttled(retry_after));
    }
    let failed = |description: &str| {
        state
            .throttle
            .record_failure(&credentials.client_id, address);
        OAuthError::invalid_client(description)
    };
    let client_id = ClientId::parse(&credentials.client_id)
        .map_err(|_| failed("client authentication failed"))?;
    note_client_id(req, client_id.as_str());
    let secret = ClientSecret::parse(&credentials.client_secret)
        .map_err(|_| failed("client authentication failed"))?;
    let at = now();
    let key = clients::authenticate(&state.store, &client_id, &secret, at)
        .await
        .map_err(|e| match e {
            ClientAuthError::Storage(err) => OAuthError::from(err),
            ClientAuthError::BadCredentials => failed("client authentication failed"),
            // The caller proved the secret, so it may learn why it is refused.
            other => OAuthError::invalid_client(other.to_string()),
        })?;
    state.last_used.touch(&key.key_id, at);
    Ok(key)
}

/// An RFC 6749 §5.1 successful token response: what is served is what
/// `/openapi.json` documents.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// An RFC 9068 JWT access token.
    access_token: String,
    #[schema(examples("Bearer"))]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: i64,
    /// The space-separated scopes the token carries.
    scope: String,
}

fn no_store(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    response
}

/// RFC 6749 §4.4 client credentials grant: a key's client ID and secret in,
/// a JWT access token out. `scope` may only narrow the key's scopes.
#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "token",
    tag = "oauth",
    request_body(content(
        (doc::TokenRequest = "application/x-www-form-urlencoded"),
        (doc::TokenRequest = "application/json"),
    )),
    security(("clientBasic" = [])),
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        (status = 400, response = doc::OAuthBadRequest),
        (status = 401, response = doc::OAuthInvalidClient),
        (status = 413, response = doc::OAuthPayloadTooLarge),
        (status = 429, response = doc::OAuthThrottled),
        (status = 503, response = doc::OAuthUnavailable),
    )
)]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let outcome = issue_token(&req, payload, &state).await;
    match &outcome {
        Ok(_) => state.metrics.tokens_issued.inc(),
        Err(err) => state
            .metrics
            .tokens_refused
            .with_label_values(&[err.reason()])
            .inc(),
    }
    outcome
}

async fn issue_token(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, OAuthError> {
    let body = read_body(req, payload).await?;
    let request = parse_token_request(
        &authorization_headers(req),
        media_type(req).as_deref(),
        &body,
    )?;
    let key = authenticate(req, state, &request.credentials).await?;

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
            if asked.is_empty() {
                key.scopes.clone()
            } else {
                asked
            }
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

    let issued_at = now();
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
        // From the thread's CSPRNG: `Uuid::new_v4` makes a getrandom system
        // call per token.
        jti: uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
        client_id: key.client_id.clone(),
        scope: scopes.to_string(),
        tenant_id: key.tenant_id.clone(),
        roles: vec![key.owner_role.as_str().to_owned()],
    };
    let access_token = state.keys.sign(&claims).map_err(|e| {
        log::error!("{}", crate::error::error_chain(&e));
        OAuthError::new(
            OAuthErrorCode::ServerError,
            "the server failed; the error was logged",
        )
    })?;

    Ok(no_store(HttpResponse::Ok()).json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: claims.scope,
    }))
}

/// The body of an introspection or revocation request, and the key that
/// authenticated it.
async fn authenticated_token_query(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(AuthenticatedKey, TokenQuery), OAuthError> {
    let body = read_body(req, payload).await?;
    let query = parse_token_query(
        &authorization_headers(req),
        media_type(req).as_deref(),
        &body,
    )?;
    let key = authenticate(req, state, &query.credentials).await?;
    Ok((key, query))
}

/// Whether `key` may see or revoke a token with these claims: never across
/// tenants; an admin's key for the whole tenant; otherwise its owner's tokens.
fn may_act_on(key: &AuthenticatedKey, claims: &AccessTokenClaims) -> bool {
    claims.tenant_id == key.tenant_id
        && (key.owner_role == Role::Admin || claims.sub == key.owner_id)
}

/// RFC 7662 token introspection, for tokens of the caller's tenant.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    operation_id = "introspect",
    tag = "oauth",
    request_body(content(
        (doc::TokenQuery = "application/x-www-form-urlencoded"),
        (doc::TokenQuery = "application/json"),
    )),
    security(("clientBasic" = [])),
    responses(
        (status = 200, description = "What the token is, or `{\"active\": false}`", body = doc::IntrospectionResponse),
        (status = 400, response = doc::OAuthBadRequest),
        (status = 401, response = doc::OAuthInvalidClient),
        (status = 413, response = doc::OAuthPayloadTooLarge),
        (status = 429, response = doc::OAuthThrottled),
        (status = 503, response = doc::OAuthUnavailable),
    )
)]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (key, query) = authenticated_token_query(&req, payload, &state).await?;
    let answer = match state.keys.verifier().verify(&query.token) {
        Ok(token)
            if may_act_on(&key, &token.claims) && !state.revoked.is_revoked(&token.claims.jti) =>
        {
            let c = token.claims;
            json!({
                "active": true,
                "scope": c.scope,
                "client_id": c.client_id,
                "sub": c.sub,
                "aud": c.aud,
                "iss": c.iss,
                "exp": c.exp,
                "iat": c.iat,
                "nbf": c.nbf,
                "jti": c.jti,
                "token_type": "Bearer",
                "tenant_id": c.tenant_id,
                "roles": c.roles,
            })
        }
        // RFC 7662 §2.2: nothing more is said about a token the caller may
        // not see, or one that is not valid.
        _ => json!({ "active": false }),
    };
    Ok(no_store(HttpResponse::Ok()).json(answer))
}

/// RFC 7009 token revocation: the caller's own tokens (an admin's key: any
/// token of the tenant). An unknown or invalid token answers 200 too.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    operation_id = "revokeToken",
    tag = "oauth",
    request_body(content(
        (doc::TokenQuery = "application/x-www-form-urlencoded"),
        (doc::TokenQuery = "application/json"),
    )),
    security(("clientBasic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, response = doc::OAuthBadRequest),
        (status = 401, response = doc::OAuthInvalidClient),
        (status = 413, response = doc::OAuthPayloadTooLarge),
        (status = 429, response = doc::OAuthThrottled),
        (status = 503, response = doc::OAuthUnavailable),
    )
)]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (key, query) = authenticated_token_query(&req, payload, &state).await?;
    // RFC 7009 §2.2: an invalid or unknown token still answers 200.
    if let Ok(token) = state.keys.verifier().verify(&query.token)
        && may_act_on(&key, &token.claims)
    {
        state
            .revoked
            .revoke(&state.store, &token.claims.jti, token.claims.exp)
            .await?;
        let actor = Actor::user(
            &key.owner_id,
            &key.tenant_id,
            key.owner_role,
            key.scopes.clone(),
            req.peer_addr().map(|a| a.ip().to_string()),
        );
        audit::record(
            &state.store,
            &actor,
            None,
            "token.revoke",
            Some(&token.claims.jti),
            Some(format!("client_id={}", token.claims.client_id)),
        )
        .await;
    }
    Ok(no_store(HttpResponse::Ok()).finish())
}
