//! Rolling a key: its successor is created and the old key expires
//! after a grace period.

use uuid::Uuid;

use super::{
    CreatedKey, DEFAULT_ROLL_GRACE, KeyStatus, KeySummary, MAX_KEY_LIFETIME, rate_columns,
    refuse_beyond_caller, visible_key,
};
use crate::domain::{
    ClientId, ClientSecret, KEYS_MANAGE, Principal, UserStatus, WebhookSigningKey, now,
};
use crate::service::audit::{self, Event};
use crate::service::{Result, Service, ServiceError, authz};
use crate::storage::{KeyRoll, NewKey};

/// A key rolled: its successor, with the secret, and the old key as it is
/// now (expiring, naming its successor in `rolled_to`).
#[derive(Debug)]
pub struct RolledKey {
    pub new: CreatedKey,
    pub old: KeySummary,
}

/// Rolls a key: one call creates its successor (same owner, name, scopes,
/// token lifetime, allow-list, description, labels, rate and public keys; the same lifetime
/// the old key was given, counted from now), moves the webhook-signing mark
/// to it if the old key held it, and sets the old key to expire at the end
/// of `grace_seconds` (default 24 hours or `max_roll_grace_seconds` if that
/// is shorter; at most `max_roll_grace_seconds`;
/// an earlier expiry stays). The new key replaces the old one against the
/// active-key limit (a rolled key in its grace period does not count), so
/// an owner at the limit can roll. A key already rolled, or not active, is not
/// rolled. Only the key's owner (or the operator) may roll it: the new
/// secret acts as the owner, and people create keys only for themselves.
pub async fn roll_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    grace_seconds: Option<i64>,
) -> Result<RolledKey> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let old = visible_key(service, &principal, key).await?;
    authz::require_key_owner(
        &principal,
        &old.owner_id,
        "roll it, since the new secret acts as the owner; revoke or disable it instead",
    )?;
    let max_grace = service.settings.max_roll_grace.as_secs() as i64;
    let grace = grace_seconds.unwrap_or((DEFAULT_ROLL_GRACE.as_secs() as i64).min(max_grace));
    if !(1..=max_grace).contains(&grace) {
        return Err(ServiceError::Invalid(format!(
            "the grace period must be between 1 and {max_grace} seconds (max_roll_grace_seconds), not {grace}"
        )));
    }
    if old.status != KeyStatus::Active {
        return Err(ServiceError::Conflict(format!(
            "key {} is {} and cannot be rolled{}",
            old.client_id,
            old.status.as_str(),
            if old.status == KeyStatus::Disabled {
                ": enable it first, or create a new key"
            } else {
                ""
            }
        )));
    }
    if !old.secret_enabled {
        return Err(ServiceError::Conflict(format!(
            "key {} has no secret to roll: rotate its public keys instead \
             (add the new one, switch the client to it, remove the old one)",
            old.client_id
        )));
    }
    if let Some(successor) = &old.rolled_to {
        return Err(ServiceError::Conflict(format!(
            "key {} is already being rolled out to {successor}; roll {successor} instead",
            old.client_id
        )));
    }
    let owner = service
        .store
        .find_user_by_id(&old.owner_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("key {} has no owner", old.client_id)))?;
    if owner.status != UserStatus::Active.as_str() {
        return Err(ServiceError::Invalid(format!(
            "user `{}` is disabled and cannot hold new keys",
            owner.email
        )));
    }
    refuse_beyond_caller(&principal, &owner, old.scopes.as_deref(), "roll")?;

    let created_at = now();
    let expires_at = old.expires_at.map(|e| {
        let lifetime = (e - old.created_at).clamp(1, MAX_KEY_LIFETIME.as_secs() as i64);
        created_at + lifetime
    });
    let scopes = old.scopes.as_ref().map(|s| s.join(" "));
    let labels = old.labels.to_stored();
    let allowed_sources = (!old.allowed_sources.is_empty()).then(|| old.allowed_sources.join(" "));
    let rate_limit = old.own_rate_limit();
    // And its certificates (RFC 8705), for the same reason.
    let stored_certificates =
        (!old.tls_client_certificates.is_empty()).then(|| old.tls_client_certificates.join(" "));
    // The successor keeps the old key's public keys, so an integration
    // using private_key_jwt goes on signing with its key under the new
    // client ID.
    let public_keys: Vec<crate::storage::NewPublicKey> = service
        .store
        .public_keys_of_key(&old.id)
        .await?
        .into_iter()
        .map(|row| crate::storage::NewPublicKey {
            thumbprint: row.thumbprint,
            kid: row.kid,
            alg: row.alg,
            jwk: row.jwk,
        })
        .collect();
    let id = Uuid::now_v7().to_string();
    let client_id = ClientId::generate();
    let secret = ClientSecret::generate();
    let digest = secret.digest().to_hex();
    let webhook_signing_key = WebhookSigningKey::derive(&secret);
    let old_expires_at = created_at + grace;
    let rolled = service
        .store
        .roll_key(
            &old.id,
            old_expires_at,
            NewKey {
                id: &id,
                tenant_id: &old.tenant_id,
                owner_id: &old.owner_id,
                client_id: client_id.as_str(),
                secret_digest: &digest,
                name: &old.name,
                scopes: scopes.as_deref(),
                token_ttl_seconds: old.token_ttl_seconds,
                expires_at,
                description: old.description.as_deref(),
                labels: labels.as_deref(),
                allowed_sources: allowed_sources.as_deref(),
                webhook_key: &webhook_signing_key,
                rate_limit: rate_limit.map(rate_columns),
                sigv4_secret: old.sigv4.then_some(&secret),
                secret_enabled: true,
                public_keys: &public_keys,
                require_dpop: old.require_dpop,
                tls_client_auth: old.tls_client_auth.as_deref(),
                tls_client_certificates: stored_certificates.as_deref(),
                now: created_at,
            },
        )
        .await;
    // The old key's expiry moved; the new client ID may be remembered as
    // unknown.
    service.credentials.forget_key(&old.client_id);
    service.credentials.forget_key(client_id.as_str());
    let moved_mark = match rolled? {
        KeyRoll::Rolled { moved_mark, .. } => moved_mark,
        KeyRoll::NotRollable => {
            return Err(ServiceError::Conflict(format!(
                "key {} was revoked, disabled or rolled meanwhile; nothing was created",
                old.client_id
            )));
        }
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("key.roll")
            .tenant(&old.tenant_id)
            .target(&old.client_id)
            .detail(format!(
                "rolled to {client_id}; the old key expires at {}",
                old_expires_at.min(old.expires_at.unwrap_or(i64::MAX))
            )),
    )
    .await;
    if moved_mark {
        audit::record(
            &service.store,
            &principal,
            Event::new("key.mark_webhook_signing")
                .tenant(&old.tenant_id)
                .target(client_id.as_str())
                .detail(format!("moved from rolled key {}", old.client_id)),
        )
        .await;
    }
    let key = visible_key(service, &principal, &id).await?;
    let old = visible_key(service, &principal, &old.id).await?;
    Ok(RolledKey {
        new: CreatedKey {
            key,
            secret,
            webhook_signing_key,
        },
        old,
    })
}
