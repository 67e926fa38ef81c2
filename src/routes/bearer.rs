//! The actix extractor that guards resource endpoints: `BearerToken` in a
//! handler's arguments means "a valid Keyport access token was presented".
//! It needs a [`TokenVerifier`] in the app data (`web::Data<TokenVerifier>`)
//! and nothing else, so any actix resource server can use it.

use std::future::{Ready, ready};

use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::tokens::{TokenError, TokenVerifier, VerifiedToken};

/// An RFC 6750 §3.1 error; its HTTP form lives in `super::error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No credentials at all: 401 with a bare challenge.
    #[error("an access token is required")]
    Missing,
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("{0}")]
    InvalidToken(TokenError),
    /// A credential that parsed but is refused (revoked token, bad API key…).
    #[error("{0}")]
    Rejected(&'static str),
    #[error("the access token lacks the `{0}` scope")]
    InsufficientScope(&'static str),
    /// The server was built without a verifier: a programming error.
    #[error("token verification is not configured")]
    NotConfigured,
}

#[derive(Debug, Clone)]
pub struct BearerToken(pub VerifiedToken);

impl BearerToken {
    /// Refuses with 403 `insufficient_scope` unless the token carries `scope`.
    pub fn require_scope(&self, scope: &'static str) -> Result<&VerifiedToken, BearerError> {
        if self.0.has_scope(scope) {
            Ok(&self.0)
        } else {
            Err(BearerError::InsufficientScope(scope))
        }
    }
}

/// Extracts the token from `Authorization: Bearer <token>` (RFC 6750 §2.1).
pub fn bearer_value(req: &HttpRequest) -> Result<&str, BearerError> {
    let mut values = req.headers().get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(BearerError::Missing);
    };
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest(
            "send exactly one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| BearerError::InvalidRequest("the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::InvalidRequest(
            "use the Bearer scheme: Authorization: Bearer <access token>",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(BearerError::InvalidRequest("the bearer token is empty"));
    }
    Ok(token)
}

impl FromRequest for BearerToken {
    type Error = BearerError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let verifier = req
                .app_data::<web::Data<TokenVerifier>>()
                .ok_or(BearerError::NotConfigured)?;
            let token = bearer_value(req)?;
            let verified = verifier.verify(token).map_err(BearerError::InvalidToken)?;
            // A DPoP-bound token is only good with a proof of its key
            // (`super::dpop::DpopToken`): as a bearer token it would be a
            // downgrade. A certificate-bound one only with its certificate.
            if verified.claims.dpop_jkt().is_some() {
                return Err(BearerError::InvalidToken(TokenError::DpopBound));
            }
            super::client_certificate::check_certificate_binding(req, &verified)
                .map_err(BearerError::InvalidToken)?;
            Ok(BearerToken(verified))
        })())
    }
}
