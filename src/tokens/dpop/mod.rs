//! DPoP (RFC 9449) as Keyport's token endpoint and resource endpoints
//! check it. The §4.3 checks themselves are the resource-server library's
//! (`keyport_verify::DpopSettings::check_proof`), the one place they live;
//! what Keyport plugs in is its replay store (a database table shared by
//! every instance, `service::dpop`), its nonces (derived from the master
//! key, so every instance accepts every other's), the public base URL
//! `htu` is compared with, and its words for a refusal ([`DpopError`]).
//!
//! Reading a proof off an HTTP request is the routes' (`routes::dpop`, with
//! the `DpopToken` extractor): this module knows JWTs, not HTTP frameworks.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use keyport_verify::VerifyError;
pub use keyport_verify::dpop::{ReplayStoreError, replay_id, same_target_uri};
pub use keyport_verify::{CheckedProof, DpopNonces, MemoryReplayStore, ReplayStore};

use super::VerifiedToken;

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

/// How proofs are checked; see the module documentation.
#[derive(Clone)]
pub struct DpopVerifier {
    /// `scheme://host[:port][/prefix]` as clients reach this server (behind
    /// a proxy: the proxy's); `htu` is compared with it plus the path.
    /// `None`: taken from each request's Host and scheme.
    public_base_url: Option<Arc<str>>,
    settings: keyport_verify::DpopSettings,
    requires_nonce: bool,
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
            public_base_url: public_base_url.map(|u| u.trim_end_matches('/').into()),
            settings: keyport_verify::DpopSettings::default()
                .max_age(max_age)
                .leeway(leeway)
                .replay_store(replay),
            requires_nonce: false,
        }
    }

    /// Requires server nonces (§8) made with `nonces`.
    pub fn with_nonces(self, nonces: DpopNonces) -> Self {
        DpopVerifier {
            settings: self.settings.nonces(nonces),
            requires_nonce: true,
            ..self
        }
    }

    /// Whether `htu` is compared with a configured public base URL rather
    /// than each request's own.
    pub fn has_public_base_url(&self) -> bool {
        self.public_base_url.is_some()
    }

    /// Whether nonces are required.
    pub fn requires_nonce(&self) -> bool {
        self.requires_nonce
    }

    /// RFC 9449 §4.3 (`keyport_verify`'s checks). `proofs`: every `DPoP`
    /// header sent; `base_url`: this request's public base URL when none is
    /// configured.
    pub async fn verify(
        &self,
        proofs: &[&[u8]],
        target: &ProofTarget<'_>,
        base_url: Option<&str>,
    ) -> Result<CheckedProof, DpopError> {
        let base = self
            .public_base_url
            .as_deref()
            .or(base_url)
            .ok_or(DpopError::NotConfigured)?;
        self.verify_under(proofs, target, base).await
    }

    /// [`Self::verify`] at the public base URL `base`, whatever is
    /// configured: a request to the mutual-TLS listener (RFC 8705 §5) names
    /// that listener's URL in `htu`.
    pub async fn verify_under(
        &self,
        proofs: &[&[u8]],
        target: &ProofTarget<'_>,
        base: &str,
    ) -> Result<CheckedProof, DpopError> {
        let one;
        let many: Vec<&str>;
        let texts: &[&str] = match proofs {
            [proof] => {
                one = [std::str::from_utf8(proof)
                    .map_err(|_| DpopError::proof("the DPoP proof is not a JWT"))?];
                &one
            }
            // Step 1 refuses any other count; what they hold is not read.
            _ => {
                many = proofs.iter().map(|_| "").collect();
                &many
            }
        };
        let url = format!("{base}{}", target.path);
        let target = keyport_verify::ProofTarget {
            method: target.method,
            url: &url,
            access_token: target.access_token,
            jkt: target.bound_to,
        };
        self.settings
            .check_proof(texts, &target)
            .await
            .map_err(DpopError::from)
    }
}

impl From<VerifyError> for DpopError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::InvalidDpopProof(message) => DpopError::InvalidProof(Cow::Owned(message)),
            VerifyError::UseDpopNonce { nonce, message } => DpopError::UseNonce { message, nonce },
            VerifyError::ReplayCheckUnavailable => DpopError::Unavailable,
            other => DpopError::InvalidProof(Cow::Owned(other.to_string())),
        }
    }
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

/// The binding rule for a verified token (§7.1, §7.2): a DPoP-bound token
/// (`cnf.jkt`) only under the DPoP scheme, and the DPoP scheme only for a
/// DPoP-bound token. Returns the thumbprint the proof must be signed with.
/// A certificate-bound token (`cnf.x5t#S256`, RFC 8705) is a Bearer token
/// here: its certificate is the caller's to check.
pub fn required_binding(
    token: &VerifiedToken,
    scheme: TokenScheme,
) -> Result<Option<&str>, DpopError> {
    match (scheme, token.claims.dpop_jkt()) {
        (TokenScheme::Bearer, None) => Ok(None),
        (TokenScheme::Bearer, Some(_)) => Err(DpopError::InvalidToken(Cow::Borrowed(
            "the access token is DPoP-bound: present it as Authorization: DPoP with a DPoP proof",
        ))),
        (TokenScheme::Dpop, None) => Err(DpopError::InvalidToken(Cow::Borrowed(
            "the access token is not DPoP-bound: present it as Authorization: Bearer",
        ))),
        (TokenScheme::Dpop, Some(jkt)) => Ok(Some(jkt)),
    }
}
