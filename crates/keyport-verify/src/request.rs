//! A request as the verifier sees it, what it answers when it accepts one
//! ([`Authenticated`]), and what when it refuses ([`Rejection`]): the
//! framework-independent half of the adapters.

use std::ops::Deref;
use std::sync::Arc;

use crate::{Claims, Verifier, VerifyError};

/// How the token was presented (the `Authorization` scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP`, with a proof in the `DPoP` header (RFC 9449).
    Dpop,
}

/// The client certificate a request came with over mutual TLS (RFC 8705),
/// by its `x5t#S256` thumbprint: a certificate-bound token is accepted only
/// with it. The adapters look for one in the request's extensions (the
/// actix adapter in the connection's data first); the application puts it
/// there, from its TLS layer (actix-web: `HttpServer::on_connect`, see the
/// crate's README) or from a TLS-terminating proxy it trusts (its RFC 9440
/// `Client-Cert` header). Never from a header anyone could send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertificate(String);

impl ClientCertificate {
    /// The certificate's thumbprint, from its DER.
    pub fn from_der(der: &[u8]) -> Self {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        ClientCertificate(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
    }

    /// A thumbprint already computed (base64url SHA-256 of the DER).
    pub fn from_thumbprint(x5t_s256: impl Into<String>) -> Self {
        ClientCertificate(x5t_s256.into())
    }

    /// The `x5t#S256` thumbprint.
    pub fn thumbprint(&self) -> &str {
        &self.0
    }
}

/// What [`Verifier::authenticate`] needs of an HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The URL the request was sent to, absolute (`http://host/path`); the
    /// query is ignored. With
    /// [`VerifierBuilder::resource`](crate::VerifierBuilder::resource) only
    /// its path matters. Only a DPoP proof is checked against it: a request
    /// under `Bearer` may leave it empty.
    pub url: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// Every `DPoP` header sent (a valid request has at most one).
    pub dpop_proofs: &'a [&'a str],
    /// The `x5t#S256` thumbprint of the client certificate the request came
    /// with over mutual TLS, if any ([`ClientCertificate::thumbprint`]):
    /// a certificate-bound token (RFC 8705 §3) is accepted only with it.
    pub client_certificate: Option<&'a str>,
}

impl TokenRequest<'_> {
    /// The scheme and the token, when `Authorization` carries one in a
    /// scheme this crate knows.
    pub(crate) fn credentials(&self) -> Option<(Scheme, &str)> {
        let (scheme, token) = self.authorization?.trim().split_once(' ')?;
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            Some((Scheme::Bearer, token))
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Some((Scheme::Dpop, token))
        } else {
            None
        }
    }
}

/// An accepted token: its claims (also through `Deref`), how it was
/// presented, and the verifier, so a scope check answers with the same
/// challenges.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Shared with the verifier's cache: accepting a token seen before
    /// copies nothing.
    claims: Arc<Claims>,
    scheme: Scheme,
    verifier: Verifier,
    fresh_dpop_nonce: Option<String>,
}

impl Authenticated {
    pub(crate) fn new(
        claims: Arc<Claims>,
        scheme: Scheme,
        verifier: Verifier,
        fresh_dpop_nonce: Option<String>,
    ) -> Self {
        Authenticated {
            claims,
            scheme,
            verifier,
            fresh_dpop_nonce,
        }
    }

    /// A fresh nonce to send in `DPoP-Nonce` with the answer, when the
    /// proof carried the previous one (RFC 9449 §9): the client moves on
    /// before its nonce goes stale.
    pub fn fresh_dpop_nonce(&self) -> Option<&str> {
        self.fresh_dpop_nonce.as_deref()
    }

    /// The token's claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The claims, owned.
    pub fn into_claims(self) -> Claims {
        Arc::unwrap_or_clone(self.claims)
    }

    /// How the token was presented.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// `Ok` when the token carries `scope`, else 403 `insufficient_scope`
    /// naming it, under the scheme the token came with and with the
    /// resource's metadata URL when it has one.
    pub fn require_scope(&self, scope: &str) -> Result<(), Rejection> {
        self.claims
            .require_scope(scope)
            .map_err(|error| self.verifier.reject(error, self.scheme))
    }
}

impl Deref for Authenticated {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.claims
    }
}

/// A refused request: the reason, the HTTP status, the
/// `WWW-Authenticate` challenges (one header each) and, when the resource
/// asks for a DPoP nonce, the `DPoP-Nonce` to send. Built by
/// [`Verifier::reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    error: VerifyError,
    challenges: Vec<String>,
}

impl Rejection {
    pub(crate) fn new(error: VerifyError, challenges: Vec<String>) -> Self {
        Rejection { error, challenges }
    }

    /// Why.
    pub fn error(&self) -> &VerifyError {
        &self.error
    }

    /// 401, 403 or 503.
    pub fn status(&self) -> u16 {
        self.error.status()
    }

    /// The `WWW-Authenticate` values, one header each (none for a 503).
    pub fn challenges(&self) -> &[String] {
        &self.challenges
    }

    /// The `DPoP-Nonce` header to send with the refusal, if any.
    pub fn dpop_nonce(&self) -> Option<&str> {
        match &self.error {
            VerifyError::UseDpopNonce { nonce, .. } => Some(nonce),
            _ => None,
        }
    }

    /// The JSON body: `{"error": code, "error_description": text}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.error.code(),
            "error_description": self.error.to_string(),
        })
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
