//! Stateless access-token validation (RFC 8725, RFC 9068 §4): no database
//! round trip, algorithms pinned per key, `typ`, `iss`, `aud`, `exp`, `nbf` and
//! `iat` checked with a small leeway.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::claims::AccessTokenClaims;
use super::signing_key::SigningKey;
use crate::config::TokenSettings;
use crate::domain::{Role, ScopeSet, now};

/// Longer tokens are refused before any parsing: ours are well under 1 KiB.
const MAX_TOKEN_LEN: usize = 4096;

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
}

struct VerificationKey {
    algorithm: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
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
}

/// Validates access tokens against a set of public keys. Cheap to clone; all
/// clones see key updates. Keyport's [`super::KeyRing`] keeps one up to date; a
/// third-party resource server builds one from the JWKS with
/// [`TokenVerifier::from_jwks`].
#[derive(Clone)]
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    leeway: Duration,
    keys: Arc<RwLock<Arc<HashMap<String, VerificationKey>>>>,
    /// Tokens already verified, keyed by the whole token (signature
    /// included, compared byte for byte, so a forgery never matches), until
    /// they expire. Keyed by the text rather than a digest of it: SipHash
    /// over the token costs a tenth of SHA-256, and equality stays exact.
    verified: Arc<RwLock<HashMap<Box<str>, VerifiedToken>>>,
}

/// Most cached tokens; an integration reuses one token for its lifetime, so
/// this covers far more integrations than one instance serves.
const CACHE_CAPACITY: usize = 16_384;

impl TokenVerifier {
    pub fn new(settings: &TokenSettings) -> Self {
        TokenVerifier {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway,
            keys: Arc::new(RwLock::new(Arc::new(HashMap::new()))),
            verified: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// A verifier for a resource server that fetched Keyport's JWKS. Keys
    /// without a `kid`, without an `alg`, or with a symmetric algorithm are
    /// skipped: only what Keyport publishes is trusted.
    pub fn from_jwks(jwks: &JwkSet, issuer: &str, audience: &str, leeway: Duration) -> Self {
        let verifier = TokenVerifier {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway,
            keys: Arc::new(RwLock::new(Arc::new(HashMap::new()))),
            verified: Arc::new(RwLock::new(HashMap::new())),
        };
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let (Some(kid), Some(alg)) = (&jwk.common.key_id, jwk.common.key_algorithm) else {
                continue;
            };
            let Ok(algorithm) = alg.to_string().parse::<Algorithm>() else {
                continue;
            };
            if !matches!(
                algorithm,
                Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
            ) {
                continue;
            }
            if let Ok(decoding) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), verifier.verification_key(algorithm, decoding));
            }
        }
        *verifier.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        verifier
    }

    pub(super) fn replace_keys<'a>(&self, keys: impl Iterator<Item = &'a SigningKey>) {
        let map = keys
            .map(|k| {
                let algorithm = k.algorithm.jwt_algorithm();
                (
                    k.kid.clone(),
                    self.verification_key(algorithm, k.decoding.clone()),
                )
            })
            .collect();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    fn verification_key(&self, algorithm: Algorithm, decoding: DecodingKey) -> VerificationKey {
        // One algorithm per key: a token cannot pick how it is checked.
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        VerificationKey {
            algorithm,
            decoding,
            validation,
        }
    }

    /// Verifies `token`; a token verified before is answered from the cache
    /// while it has not expired.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let at = now();
        let leeway = self.leeway.as_secs() as i64;
        if let Some(hit) = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
        {
            return if hit.claims.exp + leeway > at {
                Ok(hit.clone())
            } else {
                Err(TokenError::Expired)
            };
        }
        let verified = self.verify_uncached(token)?;
        let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, t| t.claims.exp + leeway > at);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.into(), verified.clone());
        Ok(verified)
    }

    /// The full check; `verify` has already refused over-long tokens.
    fn verify_uncached(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        if header.alg != key.algorithm {
            return Err(TokenError::WrongAlgorithm);
        }
        let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key.decoding, &key.validation)
            .map_err(|e| classify(e.kind()))?;
        if data.claims.iat > now() + self.leeway.as_secs() as i64 {
            return Err(TokenError::IssuedInFuture);
        }
        let scopes = ScopeSet::parse(&data.claims.scope).map_err(|_| TokenError::Malformed)?;
        Ok(VerifiedToken {
            claims: data.claims,
            scopes,
        })
    }
}

fn classify(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::WrongAlgorithm,
        _ => TokenError::Malformed,
    }
}
