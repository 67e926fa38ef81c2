//! Tenants (companies): created by the operator; their policy set by their
//! admins (`tenant:manage`).

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Event};
use super::{Result, Service, ServiceError, authz, preview};
use crate::domain::{Principal, TENANT_MANAGE, TenantName, UnixTime, now};
use crate::storage::TenantRow;

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: UnixTime,
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
    let principal = authz::require(service, principal, TENANT_MANAGE).await?;
    let tenant_id = match (principal.tenant_id(), tenant) {
        (Some(own), _) => own.to_owned(),
        (None, Some(named)) => find_tenant(service, named).await?.id,
        (None, None) => return Err(ServiceError::Invalid("name the tenant".to_owned())),
    };
    let at = now();
    service.store.set_api_only_users(&tenant_id, on, at).await?;
    let ended = if on {
        service
            .store
            .delete_sessions_of_key_holders(&tenant_id, at)
            .await?
    } else {
        0
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("tenant.set_policy")
            .tenant(&tenant_id)
            .target(&tenant_id)
            .detail(format!("api_only_users={on} sessions_ended={ended}")),
    )
    .await;
    Ok(())
}
