//! The rules for tenants, users and keys, shared by the CLI and the HTTP API:
//! both call these functions, so both follow the same rules.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::audit::{self, Actor, ActorKind};
use crate::domain::{
    ClientId, ClientSecret, Email, KEYS_MANAGE, KeyName, Role, ScopeSet, TenantName, UnixTime,
    UserStatus, now,
};
use crate::storage::{KeyFilter, KeyInsert, KeyRow, NewKey, NewUser, StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the owner already holds {limit} active keys; revoke one before creating another")]
    KeyLimitReached { limit: u32 },
    #[error("{0}")]
    Forbidden(String),
    /// A deletion needs the caller to type this exact phrase back.
    #[error("send {{\"confirm\": \"{phrase}\"}} to delete this key; it cannot be undone")]
    ConfirmationRequired { phrase: String },
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for AdminError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Constraint(name) => AdminError::Conflict(match name.as_str() {
                "tenants_name_unique" => "a tenant with that name already exists".to_owned(),
                "users_email_unique" => "a user with that email already exists".to_owned(),
                _ => "that would duplicate an existing record".to_owned(),
            }),
            other => AdminError::Storage(other),
        }
    }
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub status: String,
    pub created_at: UnixTime,
}

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
    pub owner_email: &'a str,
    pub name: &'a str,
    /// `None`: the key holds whatever its owner is permitted, now and later.
    pub scopes: Option<&'a str>,
    pub expires_in: Option<Duration>,
    pub token_ttl: Option<Duration>,
}

/// Limits that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    pub max_active_keys_per_user: u32,
    pub max_token_ttl: Duration,
}

pub async fn create_tenant(store: &Store, name: &str) -> Result<Tenant> {
    let name = TenantName::parse(name).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let row = store
        .insert_tenant(&Uuid::now_v7().to_string(), name.as_str(), now())
        .await?;
    Ok(Tenant {
        id: row.id,
        name: row.name,
        created_at: row.created_at,
    })
}

pub async fn create_user(
    store: &Store,
    tenant: &str,
    email: &str,
    role: &str,
    permissions: &str,
) -> Result<User> {
    let email = Email::parse(email).map_err(AdminError::Invalid)?;
    let role: Role = role.parse().map_err(AdminError::Invalid)?;
    let permissions =
        ScopeSet::parse(permissions).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let tenant = store
        .find_tenant(tenant)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no tenant with id or name `{tenant}`")))?;
    let permissions_text = permissions.to_string();
    let id = Uuid::now_v7().to_string();
    let row = store
        .insert_user(NewUser {
            id: &id,
            tenant_id: &tenant.id,
            email: email.as_str(),
            role: role.as_str(),
            permissions: &permissions_text,
            now: now(),
        })
        .await?;
    Ok(User {
        id: row.id,
        tenant_id: row.tenant_id,
        email: row.email,
        role: row.role,
        permissions: permissions.to_vec(),
        status: row.status,
        created_at: row.created_at,
    })
}

pub async fn set_user_status(store: &Store, email: &str, status: UserStatus) -> Result<()> {
    let user = find_user(store, email).await?;
    store
        .set_user_status(&user.id, status.as_str(), now())
        .await?;
    Ok(())
}

pub async fn set_user_permissions(store: &Store, email: &str, permissions: &str) -> Result<()> {
    let permissions =
        ScopeSet::parse(permissions).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let user = find_user(store, email).await?;
    store
        .set_user_permissions(&user.id, &permissions.to_string(), now())
        .await?;
    Ok(())
}

async fn find_user(store: &Store, email: &str) -> Result<crate::storage::UserRow> {
    let email = Email::parse(email).map_err(AdminError::Invalid)?;
    store
        .find_user_by_email(email.as_str())
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no user with email `{email}`")))
}

