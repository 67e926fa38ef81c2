//! Users: created, changed, disabled, enabled and unlocked by their
//! company's admins (`users:manage`) or the operator. A user may read
//! themself with any credential of theirs.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Event};
use super::{Result, Service, ServiceError, authz, preview};
use crate::domain::{
    ADMIN_SCOPES, Email, Principal, Role, ScopeSet, SetPasswordToken, USERS_MANAGE, UnixTime,
    UserStatus, now,
};
use crate::storage::{NewUser, StorageError, UserListRow, UserRow};

/// How long a new user's set-password token lasts.
pub const SET_PASSWORD_TOKEN_TTL: Duration = Duration::from_secs(72 * 3600);

/// A user as admins see them: role, permissions and sign-in lock.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserSummary {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    #[schema(examples("admin", "member"))]
    pub role: String,
    /// The permissions granted; admins also hold `users:manage`,
    /// `tenant:manage` and `audit:read` through their role.
    pub permissions: Vec<String>,
    #[schema(examples("active", "disabled"))]
    pub status: String,
    pub locked: bool,
    #[schema(value_type = Option<i64>)]
    pub locked_until: Option<UnixTime>,
    pub failed_sign_ins: i64,
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
}

impl UserSummary {
    fn from_row(tenant_id: &str, u: UserListRow, at: UnixTime) -> Self {
        UserSummary {
            locked: u.locked_until.is_some_and(|until| until > at),
            permissions: u
                .permissions
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            id: u.id,
            tenant_id: tenant_id.to_owned(),
            email: u.email,
            role: u.role,
            status: u.status,
            locked_until: u.locked_until.filter(|until| *until > at),
            failed_sign_ins: u.failed_sign_ins,
            created_at: u.created_at,
        }
    }
}

/// A user just created, with the one-time token that lets them choose a
/// password (shown once; only its digest is stored).
#[derive(Debug)]
pub struct CreatedUser {
    pub user: UserSummary,
    pub set_password_token: SetPasswordToken,
    pub set_password_expires_at: UnixTime,
}

pub struct NewUserRequest<'a> {
    /// The operator names the tenant (id or name); admins add to their own.
    pub tenant: Option<&'a str>,
    pub email: &'a str,
    pub role: &'a str,
    /// Space- or comma-separated.
    pub permissions: &'a str,
}

/// Permissions as stored: the administration scopes come with the role and
/// are never granted one by one.
fn parse_permissions(raw: &str) -> Result<ScopeSet> {
    let permissions =
        ScopeSet::parse_known(raw).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let admin = permissions.admin_scopes();
    if !admin.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "{admin} come with the admin role and cannot be granted on their own: give the user role admin (administration scopes: {})",
            ADMIN_SCOPES.join(", ")
        )));
    }
    Ok(permissions)
}

pub async fn create_user(
    service: &Service,
    principal: &Principal,
    request: NewUserRequest<'_>,
) -> Result<CreatedUser> {
    let principal = authz::require(service, principal, USERS_MANAGE).await?;
    let email = Email::parse(request.email).map_err(ServiceError::Invalid)?;
    let role: Role = request.role.parse().map_err(ServiceError::Invalid)?;
    let permissions = parse_permissions(request.permissions)?;
    let tenant_id = super::tenants::acting_tenant(service, &principal, request.tenant).await?;
    let at = now();
    let row = service
        .store
        .insert_user(NewUser {
            id: &Uuid::now_v7().to_string(),
            tenant_id: &tenant_id,
            email: email.as_str(),
            role: role.as_str(),
            permissions: &permissions.to_string(),
            now: at,
        })
        .await?;
    let token = SetPasswordToken::generate();
    let expires_at = at + SET_PASSWORD_TOKEN_TTL.as_secs() as i64;
    service
        .store
        .insert_set_password_token(&token.digest().to_hex(), &row.id, at, expires_at)
        .await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("user.create")
            .tenant(&tenant_id)
            .target(&row.email)
            .detail(format!("role={} permissions={}", row.role, row.permissions)),
    )
    .await;
    Ok(CreatedUser {
        user: summary(service, &row).await?,
        set_password_token: token,
        set_password_expires_at: expires_at,
    })
}

async fn summary(service: &Service, user: &UserRow) -> Result<UserSummary> {
    let row = service
        .store
        .find_user_listing(&user.id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("no such user".to_owned()))?;
    Ok(UserSummary::from_row(&user.tenant_id, row, now()))
}

/// A user by id or email, as `principal` may see them: another tenant's
/// users do not exist for them.
async fn visible_user(service: &Service, principal: &Principal, user: &str) -> Result<UserRow> {
    let not_found = || ServiceError::NotFound(format!("no user `{}`", preview(user)));
    let found = match service.store.find_user_by_id(user).await? {
        Some(found) => found,
        None => match Email::parse(user) {
            Ok(email) => service
                .store
                .find_user_by_email(email.as_str())
                .await?
                .ok_or_else(not_found)?,
            Err(_) => return Err(not_found()),
        },
    };
    match principal.tenant_id() {
        Some(tenant) if tenant != found.tenant_id => Err(not_found()),
        _ => Ok(found),
    }
}

