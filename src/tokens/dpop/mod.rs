//! DPoP (RFC 9449): proofs of possession of a key, checked as §4.3 lists,
//! for Keyport's token endpoint and resource endpoints and for any resource
//! server built on this library.
//!
//! [`DpopVerifier::verify`] is the one place the §4.3 checks live. What
//! differs between users is pluggable: the replay store ([`ReplayStore`]:
//! Keyport's is a database table shared by every instance, a resource
//! server's [`MemoryReplayStore`] its own memory), the public base URL that
//! `htu` is compared with, and whether server nonces (§8) are required.
//!
//! Reading a proof off an HTTP request is the routes' (`routes::dpop`, with
//! the `DpopToken` extractor): this module knows JWTs, not HTTP frameworks.
//! Beside the checks here: `replay.rs` (the stores), `nonces.rs` (server
//! nonces) and `target.rs` (comparing `htu` with the request's URI).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

mod nonces;
mod replay;
mod target;

pub use nonces::DpopNonces;
use nonces::NonceStanding;
pub use replay::{MemoryReplayStore, ReplayStore, ReplayStoreError, replay_id};
pub use target::same_target_uri;

use super::jwk::PublicJwk;
use super::jws::{JwsError, UnverifiedJwt};
use super::verifier::VerifiedToken;
use crate::domain::now;

/// The JOSE `typ` of a DPoP proof (§4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// The algorithms a proof may use, as `algs` in a challenge (§7.1) and
/// `dpop_signing_alg_values_supported` in metadata (§5.1).
pub const DPOP_ALGS: [&str; 3] = ["ES256", "EdDSA", "RS256"];
/// The request header a proof travels in, and the nonce header (§8).
pub const DPOP_HEADER: &str = "DPoP";
pub const DPOP_NONCE_HEADER: &str = "DPoP-Nonce";

/// Why a DPoP presentation was refused. Each boundary maps it: the token
/// endpoint to RFC 6749 §5.2 codes, resource endpoints to 401 with a
/// `WWW-Authenticate: DPoP` challenge (§7.1), in `crate::routes::error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// `invalid_dpop_proof`: the proof is missing where one is needed, or
    /// fails a §4.3 check; the message says which.
    #[error("{0}")]
    InvalidProof(Cow<'static, str>),
    /// `use_dpop_nonce` (§8): retry with the nonce in `DPoP-Nonce`.
    #[error("{message}")]
    UseNonce {
        message: &'static str,
        nonce: String,
    },
    /// `invalid_token` under the DPoP scheme: a bound token presented as
    /// Bearer, an unbound token presented as DPoP, or a token that does not
    /// verify.
    #[error("{0}")]
    InvalidToken(Cow<'static, str>),
    /// The request is malformed (RFC 6750 §3.1 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The replay store cannot answer: refused rather than risk a replay.
    #[error("the DPoP replay check is unavailable; retry shortly")]
    Unavailable,
    /// The application has no [`DpopVerifier`] (programming error).
    #[error("DPoP verification is not configured")]
    NotConfigured,
}

impl DpopError {
    /// A proof that failed a check (`invalid_dpop_proof`).
    pub fn proof(message: impl Into<Cow<'static, str>>) -> Self {
        DpopError::InvalidProof(message.into())
    }

    /// The RFC code: `invalid_dpop_proof`, `use_dpop_nonce`,
    /// `invalid_token`, `invalid_request`, or `temporarily_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::InvalidProof(_) => "invalid_dpop_proof",
            DpopError::UseNonce { .. } => "use_dpop_nonce",
            DpopError::InvalidToken(_) => "invalid_token",
            DpopError::InvalidRequest(_) => "invalid_request",
            DpopError::Unavailable | DpopError::NotConfigured => "temporarily_unavailable",
        }
    }

    /// The nonce to send in `DPoP-Nonce` with this refusal.
    pub fn nonce(&self) -> Option<&str> {
        match self {
            DpopError::UseNonce { nonce, .. } => Some(nonce),
            _ => None,
        }
    }
}

/// What a proof must fit: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The request's path (what `htu` must name, after the public base URL).
    pub path: &'a str,
    /// The access token presented with it, at a resource (`ath`, §4.3
    /// step 12); `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// The thumbprint that token is bound to (`cnf.jkt`).
    pub bound_to: Option<&'a str>,
}

/// A proof that passed every check, replay included.
#[derive(Debug, Clone)]
pub struct CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key: what a token gets bound to.
    pub jkt: String,
    /// A fresh nonce to send back in `DPoP-Nonce` (the presented one is
    /// from the previous slot); `None`: nothing to send.
    pub fresh_nonce: Option<String>,
}

/// How proofs are checked; see the module documentation.
#[derive(Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// `scheme://host[:port][/prefix]` as clients reach this server (behind
    /// a proxy: the proxy's); `htu` is compared with it plus the path.
    /// `None`: taken from each request's Host and scheme.
    public_base_url: Option<String>,
    max_age: i64,
    leeway: i64,
    replay: Arc<dyn ReplayStore>,
    nonces: Option<DpopNonces>,
}

