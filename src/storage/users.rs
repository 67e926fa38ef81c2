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