pub async fn create_key(
    store: &Store,
    policy: KeyPolicy,
    actor: &Actor,
    request: NewKeyRequest<'_>,
) -> Result<CreatedKey> {
    let name = KeyName::parse(request.name).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let owner = find_user(store, request.owner_email).await?;
    if let ActorKind::User {
        user_id, scopes, ..
    } = &actor.kind
    {
        if !scopes.contains(KEYS_MANAGE) {
            return Err(AdminError::Forbidden(format!(
                "creating keys needs the `{KEYS_MANAGE}` permission"
            )));
        }
        if *user_id != owner.id {
            return Err(AdminError::Forbidden(
                "you may create keys only for yourself".to_owned(),
            ));
        }
    }
    if owner.status != UserStatus::Active.as_str() {
        return Err(AdminError::Invalid(format!(
            "user `{}` is disabled and cannot hold new keys",
            owner.email
        )));
    }
    let scopes = match request.scopes {
        None => None,
        Some(raw) => {
            let wanted = ScopeSet::parse(raw).map_err(|e| AdminError::Invalid(e.to_string()))?;
            if wanted.is_empty() {
                return Err(AdminError::Invalid(
                    "a key needs at least one scope; leave scopes out to inherit the owner's permissions".to_owned(),
                ));
            }
            let held = ScopeSet::parse(&owner.permissions)
                .map_err(|e| AdminError::Storage(StorageError::Corrupt(e.to_string())))?;
            let beyond = wanted.missing_from(&held);
            if !beyond.is_empty() {
                return Err(AdminError::Invalid(format!(
                    "the owner is not permitted these scopes: {beyond}"
                )));
            }
            Some(wanted.to_string())
        }
    };
    let token_ttl_seconds = match request.token_ttl {
        None => None,
        Some(ttl) if ttl.is_zero() || ttl > policy.max_token_ttl => {
            return Err(AdminError::Invalid(format!(
                "the token lifetime must be between 1 and {} seconds",
                policy.max_token_ttl.as_secs()
            )));
        }
        Some(ttl) => Some(ttl.as_secs() as i64),
    };
    let created_at = now();
    let expires_at = match request.expires_in {
        None => None,
        Some(d) if d.is_zero() => {
            return Err(AdminError::Invalid(
                "the expiry must be in the future".to_owned(),
            ));
        }
        Some(d) => Some(created_at.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
    };
    let id = Uuid::now_v7().to_string();
    let client_id = ClientId::generate();
    let secret = ClientSecret::generate();
    let digest = secret.digest().to_hex();
    let inserted = store
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
            policy.max_active_keys_per_user,
        )
        .await?;
    let signs_webhooks = match inserted {
        KeyInsert::Inserted { signs_webhooks } => signs_webhooks,
        KeyInsert::LimitReached { .. } => {
            return Err(AdminError::KeyLimitReached {
                limit: policy.max_active_keys_per_user,
            });
        }
    };
    audit::record(
        store,
        actor,
        Some(&owner.tenant_id),
        "key.create",
        Some(client_id.as_str()),
        Some(format!("name={}", name.as_str())),
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

pub enum KeyListing<'a> {
    All,
    OwnedBy(&'a str),
    InTenant(&'a str),
    /// What `actor` may see: an admin's whole tenant, a member's own keys.
    VisibleTo(&'a Actor),
}

pub async fn list_keys(store: &Store, listing: KeyListing<'_>) -> Result<Vec<KeySummary>> {
    let filter = match listing {
        KeyListing::All => KeyFilter::default(),
        KeyListing::OwnedBy(email) => KeyFilter {
            owner_id: Some(find_user(store, email).await?.id),
            ..KeyFilter::default()
        },
        KeyListing::InTenant(tenant) => KeyFilter {
            tenant_id: Some(
                store
                    .find_tenant(tenant)
                    .await?
                    .ok_or_else(|| {
                        AdminError::NotFound(format!("no tenant with id or name `{tenant}`"))
                    })?
                    .id,
            ),
            ..KeyFilter::default()
        },
        KeyListing::VisibleTo(actor) => match &actor.kind {
            ActorKind::Operator => KeyFilter::default(),
            ActorKind::User {
                user_id,
                tenant_id,
                role,
                ..
            } => KeyFilter {
                tenant_id: Some(tenant_id.clone()),
                owner_id: (*role != Role::Admin).then(|| user_id.clone()),
            },
        },
    };
    let at = now();
    Ok(store
        .list_keys(&filter)
        .await?
        .into_iter()
        .map(|row| KeySummary::from_row(row, at))
        .collect())
}

/// Finds a key `actor` may act on: another tenant's key does not exist for
/// them (404); a colleague's key is forbidden to a member (403).
pub async fn find_key(store: &Store, actor: &Actor, key: &str) -> Result<KeySummary> {
    let not_found =
        || AdminError::NotFound(format!("no key with id or client ID `{}`", preview(key)));
    let found = store
        .find_key(key)
        .await?
        .map(|row| KeySummary::from_row(row, now()))
        .ok_or_else(not_found)?;
    match &actor.kind {
        ActorKind::Operator => Ok(found),
        ActorKind::User { tenant_id, .. } if *tenant_id != found.tenant_id => Err(not_found()),
        ActorKind::User {
            role: Role::Admin, ..
        } => Ok(found),
        ActorKind::User { user_id, .. } if *user_id == found.owner_id => Ok(found),
        ActorKind::User { .. } => Err(AdminError::Forbidden(
            "members may manage only their own keys".to_owned(),
        )),
    }
}

fn refuse_if_signing_webhooks(key: &KeySummary, what: &str) -> Result<()> {
    if key.signs_webhooks && key.status == KeyStatus::Active {
        return Err(AdminError::Conflict(format!(
            "key {} signs webhooks and cannot be {what}: mark another key to sign webhooks first",
            key.client_id
        )));
    }
    Ok(())
}

/// Revokes a key; revoking a revoked key is an error, so a typo'd id never
/// looks like success. Revoked keys are never re-activated.
pub async fn revoke_key(store: &Store, actor: &Actor, key: &str) -> Result<KeySummary> {
    let found = find_key(store, actor, key).await?;
    if found.status == KeyStatus::Revoked {
        return Err(AdminError::Conflict(format!(
            "key {} is already revoked",
            found.client_id
        )));
    }
    refuse_if_signing_webhooks(&found, "revoked")?;
    if !store.revoke_key(&found.id, actor.label(), now()).await? {
        // Revoked by someone else between the lookup and now.
        return Err(AdminError::Conflict(format!(
            "key {} is already revoked",
            found.client_id
        )));
    }
    audit::record(
        store,
        actor,
        Some(&found.tenant_id),
        "key.revoke",
        Some(&found.client_id),
        None,
    )
    .await;
    find_key(store, actor, &found.id).await
}

/// Deletes a key. People must confirm with [`KeySummary::deletion_phrase`];
/// the operator's CLI need not.
pub async fn delete_key(
    store: &Store,
    actor: &Actor,
    key: &str,
    confirmation: Option<&str>,
) -> Result<KeySummary> {
    let found = find_key(store, actor, key).await?;
    refuse_if_signing_webhooks(&found, "deleted")?;
    if matches!(actor.kind, ActorKind::User { .. }) {
        let phrase = found.deletion_phrase();
        if confirmation.map(str::trim) != Some(phrase.as_str()) {
            return Err(AdminError::ConfirmationRequired { phrase });
        }
    }
    if !store.delete_key(&found.id).await? {
        return Err(AdminError::NotFound(format!(
            "key {} was already deleted",
            found.client_id
        )));
    }
    audit::record(
        store,
        actor,
        Some(&found.tenant_id),
        "key.delete",
        Some(&found.client_id),
        None,
    )
    .await;
    Ok(found)
}

/// Makes `key` the one that signs its owner's webhooks (the mark moves; it is
/// never on two keys of one owner).
pub async fn mark_webhook_signing(store: &Store, actor: &Actor, key: &str) -> Result<KeySummary> {
    let found = find_key(store, actor, key).await?;
    if found.status != KeyStatus::Active {
        return Err(AdminError::Conflict(format!(
            "key {} is {} and cannot sign webhooks",
            found.client_id,
            found.status.as_str()
        )));
    }
    store
        .mark_webhook_signing(&found.owner_id, &found.id, now())
        .await?;
    audit::record(
        store,
        actor,
        Some(&found.tenant_id),
        "key.mark_webhook_signing",
        Some(&found.client_id),
        None,
    )
    .await;
    find_key(store, actor, &found.id).await
}

fn preview(raw: &str) -> String {
    raw.chars().take(80).collect()
}

/// A user as admins see them: role, permissions and sign-in lock.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub email: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub status: String,
    pub locked: bool,
    #[schema(value_type = Option<i64>)]
    pub locked_until: Option<UnixTime>,
    pub failed_sign_ins: i64,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

fn require_admin_of(actor: &Actor, tenant_id: &str) -> Result<()> {
    match &actor.kind {
        ActorKind::Operator => Ok(()),
        ActorKind::User {
            tenant_id: own,
            role: Role::Admin,
            ..
        } if own == tenant_id => Ok(()),
        ActorKind::User { .. } => Err(AdminError::Forbidden("only admins may do this".to_owned())),
    }
}

pub async fn list_users(store: &Store, actor: &Actor, tenant_id: &str) -> Result<Vec<UserSummary>> {
    require_admin_of(actor, tenant_id)?;
    let at = now();
    Ok(store
        .list_users(tenant_id)
        .await?
        .into_iter()
        .map(|u| UserSummary {
            locked: u.locked_until.is_some_and(|until| until > at),
            permissions: u
                .permissions
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            id: u.id,
            email: u.email,
            role: u.role,
            status: u.status,
            locked_until: u.locked_until.filter(|until| *until > at),
            failed_sign_ins: u.failed_sign_ins,
            created_at: u.created_at,
        })
        .collect())
}

/// Lifts a sign-in lock (and forgets the failures that led to it).
pub async fn unlock_user(store: &Store, actor: &Actor, user: &str) -> Result<()> {
    let not_found = || AdminError::NotFound("no such user".to_owned());
    let found = match store.find_user_by_id(user).await? {
        Some(found) => found,
        None => match Email::parse(user) {
            Ok(email) => store
                .find_user_by_email(email.as_str())
                .await?
                .ok_or_else(not_found)?,
            Err(_) => return Err(not_found()),
        },
    };
    if let Some(tenant) = actor.tenant_id()
        && tenant != found.tenant_id
    {
        return Err(AdminError::NotFound("no such user".to_owned()));
    }
    require_admin_of(actor, &found.tenant_id)?;
    store.set_sign_in_failures(&found.id, 0, None, None).await?;
    audit::record(
        store,
        actor,
        Some(&found.tenant_id),
        "user.unlock",
        Some(&found.email),
        None,
    )
    .await;
    Ok(())
}

/// The "API-only users" policy: users holding an active key cannot sign in
/// with a password.
pub async fn set_api_only_users(
    store: &Store,
    actor: &Actor,
    tenant: &str,
    on: bool,
) -> Result<()> {
    let found = store.find_tenant(tenant).await?.ok_or_else(|| {
        AdminError::NotFound(format!("no tenant with id or name `{}`", preview(tenant)))
    })?;
    require_admin_of(actor, &found.id)?;
    store.set_api_only_users(&found.id, on, now()).await?;
    audit::record(
        store,
        actor,
        Some(&found.id),
        "tenant.set_policy",
        Some(&found.id),
        Some(format!("api_only_users={on}")),
    )
    .await;
    Ok(())
}