/// The users of the caller's tenant (the operator: of `tenant`).
pub async fn list_users(
    service: &Service,
    principal: &Principal,
    tenant: Option<&str>,
) -> Result<Vec<UserSummary>> {
    let principal = authz::require(service, principal, USERS_MANAGE).await?;
    let tenant_id = super::tenants::acting_tenant(service, &principal, tenant).await?;
    let at = now();
    Ok(service
        .store
        .list_users(&tenant_id)
        .await?
        .into_iter()
        .map(|u| UserSummary::from_row(&tenant_id, u, at))
        .collect())
}

/// One user: admins read anyone of their company, everyone reads themself.
pub async fn get_user(service: &Service, principal: &Principal, user: &str) -> Result<UserSummary> {
    let current = authz::current(service, principal).await?;
    let found = visible_user(service, &current, user).await?;
    authz::read_user(&current, &found.id, USERS_MANAGE)?;
    summary(service, &found).await
}

/// What an admin may change about a user.
#[derive(Default)]
pub struct UserChange<'a> {
    pub role: Option<&'a str>,
    /// Replaces the granted permissions (space- or comma-separated).
    pub permissions: Option<&'a str>,
}

/// Changes a user's role and permissions. Keys inheriting the owner's
/// permissions follow at once; tokens already issued keep their scopes for
/// offline validators until they expire, but every management operation
/// re-checks them.
pub async fn change_user(
    service: &Service,
    principal: &Principal,
    user: &str,
    change: UserChange<'_>,
) -> Result<UserSummary> {
    let principal = authz::require(service, principal, USERS_MANAGE).await?;
    let found = visible_user(service, &principal, user).await?;
    let role: Role = match change.role {
        Some(raw) => raw.parse().map_err(ServiceError::Invalid)?,
        None => found.role.parse().map_err(StorageError::Corrupt)?,
    };
    let permissions = match change.permissions {
        Some(raw) => parse_permissions(raw)?,
        None => {
            ScopeSet::parse(&found.permissions).map_err(|e| StorageError::Corrupt(e.to_string()))?
        }
    };
    if role != Role::Admin && found.role == Role::Admin.as_str() {
        refuse_removing_the_last_admin(service, &principal, &found, "demoted").await?;
    }
    let changed = service
        .store
        .set_user_role_and_permissions(&found.id, role.as_str(), &permissions.to_string(), now())
        .await;
    service.credentials.forget_owner(&found.id);
    changed?;
    audit::record(
        &service.store,
        &principal,
        Event::new("user.change")
            .tenant(&found.tenant_id)
            .target(&found.email)
            .detail(format!("role={} permissions={permissions}", role.as_str())),
    )
    .await;
    summary(service, &found).await
}

/// A company keeps at least one active admin, so it can always manage
/// itself without the operator.
async fn refuse_removing_the_last_admin(
    service: &Service,
    principal: &Principal,
    user: &UserRow,
    what: &str,
) -> Result<()> {
    if principal.is_operator() || user.status != UserStatus::Active.as_str() {
        return Ok(());
    }
    if service.store.count_active_admins(&user.tenant_id).await? <= 1 {
        return Err(ServiceError::Conflict(format!(
            "{} is the company's last active admin and cannot be {what}",
            user.email
        )));
    }
    Ok(())
}

/// Disables or enables a user. A disabled user's keys stop getting tokens at
/// once, and their sessions and unused set-password token end for good
/// (enabling them brings none of these back).
pub async fn set_user_status(
    service: &Service,
    principal: &Principal,
    user: &str,
    status: UserStatus,
) -> Result<UserSummary> {
    let principal = authz::require(service, principal, USERS_MANAGE).await?;
    let found = visible_user(service, &principal, user).await?;
    if status == UserStatus::Disabled && found.role == Role::Admin.as_str() {
        refuse_removing_the_last_admin(service, &principal, &found, "disabled").await?;
    }
    let changed = service
        .store
        .set_user_status(&found.id, status.as_str(), now())
        .await;
    service.credentials.forget_owner(&found.id);
    changed?;
    if status == UserStatus::Disabled {
        service.store.delete_sessions_of(&found.id).await?;
        service
            .store
            .delete_set_password_tokens_of(&found.id)
            .await?;
    }
    let action = match status {
        UserStatus::Active => "user.enable",
        UserStatus::Disabled => "user.disable",
    };
    audit::record(
        &service.store,
        &principal,
        Event::new(action)
            .tenant(&found.tenant_id)
            .target(&found.email),
    )
    .await;
    summary(service, &found).await
}

/// Lifts a sign-in lock (and forgets the failures that led to it).
pub async fn unlock_user(service: &Service, principal: &Principal, user: &str) -> Result<()> {
    let principal = authz::require(service, principal, USERS_MANAGE).await?;
    let found = visible_user(service, &principal, user).await?;
    service
        .store
        .set_sign_in_failures(&found.id, 0, None, None)
        .await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("user.unlock")
            .tenant(&found.tenant_id)
            .target(&found.email),
    )
    .await;
    Ok(())
}
