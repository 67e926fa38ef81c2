//! Who calls: companies, their users and keys made through the service
//! layer as the operator, and people signed in with a session.

use std::time::Duration;

use keyport::domain::Principal;
use keyport::service::ServiceError;
use keyport::service::keys::{self, CreatedKey, NewKeyRequest};
use keyport::service::tenants::{self, Tenant};
use keyport::service::users::{self, UserSummary as User};
use uuid::Uuid;

use super::{Backend, TestApp, spawn_app};

/// An integration ready to go: a tenant, a user and a key of that user.
pub struct Integration {
    pub tenant: Tenant,
    pub user: User,
    pub key: CreatedKey,
}

impl Integration {
    pub fn client_id(&self) -> &str {
        &self.key.key.client_id
    }
    pub fn secret(&self) -> &str {
        self.key.secret.expose()
    }
}

impl TestApp {
    pub async fn tenant(&self, name: &str) -> Tenant {
        tenants::create_tenant(&self.service(), &Principal::operator(), name)
            .await
            .expect("create tenant")
    }

    pub async fn user(&self, tenant: &Tenant, email: &str, role: &str, permissions: &str) -> User {
        users::create_user(
            &self.service(),
            &Principal::operator(),
            users::NewUserRequest {
                tenant: Some(&tenant.id),
                email,
                role,
                permissions,
            },
        )
        .await
        .expect("create user")
        .user
    }

    pub async fn key(&self, email: &str, scopes: Option<&str>) -> CreatedKey {
        self.key_with(email, scopes, None, None).await
    }

    pub async fn key_with(
        &self,
        email: &str,
        scopes: Option<&str>,
        expires_in: Option<Duration>,
        token_ttl: Option<Duration>,
    ) -> CreatedKey {
        self.try_key(email, scopes, expires_in, token_ttl)
            .await
            .expect("create key")
    }

    /// Asks for a key as the operator's CLI would, returning the refusal.
    pub async fn try_key(
        &self,
        email: &str,
        scopes: Option<&str>,
        expires_in: Option<Duration>,
        token_ttl: Option<Duration>,
    ) -> Result<CreatedKey, ServiceError> {
        keys::create_key(
            &self.service(),
            &Principal::operator(),
            NewKeyRequest {
                owner_email: Some(email),
                name: "test key",
                scopes,
                expires_in,
                token_ttl,
                sigv4: false,
            },
        )
        .await
    }

    /// A key named `name` for `email` that may also sign requests with AWS
    /// Signature Version 4 (its client ID is the access key ID).
    pub async fn sigv4_key(&self, email: &str, name: &str) -> CreatedKey {
        keys::create_key(
            &self.service(),
            &Principal::operator(),
            NewKeyRequest {
                owner_email: Some(email),
                name,
                scopes: None,
                expires_in: None,
                token_ttl: None,
                sigv4: true,
            },
        )
        .await
        .expect("a SigV4 key")
    }

    /// A fresh tenant with one user holding `permissions` and one key.
    /// An [`Integration`] whose user is signed in (with [`PASSWORD`]): the
    /// integration and the session.
    pub async fn signed_in_integration(
        &self,
        role: &str,
        permissions: &str,
    ) -> (Integration, String) {
        let integration = self.integration(role, permissions).await;
        let session = self.session_for(&integration.user.email, PASSWORD).await;
        (integration, session)
    }

    pub async fn integration(&self, role: &str, permissions: &str) -> Integration {
        let suffix = Uuid::new_v4().simple().to_string();
        let tenant = self.tenant(&format!("tenant-{suffix}")).await;
        let user = self
            .user(
                &tenant,
                &format!("user-{suffix}@example.com"),
                role,
                permissions,
            )
            .await;
        let key = self.key(&user.email, None).await;
        Integration { tenant, user, key }
    }
}

