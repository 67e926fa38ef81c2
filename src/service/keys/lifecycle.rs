//! A key's state: revoke, delete, disable, enable, and the mark that
//! makes it sign its owner's webhooks.

use super::{KeyStatus, KeySummary, visible_key};
use crate::domain::{KEYS_MANAGE, Principal, now};
use crate::service::audit::{self, Event};
use crate::service::{Result, Service, ServiceError, authz};
use crate::storage::KeyRevocation;

/// Revokes a key at once, always: a leaked key must stop working even if it
/// signs webhooks (the mark then moves to its owner's newest other active
/// key, or the owner is left without one). Revoking a revoked key is an
/// error, so a typo'd id never looks like success. Revoked keys never return.
pub async fn revoke_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    let already = || ServiceError::Conflict(format!("key {} is already revoked", found.client_id));
    if found.status == KeyStatus::Revoked {
        return Err(already());
    }
    let revocation = service
        .store
        .revoke_key(&found.id, principal.actor_label(), now())
        .await;
    service.credentials.forget_key(&found.client_id);
    service.sigv4_keys.forget(&found.client_id);
    let revocation = revocation?;
    let KeyRevocation::Revoked {
        signed_webhooks,
        mark_moved_to,
    } = revocation
    else {
        // Revoked by someone else between the lookup and now.
        return Err(already());
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("key.revoke")
            .tenant(&found.tenant_id)
            .target(&found.client_id),
    )
    .await;
    if signed_webhooks {
        let event = match &mark_moved_to {
            Some(successor) => Event::new("key.mark_webhook_signing")
                .target(successor)
                .detail(format!("moved from revoked key {}", found.client_id)),
            None => Event::new("key.unmark_webhook_signing")
                .target(&found.client_id)
                .detail("revoked; the owner has no other active key to sign webhooks".to_owned()),
        };
        audit::record(&service.store, &principal, event.tenant(&found.tenant_id)).await;
    }
    visible_key(service, &principal, &found.id).await
}

fn refuse_if_signing_webhooks(key: &KeySummary) -> Result<()> {
    // A disabled key keeps its mark: it may come back.
    if key.signs_webhooks && matches!(key.status, KeyStatus::Active | KeyStatus::Disabled) {
        return Err(ServiceError::Conflict(format!(
            "key {} signs webhooks and cannot be deleted: mark another key to sign webhooks, or revoke it first",
            key.client_id
        )));
    }
    Ok(())
}

/// Deletes a key. People must confirm with [`KeySummary::deletion_phrase`]
/// or the key's name ([`KeySummary::confirms_deletion`]);
/// the operator's CLI need not. The key that signs webhooks is not deleted
/// while active: its signatures must stay explainable.
pub async fn delete_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    confirmation: Option<&str>,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    refuse_if_signing_webhooks(&found)?;
    if !principal.is_operator() && !confirmation.is_some_and(|typed| found.confirms_deletion(typed))
    {
        return Err(ServiceError::ConfirmationRequired {
            phrase: found.deletion_phrase(),
        });
    }
    let deleted = service.store.delete_key(&found.id, now()).await;
    service.credentials.forget_key(&found.client_id);
    service.sigv4_keys.forget(&found.client_id);
    if !deleted? {
        return Err(ServiceError::NotFound(format!(
            "key {} was already deleted",
            found.client_id
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("key.delete")
            .tenant(&found.tenant_id)
            .target(&found.client_id),
    )
    .await;
    Ok(found)
}

/// Makes `key` the one that signs its owner's webhooks (the mark moves; it is
/// never on two keys of one owner).
pub async fn mark_webhook_signing(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    if found.status != KeyStatus::Active {
        return Err(ServiceError::Conflict(format!(
            "key {} is {} and cannot sign webhooks",
            found.client_id,
            found.status.as_str()
        )));
    }
    if !found.has_webhook_signing_key {
        return Err(ServiceError::Conflict(format!(
            "key {} was created before webhook signing and has no webhook-signing key; \
             mark a key created since",
            found.client_id
        )));
    }
    service
        .store
        .mark_webhook_signing(&found.owner_id, &found.id, now())
        .await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("key.mark_webhook_signing")
            .tenant(&found.tenant_id)
            .target(&found.client_id),
    )
    .await;
    visible_key(service, &principal, &found.id).await
}

/// Disables a key: from now on it is refused everywhere, exactly like a
/// revoked key (the token endpoint, `x-api-key`, its tokens at the
/// management endpoints, introspection), until [`enable_key`]. It keeps
/// its webhook-signing mark and still counts toward its owner's limit.
pub async fn disable_key(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<KeySummary> {
    set_disabled(service, principal, key, true).await
}

/// Enables a disabled key again, at once. Revoked keys never come back.
pub async fn enable_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    set_disabled(service, principal, key, false).await
}

async fn set_disabled(
    service: &Service,
    principal: &Principal,
    key: &str,
    disable: bool,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    let client_id = &found.client_id;
    if found.status == KeyStatus::Revoked {
        return Err(ServiceError::Conflict(if disable {
            format!("key {client_id} is revoked already, for good")
        } else {
            format!("key {client_id} is revoked, and a revoked key can never be enabled again")
        }));
    }
    let is_disabled = found.disabled_at.is_some();
    if disable == is_disabled {
        return Err(ServiceError::Conflict(format!(
            "key {client_id} is {} already",
            if disable { "disabled" } else { "enabled" }
        )));
    }
    let at = now();
    let changed = service
        .store
        .set_key_disabled(
            &found.id,
            disable.then_some((at, principal.actor_label())),
            at,
        )
        .await;
    service.credentials.forget_key(client_id);
    if disable {
        service.sigv4_keys.forget(&found.client_id);
    }
    if !changed? {
        return Err(ServiceError::Conflict(format!(
            "key {client_id} changed meanwhile (revoked, or {} by someone else)",
            if disable { "disabled" } else { "enabled" }
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new(if disable { "key.disable" } else { "key.enable" })
            .tenant(&found.tenant_id)
            .target(client_id),
    )
    .await;
    visible_key(service, &principal, &found.id).await
}
