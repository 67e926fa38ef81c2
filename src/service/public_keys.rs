//! A key's public keys, for `private_key_jwt` client authentication (RFC
//! 7523): register, list, remove. Like every key operation these need
//! `keys:manage`; members act on their own keys, admins on their
//! company's, the operator on any. A change is audited and forgotten by
//! the credential cache at once (the triggers of migration 0011 tell the
//! other instances). The last way a key can authenticate is never removed:
//! a key without a secret keeps at least one public key.

use serde::Serialize;
use serde_json::Value;

use super::audit::{self, Event};
use super::keys::{KeyStatus, visible_key};
use super::{Result, Service, ServiceError, authz, preview};
use crate::domain::{KEYS_MANAGE, Principal, UnixTime, now};
use crate::storage::{NewPublicKey, PublicKeyAdd, PublicKeyRemoval, PublicKeyRow, StorageError};
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
    fn from_row(row: PublicKeyRow) -> Result<Self, StorageError> {
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

/// The public keys of `key` (its id or client ID), oldest first.
pub async fn list_public_keys(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<Vec<PublicKeySummary>> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    let rows = service.store.public_keys_of_key(&found.id).await?;
    Ok(rows
        .into_iter()
        .map(PublicKeySummary::from_row)
        .collect::<Result<_, _>>()?)
}

/// Registers `jwk` with `key`: from now on the key may authenticate with
/// assertions it signs. Not on a revoked key.
pub async fn add_public_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    jwk: &Value,
) -> Result<PublicKeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    if found.status == KeyStatus::Revoked {
        return Err(ServiceError::Conflict(format!(
            "key {} is revoked and cannot take public keys",
            found.client_id
        )));
    }
    let parsed = ParsedPublicKey::parse(jwk)?;
    let at = now();
    let added = service
        .store
        .add_public_key(&found.id, &parsed.to_new(), MAX_PUBLIC_KEYS, at)
        .await;
    service.credentials.forget_key(&found.client_id);
    match added? {
        PublicKeyAdd::Added => {}
        PublicKeyAdd::DuplicateThumbprint => {
            return Err(ServiceError::Conflict(format!(
                "key {} holds this public key already (thumbprint {})",
                found.client_id,
                parsed.thumbprint()
            )));
        }
        PublicKeyAdd::DuplicateKid => {
            return Err(ServiceError::Conflict(format!(
                "key {} holds another public key with this kid; give each key its own kid",
                found.client_id
            )));
        }
        PublicKeyAdd::LimitReached => {
            return Err(ServiceError::Conflict(format!(
                "key {} holds {MAX_PUBLIC_KEYS} public keys already; remove one first",
                found.client_id
            )));
        }
        PublicKeyAdd::NoSuchKey => {
            return Err(ServiceError::NotFound(format!(
                "key {} was deleted",
                found.client_id
            )));
        }
    }
    let summary = parsed.summary(at);
    audit::record(
        &service.store,
        &principal,
        Event::new("key.public_key.add")
            .tenant(&found.tenant_id)
            .target(&found.client_id)
            .detail(format!(
                "thumbprint={}; alg={}{}",
                summary.thumbprint,
                summary.alg,
                summary
                    .kid
                    .as_deref()
                    .map(|kid| format!("; kid={}", preview(kid)))
                    .unwrap_or_default()
            )),
    )
    .await;
    Ok(summary)
}

/// Removes the public key `thumbprint` from `key`: assertions it signs are
/// refused from now on, on every instance (public keys are read for each
/// assertion). The last public key of a key without a secret stays.
pub async fn remove_public_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    thumbprint: &str,
) -> Result<PublicKeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    let removed = service.store.remove_public_key(&found.id, thumbprint).await;
    service.credentials.forget_key(&found.client_id);
    let row = match removed? {
        PublicKeyRemoval::Removed(row) => row,
        PublicKeyRemoval::NotFound => {
            return Err(ServiceError::NotFound(format!(
                "key {} has no public key with thumbprint `{}`",
                found.client_id,
                preview(thumbprint)
            )));
        }
        PublicKeyRemoval::LastWayIn => {
            return Err(ServiceError::Conflict(format!(
                "this is the last public key of key {}, which has no secret: \
                 add its successor first, or the key could never authenticate again",
                found.client_id
            )));
        }
    };
    let summary = PublicKeySummary::from_row(row)?;
    audit::record(
        &service.store,
        &principal,
        Event::new("key.public_key.remove")
            .tenant(&found.tenant_id)
            .target(&found.client_id)
            .detail(format!(
                "thumbprint={}; alg={}",
                summary.thumbprint, summary.alg
            )),
    )
    .await;
    Ok(summary)
}
