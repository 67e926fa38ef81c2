use super::{Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub role: String,
    pub permissions: String,
    pub status: String,
    pub created_at: i64,
}

/// What sign-in needs: the password hash and the lock state. Kept apart from
/// [`UserRow`] so the hash is only ever read where it is checked.
#[derive(Clone, sqlx::FromRow)]
pub struct SignInRow {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub status: String,
    pub password_hash: Option<String>,
    pub failed_sign_ins: i64,
    pub first_failed_at: Option<i64>,
    pub locked_until: Option<i64>,
    pub api_only_users: i64,
}

/// A user as admins see them: with the lock, without the hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserListRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub permissions: String,
    pub status: String,
    pub failed_sign_ins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub permissions: &'a str,
    pub now: i64,
}

impl Store {
    pub async fn insert_user(&self, user: NewUser<'_>) -> Result<UserRow> {
        sqlx::query(
            "INSERT INTO users (id, tenant_id, email, role, permissions, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $6)",
        )
        .bind(user.id)
        .bind(user.tenant_id)
        .bind(user.email)
        .bind(user.role)
        .bind(user.permissions)
        .bind(user.now)
        .execute(&self.pool)
        .await?;
        Ok(UserRow {
            id: user.id.to_owned(),
            tenant_id: user.tenant_id.to_owned(),
            email: user.email.to_owned(),
            role: user.role.to_owned(),
            permissions: user.permissions.to_owned(),
            status: "active".to_owned(),
            created_at: user.now,
        })
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as::<_, UserRow>(
            "SELECT id, tenant_id, email, role, permissions, status, created_at \
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn find_user_by_id(&self, user_id: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as::<_, UserRow>(
            "SELECT id, tenant_id, email, role, permissions, status, created_at \
             FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_users(&self, tenant_id: &str) -> Result<Vec<UserListRow>> {
        Ok(sqlx::query_as::<_, UserListRow>(
            "SELECT id, email, role, permissions, status, failed_sign_ins, locked_until, created_at \
             FROM users WHERE tenant_id = $1 ORDER BY email",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn find_sign_in(&self, email: &str) -> Result<Option<SignInRow>> {
        Ok(sqlx::query_as::<_, SignInRow>(
            "SELECT u.id, u.tenant_id, u.email, u.status, u.password_hash, u.failed_sign_ins, \
             u.first_failed_at, u.locked_until, t.api_only_users \
             FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the sign-in failure state computed by the caller.
    pub async fn set_sign_in_failures(
        &self,
        user_id: &str,
        failed: i64,
        first_failed_at: Option<i64>,
        locked_until: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE users SET failed_sign_ins = $2, first_failed_at = $3, locked_until = $4 WHERE id = $1",
        )
        .bind(user_id)
        .bind(failed)
        .bind(first_failed_at)
        .bind(locked_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_user_status(&self, user_id: &str, status: &str, now: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(status)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_user_permissions(
        &self,
        user_id: &str,
        permissions: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET permissions = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(permissions)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
