//! Keys: create, list, show, revoke, delete, and the webhook-signing mark.
//! Every operation needs `keys:manage`; members act only on their own keys,
//! admins on every key of their company, the operator on any key.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Event};
use super::{Result, Service, ServiceError, authz, preview};
use crate::domain::{
    ClientId, ClientSecret, Credential, Email, KEYS_MANAGE, KeyName, Principal, Role, ScopeSet,
    UnixTime, UserStatus, now,
};
use crate::storage::{KeyFilter, KeyInsert, KeyRevocation, KeyRow, NewKey, StorageError, UserRow};

/// The longest expiry a key may be given: ten years.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn of(revoked_at: Option<i64>, expires_at: Option<i64>, at: UnixTime) -> Self {
        if revoked_at.is_some() {
            KeyStatus::Revoked
        } else if expires_at.is_some_and(|e| e <= at) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

/// A key as shown to people: never the secret, never its digest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeySummary {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub owner_email: String,
    /// `null` when the key holds whatever its owner is permitted.
    pub scopes: Option<Vec<String>>,
    pub token_ttl_seconds: Option<i64>,
    pub status: KeyStatus,
    /// Unix seconds, like every `_at` member.
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub last_used_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub revoked_at: Option<UnixTime>,
    pub revoked_by: Option<String>,
    /// Whether this key signs its owner's webhook requests.
    pub signs_webhooks: bool,
}

impl KeySummary {
    fn from_row(row: KeyRow, at: UnixTime) -> Self {
        KeySummary {
            status: KeyStatus::of(row.revoked_at, row.expires_at, at),
            scopes: row.scopes.map(|s| {
                s.split(' ')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            id: row.id,
            client_id: row.client_id,
            name: row.name,
            tenant_id: row.tenant_id,
            owner_id: row.owner_id,
            owner_email: row.owner_email,
            token_ttl_seconds: row.token_ttl_seconds,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            revoked_by: row.revoked_by,
            signs_webhooks: row.signs_webhooks != 0,
        }
    }

    /// The phrase a person types to confirm deleting this key.
    pub fn deletion_phrase(&self) -> String {
        format!("delete {}", self.client_id)
    }
}

/// A key just created: the only moment its secret exists outside the caller.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: KeySummary,
    pub secret: ClientSecret,
}

pub struct NewKeyRequest<'a> {
    /// The owner's email; `None`: the calling user. Only the operator may
    /// create keys for someone else.
    pub owner_email: Option<&'a str>,
    pub name: &'a str,
    /// `None`: the key holds whatever its owner is permitted, now and later
    /// (or, created through a key or token, exactly that credential's scopes).
    pub scopes: Option<&'a str>,
    pub expires_in: Option<Duration>,
    pub token_ttl: Option<Duration>,
}

async fn find_user_by_email(service: &Service, email: &str) -> Result<UserRow> {
    let email = Email::parse(email).map_err(ServiceError::Invalid)?;
    service
        .store
        .find_user_by_email(email.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user with email `{email}`")))
}

/// The user a new key will act as.
async fn new_key_owner(
    service: &Service,
    principal: &Principal,
    owner_email: Option<&str>,
) -> Result<UserRow> {
    let owner = match (principal.user_id(), owner_email) {
        (_, Some(email)) => find_user_by_email(service, email).await?,
        (Some(user_id), None) => service
            .store
            .find_user_by_id(user_id)
            .await?
            .ok_or_else(|| ServiceError::CredentialRevoked("the calling user no longer exists"))?,
        (None, None) => {
            return Err(ServiceError::Invalid(
                "name the user the key acts as".to_owned(),
            ));
        }
    };
    if let Some(user_id) = principal.user_id()
        && user_id != owner.id
    {
        return Err(ServiceError::Forbidden(
            "you may create keys only for yourself".to_owned(),
        ));
    }
    if owner.status != UserStatus::Active.as_str() {
        return Err(ServiceError::Invalid(format!(
            "user `{}` is disabled and cannot hold new keys",
            owner.email
        )));
    }
    Ok(owner)
}

/// The scopes to store for a new key. Never beyond the owner's permissions;
/// created through a key or token, never beyond that credential's scopes.
fn new_key_scopes(
    principal: &Principal,
    owner: &UserRow,
    requested: Option<&str>,
) -> Result<Option<ScopeSet>> {
    let role: Role = owner.role.parse().map_err(StorageError::Corrupt)?;
    let granted =
        ScopeSet::parse(&owner.permissions).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let permitted = role.permissions(&granted);
    // A session holds its user's permissions; a key or token may hold less.
    let ceiling = match principal.credential {
        Credential::ApiKey { .. } | Credential::AccessToken { .. } => {
            Some(principal.scopes.intersection(&permitted))
        }
        _ => None,
    };
    let Some(raw) = requested else {
        return Ok(ceiling);
    };
    let wanted = ScopeSet::parse(raw).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if wanted.is_empty() {
        return Err(ServiceError::Invalid(
            "a key needs at least one scope; leave scopes out to inherit the owner's permissions"
                .to_owned(),
        ));
    }
    let beyond = wanted.missing_from(&permitted);
    if !beyond.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "the owner is not permitted these scopes: {beyond}"
        )));
    }
    if let Some(ceiling) = &ceiling {
        let beyond = wanted.missing_from(ceiling);
        if !beyond.is_empty() {
            return Err(ServiceError::Invalid(format!(
                "a key cannot create a key with more than its own scopes; not held: {beyond}"
            )));
        }
    }
    Ok(Some(wanted))
}

