//! A key never holds more than who made it: the scopes a new key gets,
//! and the check that a key or token does not hand out (roll, add public
//! keys to) a key holding more than itself.

use crate::domain::{Principal, ScopeSet};
use crate::service::{Result, ServiceError, stored_permissions};
use crate::storage::{StorageError, UserRow};

/// The scopes to store for a new key. Never beyond the owner's permissions;
/// created through a key or token, never beyond that credential's scopes.
pub(super) fn new_key_scopes(
    principal: &Principal,
    owner: &UserRow,
    requested: Option<&str>,
) -> Result<Option<ScopeSet>> {
    let (_, permitted) = stored_permissions(&owner.role, &owner.permissions)?;
    // A session holds its user's permissions; a key or token may hold less.
    let ceiling = principal
        .credential
        .is_delegated()
        .then(|| principal.scopes.intersection(&permitted));
    let Some(raw) = requested else {
        return Ok(ceiling);
    };
    let wanted = ScopeSet::parse_known(raw).map_err(|e| ServiceError::Invalid(e.to_string()))?;
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

/// Refuses a key or token that would hand out a key holding more than it
/// holds itself (what [`new_key_scopes`] ensures at creation). `act`
/// completes "a key cannot … a key with more than its own scopes".
pub(in crate::service) fn refuse_beyond_caller(
    principal: &Principal,
    owner: &UserRow,
    key_scopes: Option<&[String]>,
    act: &str,
) -> Result<()> {
    if !principal.credential.is_delegated() {
        return Ok(());
    }
    let (_, permitted) = stored_permissions(&owner.role, &owner.permissions)?;
    let held = match key_scopes {
        None => permitted.clone(),
        Some(scopes) => ScopeSet::parse(&scopes.join(" "))
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .intersection(&permitted),
    };
    let beyond = held.missing_from(&principal.scopes.intersection(&permitted));
    if beyond.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "a key cannot {act} a key with more than its own scopes; not held: {beyond}"
        )))
    }
}
