//! Client authentication: is this client ID + secret a live key, and what may
//! it do right now?

use crate::domain::{ClientId, ClientSecret, Role, ScopeSet, SecretDigest, UnixTime, UserStatus};
use crate::storage::{KeyAuthRow, StorageError, Store};

/// A key that proved its secret, with what it may do at this moment: its
/// scopes narrowed to its owner's current permissions.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub key_id: String,
    pub client_id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub owner_role: Role,
    pub scopes: ScopeSet,
    pub token_ttl_seconds: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Unknown client ID or wrong secret: deliberately indistinguishable.
    #[error("{}", self.message())]
    BadCredentials,
    #[error("{}", self.message())]
    Revoked,
    #[error("{}", self.message())]
    Expired,
    #[error("{}", self.message())]
    OwnerDisabled,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ClientAuthError {
    /// What the caller is told; static so every boundary can carry it.
    pub fn message(&self) -> &'static str {
        match self {
            ClientAuthError::BadCredentials => "client authentication failed",
            ClientAuthError::Revoked => "the key has been revoked",
            ClientAuthError::Expired => "the key has expired",
            ClientAuthError::OwnerDisabled => "the key's owner is disabled",
            ClientAuthError::Storage(_) => "the database is unavailable",
        }
    }
}

pub async fn authenticate(
    store: &Store,
    client_id: &ClientId,
    secret: &ClientSecret,
    at: UnixTime,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let presented = secret.digest();
    let Some(row) = store.find_key_for_auth(client_id.as_str()).await? else {
        // Same work as a known client ID, so timing does not tell them apart.
        let _ = presented.matches(&unknown_client_digest());
        return Err(ClientAuthError::BadCredentials);
    };
    let stored = SecretDigest::from_hex(&row.secret_digest)
        .ok_or_else(|| StorageError::Corrupt(format!("key {} has a malformed digest", row.id)))?;
    if !presented.matches(&stored) {
        return Err(ClientAuthError::BadCredentials);
    }
    authorise(row, at)
}

/// Authenticates a secret presented on its own (`x-api-key`): its digest is
/// unique, so it finds its key without a client ID.
pub async fn authenticate_secret(
    store: &Store,
    secret: &ClientSecret,
    at: UnixTime,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let presented = secret.digest();
    let row = store
        .find_key_for_auth_by_digest(&presented.to_hex())
        .await?
        .ok_or(ClientAuthError::BadCredentials)?;
    authorise(row, at)
}

fn unknown_client_digest() -> SecretDigest {
    SecretDigest::from_hex(&"0".repeat(64)).unwrap_or_else(|| ClientSecret::generate().digest())
}

/// The checks after the secret matched: status, expiry, owner, scopes.
fn authorise(row: KeyAuthRow, at: UnixTime) -> Result<AuthenticatedKey, ClientAuthError> {
    if row.revoked_at.is_some() {
        return Err(ClientAuthError::Revoked);
    }
    if row.expires_at.is_some_and(|e| e <= at) {
        return Err(ClientAuthError::Expired);
    }
    let status: UserStatus = row
        .owner_status
        .parse()
        .map_err(|e: String| StorageError::Corrupt(e))?;
    if status != UserStatus::Active {
        return Err(ClientAuthError::OwnerDisabled);
    }
    let owner_role: Role = row
        .owner_role
        .parse()
        .map_err(|e: String| StorageError::Corrupt(e))?;
    let permissions = ScopeSet::parse(&row.owner_permissions)
        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let scopes = match &row.scopes {
        None => permissions,
        Some(own) => ScopeSet::parse(own)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .intersection(&permissions),
    };
    Ok(AuthenticatedKey {
        key_id: row.id,
        client_id: row.client_id,
        tenant_id: row.tenant_id,
        owner_id: row.owner_id,
        owner_role,
        scopes,
        token_ttl_seconds: row.token_ttl_seconds,
    })
}
