//! Why a token is refused, and the RFC 6750 answer that says so.

/// Longer tokens (and DPoP proofs) are refused before any parsing:
/// Keyport's are well under 1 KiB, and it never issues one longer than this.
pub const MAX_TOKEN_LEN: usize = 4096;

/// A refused token (or keys that cannot be had). Messages never carry the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts with a JSON header and claims.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// `typ` is not `at+jwt`: another kind of JWT (an ID token, a client
    /// assertion, a DPoP proof) is never an access token.
    #[error("the token is not an access token (typ must be at+jwt)")]
    NotAnAccessToken,
    /// `alg` is not one the issuer signs with (`none` and HMAC never are).
    #[error("the token's algorithm is not one the issuer signs with")]
    UnsupportedAlgorithm,
    /// No key of the issuer has the token's `kid` (or it names none).
    #[error("the token names a key the issuer does not publish")]
    UnknownKey,
    /// The signature is not the key's.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `iss` is not the issuer the verifier was built for.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` names none of the verifier's audiences.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A claim RFC 9068 requires is missing.
    #[error("the token lacks the claim `{0}`")]
    MissingClaim(String),
    /// No `Authorization` header with a token in a scheme the resource
    /// accepts: RFC 6750 §3.1 answers it with a bare challenge, no error
    /// code.
    #[error("an access token is required")]
    MissingToken,
    /// A token presented under the `DPoP` scheme that is not bound to a
    /// key, or DPoP presented to a verifier that does not accept it.
    #[error("the token is not bound to a DPoP key")]
    NotBound,
    /// The DPoP proof is missing or fails an RFC 9449 §4.3 check; the
    /// message says which (it never carries the proof or the token).
    #[error("{0}")]
    InvalidDpopProof(String),
    /// The resource requires a DPoP nonce (RFC 9449 §9) and the proof
    /// carried none, a stale one or a made-up one: retry with `nonce`,
    /// sent in the `DPoP-Nonce` header.
    #[error("{message}")]
    UseDpopNonce {
        /// The nonce to retry with.
        nonce: String,
        /// Which of the three it was.
        message: &'static str,
    },
    /// The replay store cannot answer: refused rather than risk a replay.
    #[error("the DPoP replay check is unavailable; retry shortly")]
    ReplayCheckUnavailable,
    /// A token bound to a key (`cnf`, DPoP or a certificate) presented as a
    /// bearer token: whoever holds it must also prove they hold the key.
    #[error("the token is bound to a key and must come with proof of it")]
    BoundToken,
    /// A token bound to a client certificate (`cnf.x5t#S256`, RFC 8705
    /// §3) presented without that certificate: over a connection with no
    /// client certificate, or another one.
    #[error("the token is bound to a client certificate the request did not present")]
    CertificateMismatch,
    /// The token is valid but does not carry the scope the resource needs.
    #[error("the token lacks the scope `{0}`")]
    InsufficientScope(String),
    /// The issuer's keys could not be fetched, and none were fetched before.
    #[error("the issuer's keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

impl VerifyError {
    /// The HTTP status to answer with: 401 for a bad token, 403 for a
    /// missing scope, 503 when the issuer's keys cannot be had.
    pub fn status(&self) -> u16 {
        match self {
            VerifyError::InsufficientScope(_) => 403,
            VerifyError::KeysUnavailable(_) | VerifyError::ReplayCheckUnavailable => 503,
            _ => 401,
        }
    }

    /// The `error` code: RFC 6750 §3 `invalid_token` or
    /// `insufficient_scope`, RFC 9449 §7.1 `invalid_dpop_proof` or
    /// `use_dpop_nonce`, `invalid_request` for a missing token and
    /// `temporarily_unavailable` for a 503.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::InsufficientScope(_) => "insufficient_scope",
            VerifyError::InvalidDpopProof(_) => "invalid_dpop_proof",
            VerifyError::UseDpopNonce { .. } => "use_dpop_nonce",
            VerifyError::MissingToken => "invalid_request",
            VerifyError::KeysUnavailable(_) | VerifyError::ReplayCheckUnavailable => {
                "temporarily_unavailable"
            }
            _ => "invalid_token",
        }
    }

    /// Whether the refusal is about DPoP itself, so its challenge is always
    /// under the `DPoP` scheme (RFC 9449 §7.1), whatever was presented.
    pub(crate) fn is_dpop(&self) -> bool {
        matches!(
            self,
            VerifyError::BoundToken
                | VerifyError::NotBound
                | VerifyError::InvalidDpopProof(_)
                | VerifyError::UseDpopNonce { .. }
        )
    }

    /// The `WWW-Authenticate: Bearer` value to answer with (RFC 6750 §3),
    /// naming the missing scope when that is why; `None` when the keys are
    /// unavailable (the token may be fine: try again later). A verifier
    /// that accepts DPoP or publishes resource metadata answers with
    /// [`Verifier::reject`](crate::Verifier::reject) instead, which adds
    /// the `DPoP` challenge and `resource_metadata`.
    pub fn challenge(&self, realm: &str) -> Option<String> {
        if self.status() == 503 {
            return None;
        }
        if matches!(self, VerifyError::MissingToken) {
            return Some(format!("Bearer realm=\"{}\"", quoted(realm)));
        }
        let realm = quoted(realm);
        let description = quoted(&self.to_string());
        Some(match self {
            VerifyError::InsufficientScope(scope) => format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{description}\", scope=\"{}\"",
                quoted(scope)
            ),
            _ => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
            ),
        })
    }
}

/// A value safe inside a quoted-string of a header: no quotes, backslashes
/// or controls, and ASCII only (`§` is spelt out, anything else is `?`).
pub(crate) fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {}
            '§' => out.push_str("section "),
            ' '..='~' => out.push(c),
            c if c.is_control() => {}
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_answer_as_rfc_6750_says() {
        let expired = VerifyError::Expired;
        assert_eq!(expired.status(), 401);
        assert_eq!(
            expired.challenge("api").unwrap(),
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let scope = VerifyError::InsufficientScope("reports:read".into());
        assert_eq!(scope.status(), 403);
        assert!(
            scope
                .challenge("api")
                .unwrap()
                .ends_with("scope=\"reports:read\"")
        );
        let down = VerifyError::KeysUnavailable("connection refused".into());
        assert_eq!((down.status(), down.challenge("api")), (503, None));
        assert_eq!(
            VerifyError::MissingClaim("sub\"x".into())
                .challenge("a\"b")
                .unwrap(),
            "Bearer realm=\"ab\", error=\"invalid_token\", error_description=\"the token lacks the claim `subx`\""
        );
        assert_eq!(
            quoted("RFC 9449 §4.3 — step\n"),
            "RFC 9449 section 4.3 ? step"
        );
    }
}