/// A fresh application with one [`Integration`]: a company, a user
/// holding `permissions` as `role`, and a key of theirs.
pub async fn spawn_app_with_integration(
    backend: Backend,
    role: &str,
    permissions: &str,
) -> (TestApp, Integration) {
    let app = spawn_app(backend).await;
    let integration = app.integration(role, permissions).await;
    (app, integration)
}

/// [`spawn_app_with_integration`], and an access token of its key.
pub async fn spawn_app_with_token(
    backend: Backend,
    role: &str,
    permissions: &str,
) -> (TestApp, Integration, String) {
    let (app, integration) = spawn_app_with_integration(backend, role, permissions).await;
    let token = app.token_for(&integration).await;
    (app, integration, token)
}

/// What most integrations are permitted: reading reports and pushing
/// records.
pub const READ_AND_PUSH: &str = "reports:read webhooks:write";

/// The password [`person`] and [`colleague`] sign in with.
pub const PASSWORD: &str = "correct horse battery staple";
/// What [`person`] and [`colleague`] are permitted.
pub const GRANTABLE: &str = "reports:read webhooks:write keys:manage";

/// A user of a company, signed in.
pub struct Person {
    pub email: String,
    pub session: String,
    pub tenant: Tenant,
}

/// The first user of a fresh company, holding [`GRANTABLE`].
pub async fn person(app: &TestApp, role: &str) -> Person {
    let suffix = Uuid::new_v4().simple().to_string();
    let tenant = app.tenant(&format!("Acme {suffix}")).await;
    colleague(app, &tenant, role).await
}

/// Another user of `tenant`, holding [`GRANTABLE`], signed in.
pub async fn colleague(app: &TestApp, tenant: &Tenant, role: &str) -> Person {
    let suffix = Uuid::new_v4().simple().to_string();
    let email = format!("{role}-{suffix}@acme.io");
    app.user(tenant, &email, role, GRANTABLE).await;
    Person {
        session: app.session_for(&email, PASSWORD).await,
        email,
        tenant: tenant.clone(),
    }
}

/// A user of a company, by id and email (not signed in).
pub struct Employee {
    pub id: String,
    pub email: String,
}

/// A company whose admin holds no key (so the API-only policy never ends
/// the admin's session), beside an integration's member who holds one.
pub struct Acme {
    pub base: Integration,
    pub admin: Employee,
    pub admin_session: String,
}

/// A fresh [`Acme`], its admin signed in.
pub async fn acme(app: &TestApp) -> Acme {
    let base = app.integration("member", "reports:read").await;
    let admin = employ(app, &base.tenant, "admin", "admin", GRANTABLE).await;
    let admin_session = app.session_for(&admin.email, PASSWORD).await;
    Acme {
        base,
        admin,
        admin_session,
    }
}

/// A fresh application with an [`Acme`] in it.
pub async fn spawn_acme(backend: Backend) -> (TestApp, Acme) {
    let app = spawn_app(backend).await;
    let acme = acme(&app).await;
    (app, acme)
}

impl Acme {
    /// POSTs `action` (revoke, disable, enable, unlock) to the key or user at
    /// `target` (e.g. `/api/v1/users/{id}`) as the admin; panics unless 200.
    pub async fn act_on(&self, app: &TestApp, target: &str, action: &str) {
        let response = app
            .post(&format!("{target}/{action}"), &self.admin_session)
            .await;
        assert_eq!(response.status(), 200, "{action} {target}");
    }

    /// Another user of the company, `<name>@acme.io`.
    pub async fn employ(&self, app: &TestApp, name: &str, role: &str, perms: &str) -> Employee {
        employ(app, &self.base.tenant, name, role, perms).await
    }
}

async fn employ(app: &TestApp, tenant: &Tenant, name: &str, role: &str, perms: &str) -> Employee {
    let user = app
        .user(tenant, &format!("{name}@acme.io"), role, perms)
        .await;
    Employee {
        id: user.id,
        email: user.email,
    }
}