impl DpopVerifier {
    /// `max_age`: how old a proof's `iat` may be; `leeway`: how far in the
    /// future (clock skew), and added to `max_age`.
    pub fn new(
        public_base_url: Option<&str>,
        max_age: Duration,
        leeway: Duration,
        replay: Arc<dyn ReplayStore>,
    ) -> Self {
        DpopVerifier {
            inner: Arc::new(Inner {
                public_base_url: public_base_url.map(|u| u.trim_end_matches('/').to_owned()),
                max_age: max_age.as_secs() as i64,
                leeway: leeway.as_secs() as i64,
                replay,
                nonces: None,
            }),
        }
    }

    /// Requires server nonces (§8) made with `nonces`.
    pub fn with_nonces(self, nonces: DpopNonces) -> Self {
        let inner = &self.inner;
        DpopVerifier {
            inner: Arc::new(Inner {
                public_base_url: inner.public_base_url.clone(),
                max_age: inner.max_age,
                leeway: inner.leeway,
                replay: Arc::clone(&inner.replay),
                nonces: Some(nonces),
            }),
        }
    }

    /// Whether nonces are required.
    pub fn requires_nonce(&self) -> bool {
        self.inner.nonces.is_some()
    }

    /// The nonce to hand out now, when nonces are required.
    pub fn current_nonce(&self) -> Option<String> {
        self.inner.nonces.as_ref().map(DpopNonces::current)
    }

