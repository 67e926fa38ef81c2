//! Tenants (companies): created by the operator; their policy (API-only
//! users, the default rate of keys for reports and webhooks) set by their
//! admins (`tenant:manage`).

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Event};
use super::{Result, Service, ServiceError, authz, preview};
use crate::domain::{Principal, RateLimit, TENANT_MANAGE, TenantName, UnixTime, now};
use crate::storage::{RateColumns, StorageError, TenantPolicyRow, TenantRow};

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: UnixTime,
}

/// Every tenant. Only the operator sees across companies.
pub async fn list_tenants(service: &Service, principal: &Principal) -> Result<Vec<Tenant>> {
    if !principal.is_operator() {
        return Err(ServiceError::Forbidden(
            "only the operator lists tenants".to_owned(),
        ));
    }
    Ok(service
        .store
        .list_tenants()
        .await?
        .into_iter()
        .map(|row| Tenant {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
        })
        .collect())
}

/// Creates a tenant. Only the operator creates companies.
pub async fn create_tenant(service: &Service, principal: &Principal, name: &str) -> Result<Tenant> {
    if !principal.is_operator() {
        return Err(ServiceError::Forbidden(
            "only the operator creates tenants".to_owned(),
        ));
    }
    let name = TenantName::parse(name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let row = service
        .store
        .insert_tenant(&Uuid::now_v7().to_string(), name.as_str(), now())
        .await?;
    audit::record(
        &service.store,
        principal,
        Event::new("tenant.create")
            .tenant(&row.id)
            .target(&row.name),
    )
    .await;
    Ok(Tenant {
        id: row.id,
        name: row.name,
        created_at: row.created_at,
    })
}

/// A tenant by id or name.
pub(super) async fn find_tenant(service: &Service, tenant: &str) -> Result<TenantRow> {
    service.store.find_tenant(tenant).await?.ok_or_else(|| {
        ServiceError::NotFound(format!("no tenant with id or name `{}`", preview(tenant)))
    })
}

/// The tenant an operation acts in: a person's own, or the one the operator
/// names (by id or name).
pub(super) async fn acting_tenant(
    service: &Service,
    principal: &Principal,
    named: Option<&str>,
) -> Result<String> {
    match (principal.tenant_id(), named) {
        (Some(own), _) => Ok(own.to_owned()),
        (None, Some(named)) => Ok(find_tenant(service, named).await?.id),
        (None, None) => Err(ServiceError::Invalid("name the tenant".to_owned())),
    }
}

/// A company's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TenantPolicy {
    /// Users holding an active key may not sign in with a password.
    pub api_only_users: bool,
    /// The rate of keys without their own, for reports and webhooks;
    /// also the most a member may give a key. `None`: unlimited.
    pub default_rate_limit: Option<RateLimit>,
}

impl TenantPolicy {
    fn from_row(tenant_id: &str, row: TenantPolicyRow) -> Result<Self, StorageError> {
        Ok(TenantPolicy {
            api_only_users: row.api_only_users != 0,
            default_rate_limit: RateLimit::from_stored(
                row.default_rate_limit_requests,
                row.default_rate_limit_per_seconds,
                row.default_rate_limit_burst,
            )
            .map_err(|e| StorageError::Corrupt(format!("tenant {tenant_id}: {e}")))?,
        })
    }
}

/// What [`set_policy`] changes; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyChange {
    pub api_only_users: Option<bool>,
    /// `Some(None)` removes the default: keys without their own rate are
    /// unlimited.
    pub default_rate_limit: Option<Option<RateLimit>>,
}

/// The default rate of `tenant_id`'s keys, for the rules on keys.
pub(super) async fn default_rate_limit(
    service: &Service,
    tenant_id: &str,
) -> Result<Option<RateLimit>> {
    Ok(match service.store.tenant_policy(tenant_id).await? {
        Some(row) => TenantPolicy::from_row(tenant_id, row)?.default_rate_limit,
        None => None,
    })
}

/// Whether the caller's company has the "API-only users" policy on.
pub async fn api_only_users(service: &Service, principal: &Principal) -> Result<bool> {
    let principal = authz::require(service, principal, TENANT_MANAGE).await?;
    let tenant_id = principal.tenant_id().ok_or_else(|| {
        ServiceError::Invalid("the operator reads policies per tenant".to_owned())
    })?;
    Ok(service.store.api_only_users(tenant_id).await?)
}

/// The "API-only users" policy: users holding an active key cannot sign in
/// with a password. Turning it on ends the sessions they already have.
/// `tenant`: the operator names one; a person acts on their own.
pub async fn set_api_only_users(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
    on: bool,
) -> Result<()> {
    let change = PolicyChange {
        api_only_users: Some(on),
        ..PolicyChange::default()
    };
    set_policy(service, principal, tenant, change).await?;
    Ok(())
}

/// Changes a company's policy: the "API-only users" policy (see
/// [`set_api_only_users`]) and the default rate of keys without their own,
/// which applies to them at once (to their tokens from the next one
/// issued). Answers the policy now in force. `tenant`: the operator names
/// one; a person acts on their own.
pub async fn set_policy(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
    change: PolicyChange,
) -> Result<TenantPolicy> {
    let principal = authz::require(service, principal, TENANT_MANAGE).await?;
    if change.api_only_users.is_none() && change.default_rate_limit.is_none() {
        return Err(ServiceError::Invalid(
            "nothing to change: send api_only_users or default_rate_limit".to_owned(),
        ));
    }
    let tenant_id = acting_tenant(service, &principal, tenant).await?;
    let at = now();
    let mut detail = Vec::new();
    if let Some(on) = change.api_only_users {
        service.store.set_api_only_users(&tenant_id, on, at).await?;
        let ended = if on {
            service
                .store
                .delete_sessions_of_key_holders(&tenant_id, at)
                .await?
        } else {
            0
        };
        detail.push(format!("api_only_users={on} sessions_ended={ended}"));
    }
    if let Some(rate) = change.default_rate_limit {
        let columns = rate.map(|limit| {
            let (requests, per_seconds, burst) = limit.to_stored();
            RateColumns {
                requests,
                per_seconds,
                burst,
            }
        });
        let changed = service
            .store
            .set_default_rate_limit(&tenant_id, columns, at)
            .await;
        service.credentials.forget_tenant(&tenant_id);
        changed?;
        detail.push(match rate {
            Some(limit) => format!("default_rate_limit=[{limit}]"),
            None => "default_rate_limit=none".to_owned(),
        });
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("tenant.set_policy")
            .tenant(&tenant_id)
            .target(&tenant_id)
            .detail(detail.join(" ")),
    )
    .await;
    let row = service
        .store
        .tenant_policy(&tenant_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("the tenant was deleted".to_owned()))?;
    Ok(TenantPolicy::from_row(&tenant_id, row)?)
}
