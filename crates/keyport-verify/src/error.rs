//! Why a token is refused, and the RFC 6750 answer that says so.

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
    #[error("the token's algorithm is not one the issuer signs with")]
    UnsupportedAlgorithm,
    /// No key of the issuer has the token's `kid` (or it names none).
    #[error("the token names a key the issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lacks the claim `{0}`")]
    MissingClaim(String),
    /// A token bound to a key (`cnf`, DPoP or a certificate) presented as a
    /// bearer token: whoever holds it must also prove they hold the key.
    #[error("the token is bound to a key and must come with proof of it")]
    BoundToken,
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
            VerifyError::KeysUnavailable(_) => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 §3 `error` code: `invalid_token`, or
    /// `insufficient_scope`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::InsufficientScope(_) => "insufficient_scope",
            _ => "invalid_token",
        }
    }

    /// The `WWW-Authenticate` value to answer with (RFC 6750 §3), naming the
    /// missing scope when that is why; `None` when the keys are unavailable
    /// (the token may be fine: try again later).
    pub fn challenge(&self, realm: &str) -> Option<String> {
        if matches!(self, VerifyError::KeysUnavailable(_)) {
            return None;
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

/// A value safe inside a quoted-string: no quotes, backslashes or controls.
fn quoted(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
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
    }
}