    /// RFC 9449 §4.3, in its order. `proofs`: every `DPoP` header sent;
    /// `base_url`: this request's public base URL when none is configured.
    pub async fn verify(
        &self,
        proofs: &[&[u8]],
        target: &ProofTarget<'_>,
        base_url: Option<&str>,
    ) -> Result<CheckedProof, DpopError> {
        let inner = &self.inner;
        let at = now();
        // Step 1: exactly one DPoP header.
        let raw = match proofs {
            [] => {
                return Err(DpopError::proof(
                    "a DPoP proof is required (the DPoP header)",
                ));
            }
            [one] => *one,
            _ => {
                return Err(DpopError::proof(
                    "send exactly one DPoP header (RFC 9449 §4.3 step 1)",
                ));
            }
        };
        // Step 2: a single well-formed JWT.
        let raw = std::str::from_utf8(raw)
            .map_err(|_| DpopError::proof("the DPoP proof is not a JWT"))?
            .trim();
        let jwt = UnverifiedJwt::parse(raw).map_err(|e| match e {
            // Step 5: alg asymmetric, not `none`, and allowed here.
            JwsError::AlgorithmNotAllowed => DpopError::proof(
                "the DPoP proof's alg must be ES256, EdDSA or RS256 (RFC 9449 §4.3 step 5)",
            ),
            JwsError::CriticalHeader => DpopError::proof(
                "the DPoP proof has critical header parameters this server does not understand",
            ),
            _ => DpopError::proof("the DPoP proof is not a well-formed JWT (RFC 9449 §4.3 step 2)"),
        })?;
        // Step 4: typ.
        if jwt.typ() != Some(DPOP_TYP) {
            return Err(DpopError::proof(
                "the DPoP proof's typ must be dpop+jwt (RFC 9449 §4.3 step 4)",
            ));
        }
        // Steps 3 and 7: a `jwk` header holding a public key only.
        let jwk_value = jwt.header().get("jwk").ok_or_else(|| {
            DpopError::proof("the DPoP proof has no jwk header (RFC 9449 §4.3 step 3)")
        })?;
        let jwk = PublicJwk::parse(jwk_value).map_err(|e| {
            DpopError::proof(format!(
                "the DPoP proof's jwk is refused: {e} (RFC 9449 §4.3 step 7)"
            ))
        })?;
        // Step 6: the signature, with that key.
        let proof = jwt.verify(&jwk).map_err(|e| match e {
            JwsError::AlgorithmMismatch => DpopError::proof(
                "the DPoP proof's alg does not match its jwk (RFC 9449 §4.3 step 6)",
            ),
            _ => DpopError::proof(
                "the DPoP proof's signature does not verify with its jwk (RFC 9449 §4.3 step 6)",
            ),
        })?;
        // Step 3: the required claims.
        let jti = proof
            .string_claim("jti")
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| {
                DpopError::proof(
                    "the DPoP proof needs a jti of 1 to 256 characters (RFC 9449 §4.2)",
                )
            })?;
        let htm = proof
            .string_claim("htm")
            .ok_or_else(|| DpopError::proof("the DPoP proof has no htm claim (RFC 9449 §4.2)"))?;
        let htu = proof
            .string_claim("htu")
            .ok_or_else(|| DpopError::proof("the DPoP proof has no htu claim (RFC 9449 §4.2)"))?;
        let iat = proof
            .time_claim("iat")
            .ok_or_else(|| DpopError::proof("the DPoP proof has no iat claim (RFC 9449 §4.2)"))?;
        // Step 8: htm.
        if htm != target.method {
            return Err(DpopError::proof(format!(
                "the DPoP proof is for another method: htm must be {} (RFC 9449 §4.3 step 8)",
                target.method
            )));
        }
        // Step 9: htu, normalised, without query and fragment.
        let base = inner
            .public_base_url
            .as_deref()
            .or(base_url)
            .ok_or(DpopError::NotConfigured)?;
        let expected = format!("{base}{}", target.path);
        if !same_target_uri(htu, &expected) {
            return Err(DpopError::proof(format!(
                "the DPoP proof is for another URL: htu must be {expected} (RFC 9449 §4.3 step 9)"
            )));
        }
        // Step 10: the server's nonce, when it asks for one.
        let mut fresh_nonce = None;
        if let Some(nonces) = &inner.nonces {
            let message = match proof.string_claim("nonce") {
                None => Some("this server requires a DPoP nonce: retry with the one in DPoP-Nonce"),
                Some(nonce) => match nonces.standing(nonce, at) {
                    NonceStanding::Current => None,
                    NonceStanding::Previous => {
                        fresh_nonce = Some(nonces.current());
                        None
                    }
                    NonceStanding::Stale => {
                        Some("the DPoP nonce is stale: retry with the one in DPoP-Nonce")
                    }
                    NonceStanding::Invalid => Some(
                        "the DPoP nonce is not one this server issued: retry with the one in DPoP-Nonce",
                    ),
                },
            };
            if let Some(message) = message {
                return Err(DpopError::UseNonce {
                    message,
                    nonce: nonces.current(),
                });
            }
        }
        // Step 11: iat within the window.
        if iat > at + inner.leeway {
            return Err(DpopError::proof(
                "the DPoP proof's iat is in the future (RFC 9449 §4.3 step 11)",
            ));
        }
        if iat < at - inner.max_age - inner.leeway {
            return Err(DpopError::proof(format!(
                "the DPoP proof is too old: iat must be within {} seconds (RFC 9449 §4.3 step 11)",
                inner.max_age
            )));
        }
        // Step 12: at a resource, `ath` and the token's binding.
        if let Some(token) = target.access_token {
            let expected_ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            match proof.string_claim("ath") {
                None => {
                    return Err(DpopError::proof(
                        "the DPoP proof has no ath claim, the hash of the access token (RFC 9449 §4.3 step 12)",
                    ));
                }
                Some(ath) if !constant_time_eq(ath.as_bytes(), expected_ath.as_bytes()) => {
                    return Err(DpopError::proof(
                        "the DPoP proof's ath is not the hash of this access token (RFC 9449 §4.3 step 12)",
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(bound) = target.bound_to
            && !constant_time_eq(bound.as_bytes(), jwk.thumbprint().as_bytes())
        {
            return Err(DpopError::proof(
                "the DPoP proof is signed by another key than the one the access token is bound to (RFC 9449 §4.3 step 12)",
            ));
        }
        // §11.1: a proof is used once within its window. Last, so a proof
        // refused for another reason does not use up its jti.
        let expires_at = iat.max(at) + inner.max_age + inner.leeway;
        let first = inner
            .replay
            .first_use(replay_id(jwk.thumbprint(), jti), expires_at)
            .await
            .map_err(|err| {
                log::warn!("{err}");
                DpopError::Unavailable
            })?;
        if !first {
            return Err(DpopError::proof(
                "the DPoP proof was used before: make a new proof, with a new jti, for each request (RFC 9449 §11.1)",
            ));
        }
        Ok(CheckedProof {
            jkt: jwk.thumbprint().to_owned(),
            fresh_nonce,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

/// How an access token was presented in `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScheme {
    Bearer,
    Dpop,
}

/// The `Authorization` header's scheme and token, for `Bearer` and `DPoP`
/// (RFC 9449 §7.1); anything else is `None`.
pub fn authorization_token(value: &str) -> Option<(TokenScheme, &str)> {
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        TokenScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        TokenScheme::Dpop
    } else {
        return None;
    };
    Some((scheme, token.trim()))
}

/// The binding rule for a verified token (§7.1, §7.2): a bound token
/// (`cnf.jkt`) only under the DPoP scheme, and the DPoP scheme only for a
/// bound token. Returns the thumbprint the proof must be signed with.
pub fn required_binding(
    token: &VerifiedToken,
    scheme: TokenScheme,
) -> Result<Option<&str>, DpopError> {
    match (scheme, token.claims.cnf.as_ref()) {
        (TokenScheme::Bearer, None) => Ok(None),
        (TokenScheme::Bearer, Some(_)) => Err(DpopError::InvalidToken(Cow::Borrowed(
            "the access token is DPoP-bound: present it as Authorization: DPoP with a DPoP proof",
        ))),
        (TokenScheme::Dpop, None) => Err(DpopError::InvalidToken(Cow::Borrowed(
            "the access token is not DPoP-bound: present it as Authorization: Bearer",
        ))),
        (TokenScheme::Dpop, Some(cnf)) => Ok(Some(cnf.jkt.as_str())),
    }
}
