//! Keyport's own endpoints validate access tokens with the resource-server
//! library, `keyport_verify`: one verifier for Keyport and for every
//! resource server, fed here with the keys the [`super::KeyRing`] holds in
//! memory (no HTTP request to itself). What this module adds is Keyport's
//! view of a verified token: its claims as Keyport issues them
//! ([`AccessTokenClaims`], with the tenant, roles, address allow-list and
//! rate), its scopes parsed, and its refusals in Keyport's words. What only
//! the server knows (revocation, the key's allow-list) is checked after, in
//! `service::authz`.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use keyport_verify::{Claims, PublicKey, StaticKeys, Verifier, VerifyError};
use serde::de::DeserializeOwned;

use super::claims::{AccessTokenClaims, Confirmation};
use super::signing_key::SigningKey;
use crate::config::TokenSettings;
use crate::domain::{Role, ScopeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token is not an RFC 9068 access token (typ must be at+jwt)")]
    WrongType,
    #[error("the access token was signed by an unknown key")]
    UnknownKey,
    #[error("the access token's algorithm is not allowed")]
    WrongAlgorithm,
    #[error("the access token's signature is invalid")]
    BadSignature,
    #[error("the access token expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was issued in the future")]
    IssuedInFuture,
    #[error("the access token was issued by someone else")]
    WrongIssuer,
    #[error("the access token is meant for another audience")]
    WrongAudience,
    #[error("the access token lacks a required claim")]
    MissingClaim,
    /// RFC 9449 §7.2: a DPoP-bound token (`cnf.jkt`) is no bearer token.
    #[error("the access token is DPoP-bound: present it as Authorization: DPoP with a DPoP proof")]
    DpopBound,
    /// RFC 8705 §3: a certificate-bound token (`cnf.x5t#S256`) is good only
    /// over a connection with that client certificate.
    #[error(
        "the access token is bound to a client certificate: present it over mutual TLS with \
         that certificate"
    )]
    CertificateBound,
}

impl From<VerifyError> for TokenError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::NotAnAccessToken => TokenError::WrongType,
            VerifyError::UnsupportedAlgorithm => TokenError::WrongAlgorithm,
            VerifyError::UnknownKey => TokenError::UnknownKey,
            VerifyError::BadSignature => TokenError::BadSignature,
            VerifyError::WrongIssuer => TokenError::WrongIssuer,
            VerifyError::WrongAudience => TokenError::WrongAudience,
            VerifyError::Expired => TokenError::Expired,
            VerifyError::NotYetValid => TokenError::NotYetValid,
            VerifyError::IssuedInFuture => TokenError::IssuedInFuture,
            VerifyError::MissingClaim(_) => TokenError::MissingClaim,
            VerifyError::BoundToken => TokenError::DpopBound,
            VerifyError::CertificateMismatch => TokenError::CertificateBound,
            // The rest are about a request, not a token: `verify` does not
            // answer them.
            _ => TokenError::Malformed,
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub claims: AccessTokenClaims,
    pub scopes: ScopeSet,
}

impl VerifiedToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    pub fn is_admin(&self) -> bool {
        self.claims.roles.iter().any(|r| r == Role::Admin.as_str())
    }

    /// Keyport's claims of a token the library verified. Every Keyport
    /// token has them all; a token signed by one of our keys without them
    /// is malformed.
    fn from_claims(claims: Claims) -> Result<Self, TokenError> {
        let Claims {
            sub,
            iss,
            aud,
            exp,
            iat,
            nbf,
            jti,
            client_id,
            scope,
            tenant_id,
            cnf,
            act,
            mut extra,
        } = claims;
        let serde_json::Value::String(aud) = aud else {
            return Err(TokenError::Malformed);
        };
        let (Some(nbf), Some(jti), Some(client_id), Some(tenant_id)) =
            (nbf, jti, client_id, tenant_id)
        else {
            return Err(TokenError::Malformed);
        };
        let scopes = ScopeSet::parse(&scope).map_err(|_| TokenError::Malformed)?;
        let claims = AccessTokenClaims {
            iss,
            sub,
            aud,
            exp,
            iat,
            nbf,
            jti,
            client_id,
            scope,
            tenant_id,
            roles: member(extra.remove("roles"))?.unwrap_or_default(),
            kp_src: member(extra.remove("kp_src"))?.unwrap_or_default(),
            kp_rl: member(extra.remove("kp_rl"))?,
            act: member(act)?,
            cnf: member::<Confirmation>(cnf)?,
        };
        Ok(VerifiedToken { claims, scopes })
    }
}

/// A claim read as Keyport writes it; absent or `null`: `None`.
fn member<T: DeserializeOwned>(value: Option<serde_json::Value>) -> Result<Option<T>, TokenError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|_| TokenError::Malformed),
    }
}

/// Validates access tokens with `keyport_verify` against the keys it is
/// given. Cheap to clone; all clones see key updates (and share the
/// library's cache of verified tokens). Keyport's [`super::KeyRing`] keeps
/// one up to date; [`TokenVerifier::from_jwks`] builds one from a JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    verifier: Verifier,
    keys: StaticKeys,
}

impl TokenVerifier {
    pub fn new(settings: &TokenSettings) -> Self {
        Self::with_keys(
            &settings.issuer,
            &settings.audience,
            settings.leeway,
            StaticKeys::new(),
        )
    }

    /// A verifier trusting the usable keys of `jwks` (keys without a `kid`,
    /// or of another kind than Keyport signs with, are skipped).
    pub fn from_jwks(jwks: &JwkSet, issuer: &str, audience: &str, leeway: Duration) -> Self {
        Self::with_keys(issuer, audience, leeway, StaticKeys::from_jwks(jwks))
    }

    fn with_keys(issuer: &str, audience: &str, leeway: Duration, keys: StaticKeys) -> Self {
        let verifier = Verifier::builder(issuer, audience)
            .leeway(leeway)
            .with_keys(Arc::new(keys.clone()));
        TokenVerifier { verifier, keys }
    }

    pub(super) fn replace_keys<'a>(&self, keys: impl Iterator<Item = &'a SigningKey>) {
        self.keys.replace(keys.filter_map(|k| {
            let key = PublicKey::new(k.algorithm.jwt_algorithm(), k.decoding.clone())?;
            Some((k.kid.clone(), key))
        }));
    }

    /// Verifies `token` (a token verified before is answered from the
    /// library's cache while it has not expired).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let claims = self.verifier.verify_now(token)?;
        VerifiedToken::from_claims(claims)
    }
}
