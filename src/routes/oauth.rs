//! The OAuth endpoints, all authenticated by a key's client ID and secret
//! (HTTP Basic or body parameters) or by a JWT client assertion signed with
//! one of the key's public keys (RFC 7523 `private_key_jwt`):
//! - `POST /oauth/token`: RFC 6749 §4.4 client credentials, and RFC 8693
//!   token exchange (a Keyport token, by a key holding `tokens:exchange`; or
//!   a trusted issuer's JWT, which needs no client authentication); with a
//!   `DPoP` proof (RFC 9449), a token bound to the proof's key;
//! - `POST /oauth/introspect`: RFC 7662, for tokens of the caller's tenant;
//! - `POST /oauth/revoke`: RFC 7009, for the caller's own tokens (an admin's
//!   key: any token of the tenant).

use std::net::IpAddr;

use super::body::{media_type, read_limited};
use super::client_certificate::{RequestCertificate, request_certificate};
use super::doc;
use super::error::OAuthError;
use super::token_request::{
    ClientCredentials, TokenExchangeParameters, TokenQuery, TokenRequest, parse_token_query,
    parse_token_request,
};
use super::{AppState, client_address};
use crate::domain::ClientId;
use crate::domain::exchange::ACCESS_TOKEN_TYPE;
use crate::mtls::PresentedCertificate;
use crate::service::client_assertion::{self, AssertionEndpoint};
use crate::service::clients::{self, AuthenticatedKey};
use crate::service::exchange::{self, ExchangeRequest};
use crate::service::grant;
use crate::telemetry::{request, traces};
use actix_web::http::header::{self, AUTHORIZATION};
use actix_web::{HttpRequest, HttpResponse, web};

/// OAuth requests are a few hundred bytes; anything near this is not one.
const OAUTH_BODY_LIMIT: usize = 16 * 1024;

async fn read_body(req: &HttpRequest, payload: web::Payload) -> Result<web::Bytes, OAuthError> {
    Ok(read_limited(req, payload, OAUTH_BODY_LIMIT).await?)
}

fn authorization_headers(req: &HttpRequest) -> Vec<&[u8]> {
    req.headers()
        .get_all(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .collect()
}

/// The client certificate the request came with (mutual TLS, or a trusted
/// proxy's `Client-Cert`); a `Client-Cert` header from anyone else is
/// ignored and audited.
async fn client_certificate(
    req: &HttpRequest,
    state: &AppState,
    credentials: Option<&ClientCredentials>,
) -> Option<PresentedCertificate> {
    match request_certificate(req) {
        RequestCertificate::Presented(presented) => Some(presented),
        RequestCertificate::None => None,
        RequestCertificate::UntrustedHeader => {
            let peer = req.peer_addr().map(|a| a.ip());
            let client_id = credentials.and_then(|c| match c {
                ClientCredentials::Secret(secret) => Some(secret.client_id.as_str()),
                ClientCredentials::Assertion(assertion) => assertion.client_id.as_deref(),
                ClientCredentials::ClientId(id) => Some(id.as_str()),
            });
            clients::untrusted_certificate_header(&state.service, peer, client_id).await;
            None
        }
    }
}

/// Checks the client's credentials (throttled, shape first, then the key).
async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    credentials: &ClientCredentials,
    certificate: Option<&PresentedCertificate>,
    endpoint: AssertionEndpoint,
) -> Result<AuthenticatedKey, OAuthError> {
    let address = client_address(req).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    traces::in_span(
        "client_authentication",
        authenticate_client(state, credentials, certificate, endpoint, address),
    )
    .await
}

