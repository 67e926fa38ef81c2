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
        let _span = self.span("insert_user");
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
        .execute(self.db()?)
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
        let _span = self.span("find_user_by_email");
        Ok(sqlx::query_as::<_, UserRow>(
            "SELECT id, tenant_id, email, role, permissions, status, created_at \
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(self.db()?)
        .await?)
    }

    pub async fn find_user_by_id(&self, user_id: &str) -> Result<Option<UserRow>> {
        let _span = self.span("find_user_by_id");
        Ok(sqlx::query_as::<_, UserRow>(
            "SELECT id, tenant_id, email, role, permissions, status, created_at \
             FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.db()?)
        .await?)
    }

    pub async fn list_users(&self, tenant_id: &str) -> Result<Vec<UserListRow>> {
        let _span = self.span("list_users");
        Ok(sqlx::query_as::<_, UserListRow>(
            "SELECT id, email, role, permissions, status, failed_sign_ins, locked_until, created_at \
             FROM users WHERE tenant_id = $1 ORDER BY email",
        )
        .bind(tenant_id)
        .fetch_all(self.db()?)
        .await?)
    }

    pub async fn find_sign_in(&self, email: &str) -> Result<Option<SignInRow>> {
        let _span = self.span("find_sign_in");
        Ok(sqlx::query_as::<_, SignInRow>(
            "SELECT u.id, u.tenant_id, u.email, u.status, u.password_hash, u.failed_sign_ins, \
             u.first_failed_at, u.locked_until, t.api_only_users \
             FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.email = $1",
        )
        .bind(email)
        .fetch_optional(self.db()?)
        .await?)
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str, now: i64) -> Result<bool> {
        let _span = self.span("set_password_hash");
        let done =
            sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(user_id)
                .bind(hash)
                .bind(now)
                .execute(self.db()?)
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
        let _span = self.span("set_sign_in_failures");
        sqlx::query(
            "UPDATE users SET failed_sign_ins = $2, first_failed_at = $3, locked_until = $4 WHERE id = $1",
        )
        .bind(user_id)
        .bind(failed)
        .bind(first_failed_at)
        .bind(locked_until)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    /// Claims one password check for `user_id`, before the (slow) check runs:
    /// the failure count goes up now and is cleared if the password is right.
    /// Answers the attempt's number within the window, or `None` while the
    /// account is locked or `max` checks are already counted in the window.
    /// One atomic UPDATE, so concurrent attempts cannot overwrite each other's
    /// count: at most `max` passwords are ever checked per window.
    pub async fn claim_sign_in_attempt(
        &self,
        user_id: &str,
        now: i64,
        window_seconds: i64,
        max: i64,
    ) -> Result<Option<i64>> {
        let _span = self.span("claim_sign_in_attempt");
        let claimed: Option<(i64,)> = sqlx::query_as(
            "UPDATE users SET \
             failed_sign_ins = CASE WHEN first_failed_at IS NULL OR first_failed_at <= $2 - $3 \
                 THEN 1 ELSE failed_sign_ins + 1 END, \
             first_failed_at = CASE WHEN first_failed_at IS NULL OR first_failed_at <= $2 - $3 \
                 THEN $2 ELSE first_failed_at END \
             WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2) \
             AND (first_failed_at IS NULL OR first_failed_at <= $2 - $3 OR failed_sign_ins < $4) \
             RETURNING failed_sign_ins",
        )
        .bind(user_id)
        .bind(now)
        .bind(window_seconds)
        .bind(max)
        .fetch_optional(self.db()?)
        .await?;
        Ok(claimed.map(|(attempt,)| attempt))
    }

    /// Locks the account until `until`; the failures that led here are spent.
    /// Announces `user.locked` in the same transaction.
    pub async fn lock_user(&self, user_id: &str, until: i64, now: i64) -> Result<()> {
        let _span = self.span("lock_user");
        let mut tx = self.db()?.begin().await?;
        let tenant: Option<(String,)> = sqlx::query_as(
            "UPDATE users SET failed_sign_ins = 0, first_failed_at = NULL, locked_until = $2 \
             WHERE id = $1 RETURNING tenant_id",
        )
        .bind(user_id)
        .bind(until)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((tenant_id,)) = tenant {
            super::webhooks::record_event(
                &mut tx,
                &super::WebhookEvent {
                    tenant_id: &tenant_id,
                    subject_owner_id: user_id,
                    event_type: "user.locked",
                    trace: None,
                    collection: None,
                    data: super::EventData::Json(
                        serde_json::json!({ "user_id": user_id, "locked_until": until }),
                    ),
                },
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_user_role_and_permissions(
        &self,
        user_id: &str,
        role: &str,
        permissions: &str,
        now: i64,
    ) -> Result<bool> {
        let _span = self.span("set_user_role_and_permissions");
        let done = sqlx::query(
            "UPDATE users SET role = $2, permissions = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(user_id)
        .bind(role)
        .bind(permissions)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One user as admins see them.
    pub async fn find_user_listing(&self, user_id: &str) -> Result<Option<UserListRow>> {
        let _span = self.span("find_user_listing");
        Ok(sqlx::query_as::<_, UserListRow>(
            "SELECT id, email, role, permissions, status, failed_sign_ins, locked_until, created_at \
             FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.db()?)
        .await?)
    }

    /// Active admins of a tenant: the last one may not demote or disable
    /// themselves out of the company.
    pub async fn count_active_admins(&self, tenant_id: &str) -> Result<i64> {
        let _span = self.span("count_active_admins");
        let (admins,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = 'admin' AND status = 'active'",
        )
        .bind(tenant_id)
        .fetch_one(self.db()?)
        .await?;
        Ok(admins)
    }

    pub async fn insert_set_password_token(
        &self,
        token_digest: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _span = self.span("insert_set_password_token");
        sqlx::query(
            "INSERT INTO set_password_tokens (token_digest, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_digest)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    /// Uses up a set-password token: answers its user while it is unexpired,
    /// and only to the first caller (the row is deleted as it is read).
    pub async fn take_set_password_token(
        &self,
        token_digest: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let _span = self.span("take_set_password_token");
        let taken: Option<(String,)> = sqlx::query_as(
            "DELETE FROM set_password_tokens WHERE token_digest = $1 AND expires_at > $2 \
             RETURNING user_id",
        )
        .bind(token_digest)
        .bind(now)
        .fetch_optional(self.db()?)
        .await?;
        Ok(taken.map(|(user_id,)| user_id))
    }

    pub async fn delete_set_password_tokens_of(&self, user_id: &str) -> Result<()> {
        let _span = self.span("delete_set_password_tokens_of");
        sqlx::query("DELETE FROM set_password_tokens WHERE user_id = $1")
            .bind(user_id)
            .execute(self.db()?)
            .await?;
        Ok(())
    }

    pub async fn set_user_status(&self, user_id: &str, status: &str, now: i64) -> Result<bool> {
        let _span = self.span("set_user_status");
        let done = sqlx::query("UPDATE users SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(status)
            .bind(now)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_user_permissions(
        &self,
        user_id: &str,
        permissions: &str,
        now: i64,
    ) -> Result<bool> {
        let _span = self.span("set_user_permissions");
        let done = sqlx::query("UPDATE users SET permissions = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(permissions)
            .bind(now)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
