//! `Caller`: who is calling Keyport's own API. Accepts, in order of
//! preference for integrations:
//! - `Authorization: Bearer <access token>`: validated offline (plus this
//!   instance's in-memory list of revoked `jti`s); a DPoP-bound token is
//!   refused as Bearer;
//! - `Authorization: DPoP <access token>` with a `DPoP` proof signed by the
//!   key the token is bound to (RFC 9449 §7; the checks and the replay
//!   cache are `tokens::dpop`'s, read off the request as `routes::dpop`'s
//!   `DpopToken` does);
//! - the API key itself, as `x-api-key: <secret>` or `Authorization: Bearer
//!   <secret>` (told apart from a JWT by its `kps_` prefix), acting as its owner;
//! - `Authorization: Bearer <session token>` from `POST /api/v1/session`;
//! - `?api_key=<secret>` only when `allow_api_key_query` is on;
//! - an AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 …` with
//!   `X-Amz-Date`, or a presigned GET URL) by a key that allows it, acting
//!   as its owner; the body's digest comes from `signed_body`. A sent
//!   `Idempotency-Key` must be signed, and a signed write is accepted once
//!   (`service::sigv4`).

use std::borrow::Cow;
use std::net::IpAddr;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};
use futures_util::future::LocalBoxFuture;

use super::bearer::{BearerError, bearer_value};
use super::dpop::check_presentation;
use super::observe::note_principal;
use super::signed_body::{self, SignedBodyDigest};
use super::{AppState, client_address};
use crate::domain::sigv4::{EMPTY_PAYLOAD_SHA256, Presentation, RequestParts};
use crate::domain::{ClientSecret, Principal, SessionToken};
use crate::service::authz::{self, CredentialRefusal};
use crate::tokens::TokenVerifier;
use crate::tokens::dpop::{TokenScheme, authorization_token, required_binding};

/// A fresh DPoP nonce for the response (RFC 9449 §8), left in the request's
/// extensions by `Caller` for [`dpop_nonce_header`].
#[derive(Debug, Clone)]
struct FreshDpopNonce(String);

/// Adds `DPoP-Nonce` to a response whose request's proof used the previous
/// nonce, so the client moves on to the current one.
pub async fn dpop_nonce_header(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let nonce = response
        .request()
        .extensions()
        .get::<FreshDpopNonce>()
        .map(|n| n.0.clone());
    if let Some(nonce) = nonce
        && let Ok(value) = actix_web::http::header::HeaderValue::from_str(&nonce)
    {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("dpop-nonce"),
            value,
        );
    }
    Ok(response)
}

/// The principal behind a request to Keyport's own API. What it may do is
/// decided in `service/`, not here.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

enum Presented {
    AccessToken(String),
    DpopToken(String),
    ApiKey(String),
    Session(String),
    Sigv4(Presentation),
}