async fn authenticate_client(
    state: &AppState,
    credentials: &ClientCredentials,
    certificate: Option<&PresentedCertificate>,
    endpoint: AssertionEndpoint,
    address: IpAddr,
) -> Result<AuthenticatedKey, OAuthError> {
    let key = match credentials {
        ClientCredentials::ClientId(client_id) => {
            let logged_id = ClientId::parse(client_id).ok();
            let Some(certificate) = certificate else {
                request::note_credential("client_id", logged_id.as_ref().map(ClientId::as_str));
                return Err(OAuthError::invalid_client(
                    "client_secret is required (or, for a key with a certificate, mutual TLS \
                     with that certificate)",
                ));
            };
            let kind = match certificate.source {
                crate::mtls::CertificateSource::Handshake => "tls_client_auth",
                crate::mtls::CertificateSource::ProxyHeader => "tls_client_auth_proxy",
            };
            request::note_credential(kind, logged_id.as_ref().map(ClientId::as_str));
            clients::authenticate_certificate(&state.service, client_id, certificate, address)
                .await?
        }
        ClientCredentials::Secret(credentials) => {
            // Only an id of the right shape reaches the log: never raw
            // request text, which would let anyone write into it.
            let logged_id = ClientId::parse(&credentials.client_id).ok();
            request::note_credential("client_secret", logged_id.as_ref().map(ClientId::as_str));
            clients::authenticate(
                &state.service,
                &credentials.client_id,
                &credentials.client_secret,
                address,
            )
            .await?
        }
        ClientCredentials::Assertion(assertion) => {
            let key = client_assertion::authenticate(
                &state.service,
                &assertion.assertion,
                assertion.client_id.as_deref(),
                endpoint,
                address,
            )
            .await?;
            request::note_credential("private_key_jwt", Some(&key.client_id));
            key
        }
    };
    request::note_company(&key.tenant_id);
    Ok(key)
}

/// An RFC 6749 §5.1 successful token response: what is served is what
/// `/openapi.json` documents.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// An RFC 9068 JWT access token.
    access_token: String,
    /// `Bearer`, or `DPoP` when the request carried a DPoP proof (the
    /// token is then bound to the proof's key, RFC 9449 §5).
    #[schema(examples("Bearer", "DPoP"))]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: i64,
    /// The space-separated scopes the token carries.
    scope: String,
    /// RFC 8693 §2.2.1, token exchange only: always an access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("urn:ietf:params:oauth:token-type:access_token"))]
    issued_token_type: Option<&'static str>,
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
    params(("DPoP" = Option<String>, Header, description = "A DPoP proof (RFC 9449 §4): a JWT with `typ: dpop+jwt`, the client's public key as `jwk`, `htm: POST`, `htu` this endpoint's URL, `iat` and a fresh `jti` (and `nonce` when the server asks). The token is then bound to that key (`token_type: DPoP`, `cnf.jkt`).")),
    security(("clientBasic" = [])),
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        doc::OAuthErrors,
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
    if let Some(exchange) = &request.exchange {
        return exchange_token(req, state, &request, exchange).await;
    }
    let Some(credentials) = &request.credentials else {
        return Err(OAuthError::invalid_client(
            "client authentication is required",
        ));
    };
    let certificate = client_certificate(req, state, Some(credentials)).await;
    let key = authenticate(
        req,
        state,
        credentials,
        certificate.as_ref(),
        AssertionEndpoint::Token,
    )
    .await?;
    let proof = token_request_proof(req, state).await?;
    let issued = grant::issue_bound(
        &state.service,
        &state.keys,
        &key,
        request.scope.as_deref(),
        request.resource.as_deref(),
        proof.as_ref().map(|p| p.jkt.as_str()),
        certificate.as_ref().map(|c| c.thumbprint().as_str()),
    )?;
    let mut response = no_store(HttpResponse::Ok());
    if let Some(nonce) = proof.and_then(|p| p.fresh_nonce) {
        response.insert_header((crate::tokens::dpop::DPOP_NONCE_HEADER, nonce));
    }
    Ok(response.json(TokenResponse {
        access_token: issued.access_token,
        token_type: issued.token_type,
        expires_in: issued.expires_in,
        scope: issued.scope,
        issued_token_type: None,
    }))
}

