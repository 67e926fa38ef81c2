//! What a verified Keyport access token says.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::VerifyError;

/// The claims of a verified token. Keyport's own claims are fields; any
/// other claim is in [`Claims::extra`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Claims {
    /// The user the token acts as.
    pub sub: String,
    /// The issuer (checked to be the verifier's).
    pub iss: String,
    /// The audience: a string or a list of strings (checked to name one of
    /// the verifier's).
    pub aud: Value,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds, when given.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// The token's unique ID.
    #[serde(default)]
    pub jti: Option<String>,
    /// The key (client ID) the token was issued to.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 9068 §2.2.3).
    #[serde(default)]
    pub scope: String,
    /// The company the token acts in.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// A key the token is bound to (RFC 9449 `jkt`, RFC 8705 `x5t#S256`).
    #[serde(default)]
    pub cnf: Option<Value>,
    /// The actor a token exchange (RFC 8693 §4.1) made this token for:
    /// `{"sub": …}`, possibly with a nested `act`.
    #[serde(default)]
    pub act: Option<Value>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Claims {
    /// The scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// `Ok` when the token carries `scope`, else the refusal that answers
    /// 403 `insufficient_scope` naming it.
    pub fn require_scope(&self, scope: &str) -> Result<(), VerifyError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(VerifyError::InsufficientScope(scope.to_owned()))
        }
    }

    /// The thumbprint of the DPoP key the token is bound to, if any.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.cnf.as_ref()?.get("jkt")?.as_str()
    }

    /// The client certificate a certificate-bound token (RFC 8705 §3.1)
    /// is bound to: its `cnf.x5t#S256` thumbprint.
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.cnf.as_ref()?.get("x5t#S256")?.as_str()
    }
}
