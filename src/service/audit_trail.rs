//! Reading the audit trail that [`super::audit`] writes: a company's
//! events, for those holding `audit:read`. Apart from the writer, which
//! every service calls (client authentication included), so that writing
//! an event never depends on the authorisation rules.

use super::audit::{AuditFilter, AuditRow};
use super::{Result, Service, ServiceError, authz};
use crate::domain::{AUDIT_READ, Principal};

/// One page of the caller's tenant's audit trail, in the order asked for, and whether
/// more follow. Needs `audit:read`.
pub async fn list(
    service: &Service,
    principal: &Principal,
    filter: AuditFilter<'_>,
) -> Result<(Vec<AuditRow>, bool)> {
    let principal = authz::require(service, principal, AUDIT_READ).await?;
    let tenant_id = principal.tenant_id().ok_or_else(|| {
        ServiceError::Invalid("the operator reads the audit trail per tenant".to_owned())
    })?;
    Ok(service.store.list_audit(tenant_id, &filter).await?)
}
