use serde::{Deserialize, Serialize};

use crate::domain::RateLimit;
use crate::domain::exchange::Actor;

/// The claims of a Keyport access token (RFC 9068 §2.2), plus the tenant and
/// the owner's role (RFC 9068 §2.2.3.1 `roles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The key's owner: the user the key acts as.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub tenant_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The CIDR ranges the key may be used from, when it has an allow-list:
    /// Keyport's own endpoints refuse the token from anywhere else, and a
    /// resource server validating offline may do the same. Absent: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kp_src: Vec<String>,
    /// The key's rate for the report and webhook APIs, when it has one
    /// (`{"requests", "per_seconds", "burst"}`): Keyport enforces it from
    /// the token, with no database read. A malformed one fails the
    /// token's verification. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kp_rl: Option<RateLimit>,
    /// RFC 8693 §4.1: who acts for the subject, when the token came from an
    /// exchange with an actor token; a nested `act` is who acted before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// What the token is bound to: a DPoP key (RFC 9449 §6.1, `{"jkt":
    /// thumbprint}`), presented with a proof signed by that key; or a
    /// client certificate (RFC 8705 §3.1, `{"x5t#S256": thumbprint}`),
    /// presented over mutual TLS with that certificate. Never both. Absent:
    /// a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The confirmation claim (RFC 7800 §3.1) of a bound access token: one of
/// its members is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the DPoP key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The SHA-256 thumbprint of the client certificate the token is
    /// bound to (RFC 8705 §3.1).
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    /// The DPoP key's thumbprint, for a DPoP-bound token.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.jkt.as_deref()
    }

    /// The certificate's thumbprint, for a certificate-bound token.
    pub fn certificate(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }
}

impl AccessTokenClaims {
    /// The DPoP key's thumbprint, for a DPoP-bound token.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.cnf.as_ref().and_then(Confirmation::dpop_jkt)
    }

    /// The certificate's thumbprint, for a certificate-bound token.
    pub fn bound_certificate(&self) -> Option<&str> {
        self.cnf.as_ref().and_then(Confirmation::certificate)
    }
}
