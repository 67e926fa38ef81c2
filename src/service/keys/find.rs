//! Listing and finding the keys a principal may manage: another
//! company's keys do not exist for them; a member sees only their own.

use super::{KeySummary, find_user_by_email};
use crate::domain::{KEYS_MANAGE, KeyLabels, Principal, now};
use crate::service::authz::Reach;
use crate::service::{Result, Service, ServiceError, authz, preview};
use crate::storage::KeyFilter;

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
    list_keys_labelled::<&str>(service, principal, listing, &[]).await
}

/// [`list_keys`], keeping only the keys that carry every one of `labels`
/// (each `name=value`).
pub async fn list_keys_labelled<S: AsRef<str>>(
    service: &Service,
    principal: &Principal,
    listing: KeyListing<'_>,
    labels: &[S],
) -> Result<Vec<KeySummary>> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let wanted = labels
        .iter()
        .map(|raw| KeyLabels::parse_assignment(raw.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Invalid(format!("label filter: {e}")))?;
    let filter = match (&principal.user, listing) {
        (Some(user), _) => KeyFilter {
            tenant_id: Some(user.tenant_id.clone()),
            owner_id: authz::visible_owner(user.into()).map(str::to_owned),
        },
        (None, KeyListing::All) => KeyFilter::default(),
        (None, KeyListing::OwnedBy(email)) => KeyFilter {
            owner_id: Some(find_user_by_email(service, email).await?.id),
            ..KeyFilter::default()
        },
        (None, KeyListing::InTenant(tenant)) => KeyFilter {
            tenant_id: Some(
                crate::service::tenants::find_tenant(service, tenant)
                    .await?
                    .id,
            ),
            ..KeyFilter::default()
        },
    };
    let at = now();
    // A tenant's keys are few (a handful per user), so labels are matched
    // here rather than in SQL both databases would have to agree on.
    let mut keys = Vec::new();
    for row in service.store.list_keys(&filter).await? {
        let key = KeySummary::from_row(row, at)?;
        if key.labels.has_all(&wanted) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Finds a key `principal` may manage: another tenant's key does not exist
/// for them (404); a colleague's key is forbidden to a member (403).
pub async fn find_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    visible_key(service, &principal, key).await
}

/// [`find_key`] for a principal already checked.
pub(in crate::service) async fn visible_key(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<KeySummary> {
    let not_found =
        || ServiceError::NotFound(format!("no key with id or client ID `{}`", preview(key)));
    let found = service
        .store
        .find_key(key)
        .await?
        .map(|row| KeySummary::from_row(row, now()))
        .transpose()?
        .ok_or_else(not_found)?;
    let Some(user) = &principal.user else {
        return Ok(found);
    };
    match authz::reach(user.into(), &found.tenant_id, &found.owner_id) {
        Reach::Manages => Ok(found),
        Reach::OtherCompany => Err(not_found()),
        Reach::Colleagues => Err(ServiceError::Forbidden(
            "members may manage only their own keys".to_owned(),
        )),
    }
}