fn presented(req: &HttpRequest, allow_query: bool) -> Result<Presented, BearerError> {
    let header_key = req.headers().get("x-api-key");
    let has_authorization = req.headers().contains_key(AUTHORIZATION);
    let signed = signed_body::presentation(req);
    let presigned = signed == Some(Presentation::Query);
    // Most requests carry no query: skip the parse for them.
    let query = req.query_string();
    let query_key = (!query.is_empty())
        .then(|| serde_urlencoded::from_str::<Vec<(String, String)>>(query).ok())
        .flatten()
        .and_then(|params| {
            params
                .into_iter()
                .find(|(k, _)| k == "api_key")
                .map(|(_, v)| v)
        });
    let sources = usize::from(header_key.is_some())
        + usize::from(has_authorization)
        + usize::from(query_key.is_some())
        + usize::from(presigned);
    if sources > 1 {
        return Err(BearerError::InvalidRequest(
            "present exactly one credential",
        ));
    }
    if let Some(presentation) = signed {
        return Ok(Presented::Sigv4(presentation));
    }
    if let Some(value) = header_key {
        let value = value
            .to_str()
            .map_err(|_| BearerError::InvalidRequest("the x-api-key header is not ASCII"))?;
        return Ok(Presented::ApiKey(value.trim().to_owned()));
    }
    if let Some(value) = query_key {
        if !allow_query {
            return Err(BearerError::InvalidRequest(
                "the api_key query parameter is disabled on this server: send the key in the x-api-key header",
            ));
        }
        return Ok(Presented::ApiKey(value));
    }
    if let Some(value) = req.headers().get(AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some((TokenScheme::Dpop, token)) = authorization_token(value)
    {
        if req.headers().get_all(AUTHORIZATION).count() > 1 {
            return Err(BearerError::InvalidRequest(
                "send exactly one Authorization header",
            ));
        }
        if token.is_empty() {
            return Err(BearerError::InvalidRequest("the access token is empty"));
        }
        return Ok(Presented::DpopToken(token.to_owned()));
    }
    let value = bearer_value(req)?;
    Ok(if ClientSecret::has_secret_prefix(value) {
        Presented::ApiKey(value.to_owned())
    } else if SessionToken::has_prefix(value) {
        Presented::Session(value.to_owned())
    } else {
        Presented::AccessToken(value.to_owned())
    })
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or(BearerError::NotConfigured)?
                .clone();
            let verifier = req
                .app_data::<web::Data<TokenVerifier>>()
                .ok_or(BearerError::NotConfigured)?
                .clone();
            let service = &state.service;
            let source_address = client_address(&req);
            let presented = presented(&req, service.settings.security.allow_api_key_query)?;
            let principal = match presented {
                Presented::AccessToken(token) => {
                    let verified = verifier.verify(&token).map_err(BearerError::InvalidToken)?;
                    // RFC 9449 §7.2: a DPoP-bound token is no bearer token;
                    // RFC 8705 §3: a certificate-bound one needs its certificate.
                    required_binding(&verified, TokenScheme::Bearer)?;
                    super::client_certificate::check_certificate_binding(&req, &verified)
                        .map_err(BearerError::InvalidToken)?;
                    authz::access_token(service, verified, source_address)?
                }
                Presented::DpopToken(token) => {
                    let (verified, proof) = check_presentation(
                        &verifier,
                        &service.dpop,
                        &req,
                        TokenScheme::Dpop,
                        &token,
                    )
                    .await?;
                    if let Some(nonce) = proof.and_then(|p| p.fresh_nonce) {
                        req.extensions_mut().insert(FreshDpopNonce(nonce));
                    }
                    authz::access_token(service, verified, source_address)?
                }
                Presented::ApiKey(raw) => {
                    let address = source_address.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                    authz::api_key(service, &raw, address).await?
                }
                Presented::Session(raw) => {
                    let token = SessionToken::parse(&raw)
                        .map_err(|_| CredentialRefusal::Rejected("the session is not valid"))?;
                    authz::session(service, &token, source_address).await?
                }
                Presented::Sigv4(presentation) => {
                    let address = source_address.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                    // Read (and hashed) by `buffer_signed_body`; without it
                    // (an app that did not install it), only a body-less
                    // request can verify.
                    let body_sha256 = req
                        .extensions()
                        .get::<SignedBodyDigest>()
                        .map(|digest| digest.0.clone())
                        .unwrap_or(Cow::Borrowed(EMPTY_PAYLOAD_SHA256));
                    let headers: Vec<(&str, &[u8])> = req
                        .headers()
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_bytes()))
                        .collect();
                    let parts = RequestParts {
                        method: req.method().as_str(),
                        path: req.uri().path(),
                        query: req.query_string(),
                        headers: &headers,
                        body_sha256: &body_sha256,
                    };
                    authz::sigv4(service, &parts, presentation, address).await?
                }
            };
            note_principal(&principal);
            Ok(Caller(principal))
        })
    }
}