/// RFC 8693 token exchange: a Keyport access token (the client must
/// authenticate) or a trusted issuer's JWT (client authentication optional).
async fn exchange_token(
    req: &HttpRequest,
    state: &AppState,
    request: &TokenRequest,
    exchange: &TokenExchangeParameters,
) -> Result<HttpResponse, OAuthError> {
    let certificate = client_certificate(req, state, request.credentials.as_ref()).await;
    let key = match (&request.credentials, &certificate) {
        // A lone client_id authenticates nothing without a certificate: as
        // if no client had authenticated (a trusted issuer's token).
        (Some(ClientCredentials::ClientId(_)), None) | (None, _) => None,
        (Some(credentials), _) => Some(
            authenticate(
                req,
                state,
                credentials,
                certificate.as_ref(),
                AssertionEndpoint::Token,
            )
            .await?,
        ),
    };
    // A proof binds the new token to its key, and must come from the key a
    // DPoP-bound subject token is bound to (checked by the service).
    let proof = token_request_proof(req, state).await?;
    let issued = exchange::exchange(
        &state.service,
        &state.keys,
        key.as_ref(),
        ExchangeRequest {
            subject_token: &exchange.subject_token,
            subject_token_type: exchange.subject_token_type,
            actor_token: exchange.actor_token.as_deref(),
            requested_token_type: exchange.requested_token_type.as_deref(),
            scope: request.scope.as_deref(),
            audience: request.resource.as_deref(),
            dpop_jkt: proof.as_ref().map(|p| p.jkt.as_str()),
            certificate: certificate.as_ref().map(|c| c.thumbprint().as_str()),
        },
        client_address(req),
    )
    .await?;
    let mut response = no_store(HttpResponse::Ok());
    if let Some(nonce) = proof.and_then(|p| p.fresh_nonce) {
        response.insert_header((crate::tokens::dpop::DPOP_NONCE_HEADER, nonce));
    }
    Ok(response.json(TokenResponse {
        access_token: issued.access_token,
        token_type: issued.token_type,
        expires_in: issued.expires_in,
        scope: issued.scope,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
    }))
}

/// The request's DPoP proof (RFC 9449 §4.3), checked, if it sent one: after
/// client authentication, so a stranger's proofs cost no replay-cache write.
async fn token_request_proof(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<crate::tokens::dpop::CheckedProof>, OAuthError> {
    let proofs = super::dpop::proof_headers(req);
    if proofs.is_empty() {
        return Ok(None);
    }
    let target = crate::tokens::dpop::ProofTarget {
        method: req.method().as_str(),
        path: req.path(),
        access_token: None,
        bound_to: None,
    };
    // On the mutual-TLS listener the client names that listener's URL.
    let mtls_base = req
        .conn_data::<crate::mtls::MtlsConnection>()
        .and(state.service.settings.mtls.url.as_deref());
    let checked = match mtls_base {
        Some(base) => {
            state
                .service
                .dpop
                .verify_under(&proofs, &target, base)
                .await?
        }
        None => state.service.dpop.verify(&proofs, &target, None).await?,
    };
    Ok(Some(checked))
}

/// The body of an introspection or revocation request, and the key that
/// authenticated it.
async fn authenticated_token_query(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    endpoint: AssertionEndpoint,
) -> Result<(AuthenticatedKey, TokenQuery), OAuthError> {
    let body = read_body(req, payload).await?;
    let query = parse_token_query(
        &authorization_headers(req),
        media_type(req).as_deref(),
        &body,
    )?;
    let certificate = client_certificate(req, state, Some(&query.credentials)).await;
    let key = authenticate(
        req,
        state,
        &query.credentials,
        certificate.as_ref(),
        endpoint,
    )
    .await?;
    Ok((key, query))
}

/// RFC 7662 token introspection, for tokens of the caller's tenant. A token
/// of a revoked or expired key, or of a disabled owner, is inactive.
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
        doc::OAuthErrors,
    )
)]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (key, query) =
        authenticated_token_query(&req, payload, &state, AssertionEndpoint::Introspection).await?;
    let token = state.keys.verifier().verify(&query.token);
    let answer = grant::introspect(&state.service, &key, token).await?;
    Ok(no_store(HttpResponse::Ok()).json(answer))
}

/// RFC 7009 token revocation: the caller's own tokens (an admin's key: any
/// token of the tenant). An unknown or invalid token answers 200 too; an API
/// key's secret or a session token answers 400 `unsupported_token_type`.
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
        doc::OAuthErrors,
    )
)]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let (key, query) =
        authenticated_token_query(&req, payload, &state, AssertionEndpoint::Revocation).await?;
    grant::revoke(
        &state.service,
        &state.keys,
        key,
        &query.token,
        client_address(&req),
    )
    .await?;
    Ok(no_store(HttpResponse::Ok()).finish())
}
