//! The first run: while nobody uses the server, the console's one-time link
//! creates the first company and its admin, as the operator would with the
//! CLI.

use super::tenants::create_tenant;
use super::users::{NewUserRequest, create_user};
use super::{Result, Service, ServiceError, sessions};
use crate::domain::{Email, Principal, SETUP_GRANTS, TenantName};

/// Whether nobody uses this server yet (no user in any tenant): the console
/// then offers a one-time setup page.
pub async fn is_first_run(service: &Service) -> Result<bool> {
    Ok(service.store.count_users().await? == 0)
}

/// The first run: the first company, its first admin (holding every
/// grantable permission) and their password, as the operator would create
/// them with the CLI. Refused once anybody exists.
pub async fn first_run(
    service: &Service,
    source_address: Option<std::net::IpAddr>,
    company: &str,
    email: &str,
    password: &str,
) -> Result<()> {
    if !is_first_run(service).await? {
        return Err(ServiceError::Conflict(
            "this server is already set up: sign in instead".to_owned(),
        ));
    }
    // Check everything that can be wrong before creating anything, so a
    // refusal leaves no half-made company behind and the link can be used
    // again with the form corrected.
    TenantName::parse(company).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Email::parse(email).map_err(ServiceError::Invalid)?;
    sessions::check_strength(password)?;
    let operator = Principal::setup_link(source_address);
    let tenant = create_tenant(service, &operator, company).await?;
    create_user(
        service,
        &operator,
        NewUserRequest {
            tenant: Some(&tenant.id),
            email,
            role: "admin",
            permissions: &SETUP_GRANTS.join(" "),
        },
    )
    .await?;
    sessions::set_password(service, &operator, email, password).await
}
