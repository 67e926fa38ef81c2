//! A key's public keys, for `private_key_jwt` client authentication (RFC
//! 7523): register, list, remove. Like every key operation these need
//! `keys:manage`; members act on their own keys, admins on their
//! company's, the operator on any. Registering is the owner's (or the
//! operator's) alone, like rolling: assertions signed with the new key act
//! as the owner, so an admin adding their own public key to a colleague's
//! key would hold credentials that act as the colleague. Such a refusal is
//! audited. Removing stays open to admins: it only takes a way in away
//! (as revoking or disabling a colleague's key does). A change is audited
//! and forgotten by the credential cache at once (the triggers of
//! migration 0011 tell the other instances). The last way a key can
//! authenticate is never removed: a key without a secret keeps at least
//! one public key.

use serde_json::Value;

use super::audit::{self, Event};
use super::keys::{KeyStatus, refuse_beyond_caller, visible_key};
pub use super::public_key_values::{MAX_PUBLIC_KEYS, ParsedPublicKey, PublicKeySummary};
use super::{Result, Service, ServiceError, authz, preview};
use crate::domain::{KEYS_MANAGE, Principal, now};
use crate::storage::{PublicKeyAdd, PublicKeyRemoval};

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
/// assertions it signs. Only by the key's owner (or the operator), and by a
/// key or token of the owner only when it holds every scope the key does;
/// not on a revoked key.
pub async fn add_public_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    jwk: &Value,
) -> Result<PublicKeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    if let Err(refused) = authz::require_key_owner(
        &principal,
        &found.owner_id,
        "add a public key to it, since assertions signed with that key act as the owner",
    ) {
        audit::record(
            &service.store,
            &principal,
            Event::new("key.public_key.add_refused")
                .tenant(&found.tenant_id)
                .target(&found.client_id)
                .detail("refused: not the owner".to_owned()),
        )
        .await;
        return Err(refused);
    }
    if principal.credential.is_delegated() {
        let owner = service
            .store
            .find_user_by_id(&found.owner_id)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("key {} has no owner", found.client_id))
            })?;
        refuse_beyond_caller(
            &principal,
            &owner,
            found.scopes.as_deref(),
            "add a public key to",
        )?;
    }
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
