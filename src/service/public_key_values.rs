//! The public keys a key holds for `private_key_jwt` (RFC 7523), as
//! values: parsed from the JWKs given at creation or later, and shown.
//! Kept apart from the operations (`public_keys.rs`) so key creation
//! (`keys/`) can use them without the two importing each other.

use serde::Serialize;
use serde_json::Value;

use super::{Result, ServiceError};
use crate::domain::UnixTime;
use crate::storage::{NewPublicKey, PublicKeyRow, StorageError};
use crate::tokens::PublicJwk;

/// At most this many public keys per key: enough for a rotation with room
/// to spare, and it bounds the signatures tried for an assertion without
/// a `kid`.
pub const MAX_PUBLIC_KEYS: usize = 5;

/// A registered public key as shown to people: public by nature.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicKeySummary {
    /// The RFC 7638 SHA-256 thumbprint (base64url): the key's identity,
    /// and what `DELETE …/public-keys/{thumbprint}` names.
    pub thumbprint: String,
    /// The JWK's `kid`, if it had one: assertions naming it in their
    /// header are checked with this key only.
    pub kid: Option<String>,
    #[schema(examples("ES256", "EdDSA", "RS256"))]
    pub alg: String,
    /// The public key as stored: its public members, `kid` and `alg`.
    #[schema(value_type = Object)]
    pub jwk: Value,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

impl PublicKeySummary {
    pub(super) fn from_row(row: PublicKeyRow) -> Result<Self, StorageError> {
        let jwk = serde_json::from_str(&row.jwk).map_err(|_| {
            StorageError::Corrupt(format!("key {}: a public key is not JSON", row.key_id))
        })?;
        Ok(PublicKeySummary {
            thumbprint: row.thumbprint,
            kid: row.kid,
            alg: row.alg,
            jwk,
            created_at: row.created_at,
        })
    }
}

/// A JWK that parsed as a public ES256, EdDSA or RS256 key.
#[derive(Debug, Clone)]
pub struct ParsedPublicKey(PublicJwk);

impl ParsedPublicKey {
    pub fn parse(jwk: &Value) -> Result<Self> {
        PublicJwk::parse(jwk)
            .map(ParsedPublicKey)
            .map_err(|e| ServiceError::Invalid(format!("public key: {e}")))
    }

    pub fn thumbprint(&self) -> &str {
        self.0.thumbprint()
    }

    pub(super) fn to_new(&self) -> NewPublicKey {
        NewPublicKey {
            thumbprint: self.0.thumbprint().to_owned(),
            kid: self.0.kid().map(str::to_owned),
            alg: self.0.algorithm().as_str().to_owned(),
            jwk: self.0.to_json().to_string(),
        }
    }

    pub(super) fn summary(&self, created_at: UnixTime) -> PublicKeySummary {
        PublicKeySummary {
            thumbprint: self.0.thumbprint().to_owned(),
            kid: self.0.kid().map(str::to_owned),
            alg: self.0.algorithm().as_str().to_owned(),
            jwk: self.0.to_json(),
            created_at,
        }
    }
}

/// The public keys given at a key's creation: each must parse, none twice
/// (by thumbprint or `kid`), at most [`MAX_PUBLIC_KEYS`].
pub(super) fn parse_new_public_keys(jwks: &[Value]) -> Result<Vec<ParsedPublicKey>> {
    if jwks.len() > MAX_PUBLIC_KEYS {
        return Err(ServiceError::Invalid(format!(
            "a key holds at most {MAX_PUBLIC_KEYS} public keys"
        )));
    }
    let mut parsed: Vec<ParsedPublicKey> = Vec::with_capacity(jwks.len());
    for (n, jwk) in jwks.iter().enumerate() {
        let key = PublicJwk::parse(jwk)
            .map(ParsedPublicKey)
            .map_err(|e| ServiceError::Invalid(format!("public_keys[{n}]: {e}")))?;
        if parsed.iter().any(|k| k.thumbprint() == key.thumbprint()) {
            return Err(ServiceError::Invalid(format!(
                "public_keys[{n}] is the same key as an earlier one"
            )));
        }
        if key.0.kid().is_some() && parsed.iter().any(|k| k.0.kid() == key.0.kid()) {
            return Err(ServiceError::Invalid(format!(
                "public_keys[{n}] has the same kid as an earlier one"
            )));
        }
        parsed.push(key);
    }
    Ok(parsed)
}