pub async fn create_key(
    service: &Service,
    principal: &Principal,
    request: NewKeyRequest<'_>,
) -> Result<CreatedKey> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let name = KeyName::parse(request.name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let owner = new_key_owner(service, &principal, request.owner_email).await?;
    let scopes = new_key_scopes(&principal, &owner, request.scopes)?.map(|s| s.to_string());
    let max_ttl = service.max_token_ttl();
    let token_ttl_seconds = match request.token_ttl {
        None => None,
        Some(ttl) if ttl.is_zero() || ttl > max_ttl => {
            return Err(ServiceError::Invalid(format!(
                "the token lifetime must be between 1 and {} seconds",
                max_ttl.as_secs()
            )));
        }
        Some(ttl) => Some(ttl.as_secs() as i64),
    };
    let created_at = now();
    let expires_at = match request.expires_in {
        None => None,
        Some(d) if d.is_zero() => {
            return Err(ServiceError::Invalid(
                "the expiry must be in the future".to_owned(),
            ));
        }
        Some(d) if d > MAX_KEY_LIFETIME => {
            return Err(ServiceError::Invalid(format!(
                "a key may expire at most {} seconds (ten years) from now",
                MAX_KEY_LIFETIME.as_secs()
            )));
        }
        Some(d) => Some(created_at + d.as_secs() as i64),
    };
    let limit = service.settings.max_active_keys_per_user;
    let id = Uuid::now_v7().to_string();
    let client_id = ClientId::generate();
    let secret = ClientSecret::generate();
    let digest = secret.digest().to_hex();
    let inserted = service
        .store
        .insert_key_within_limit(
            NewKey {
                id: &id,
                tenant_id: &owner.tenant_id,
                owner_id: &owner.id,
                client_id: client_id.as_str(),
                secret_digest: &digest,
                name: name.as_str(),
                scopes: scopes.as_deref(),
                token_ttl_seconds,
                expires_at,
                now: created_at,
            },
            limit,
        )
        .await?;
    let signs_webhooks = match inserted {
        KeyInsert::Inserted { signs_webhooks } => signs_webhooks,
        KeyInsert::LimitReached { .. } => return Err(ServiceError::KeyLimitReached { limit }),
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("key.create")
            .tenant(&owner.tenant_id)
            .target(client_id.as_str())
            .detail(format!("name={}", name.as_str())),
    )
    .await;
    let key = KeySummary {
        id,
        client_id: client_id.to_string(),
        name: name.as_str().to_owned(),
        tenant_id: owner.tenant_id,
        owner_id: owner.id,
        owner_email: owner.email,
        scopes: scopes.map(|s| s.split(' ').map(str::to_owned).collect()),
        token_ttl_seconds,
        status: KeyStatus::Active,
        created_at,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
        signs_webhooks,
    };
    Ok(CreatedKey { key, secret })
}

/// Which keys the operator lists; people always see what they may manage.
pub enum KeyListing<'a> {
    All,
    OwnedBy(&'a str),
    InTenant(&'a str),
}

/// The keys `principal` may manage: an admin's whole tenant, a member's own
/// keys; the operator's `listing`.
pub async fn list_keys(
    service: &Service,
    principal: &Principal,
    listing: KeyListing<'_>,
) -> Result<Vec<KeySummary>> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let filter = match (&principal.user, listing) {
        (Some(user), _) => KeyFilter {
            tenant_id: Some(user.tenant_id.clone()),
            owner_id: (user.role != Role::Admin).then(|| user.user_id.clone()),
        },
        (None, KeyListing::All) => KeyFilter::default(),
        (None, KeyListing::OwnedBy(email)) => KeyFilter {
            owner_id: Some(find_user_by_email(service, email).await?.id),
            ..KeyFilter::default()
        },
        (None, KeyListing::InTenant(tenant)) => KeyFilter {
            tenant_id: Some(super::tenants::find_tenant(service, tenant).await?.id),
            ..KeyFilter::default()
        },
    };
    let at = now();
    Ok(service
        .store
        .list_keys(&filter)
        .await?
        .into_iter()
        .map(|row| KeySummary::from_row(row, at))
        .collect())
}

/// Finds a key `principal` may manage: another tenant's key does not exist
/// for them (404); a colleague's key is forbidden to a member (403).
pub async fn find_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    visible_key(service, &principal, key).await
}

/// [`find_key`] for a principal already checked.
async fn visible_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    let not_found =
        || ServiceError::NotFound(format!("no key with id or client ID `{}`", preview(key)));
    let found = service
        .store
        .find_key(key)
        .await?
        .map(|row| KeySummary::from_row(row, now()))
        .ok_or_else(not_found)?;
    match &principal.user {
        None => Ok(found),
        Some(user) if user.tenant_id != found.tenant_id => Err(not_found()),
        Some(user) if user.role == Role::Admin || user.user_id == found.owner_id => Ok(found),
        Some(_) => Err(ServiceError::Forbidden(
            "members may manage only their own keys".to_owned(),
        )),
    }
}

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
        .await?;
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
    if key.signs_webhooks && key.status == KeyStatus::Active {
        return Err(ServiceError::Conflict(format!(
            "key {} signs webhooks and cannot be deleted: mark another key to sign webhooks, or revoke it first",
            key.client_id
        )));
    }
    Ok(())
}

/// Deletes a key. People must confirm with [`KeySummary::deletion_phrase`];
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
    if !principal.is_operator() {
        let phrase = found.deletion_phrase();
        if confirmation.map(str::trim) != Some(phrase.as_str()) {
            return Err(ServiceError::ConfirmationRequired { phrase });
        }
    }
    if !service.store.delete_key(&found.id).await? {
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
