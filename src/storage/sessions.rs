use super::{Result, Store};

/// A live session and the user it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: String,
    pub tenant_id: String,
    pub role: String,
    pub permissions: String,
    pub status: String,
    pub expires_at: i64,
}

impl Store {
    pub async fn insert_session(
        &self,
        token_digest: &str,
        user_id: &str,
        tenant_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _span = self.span("insert_session");
        sqlx::query(
            "INSERT INTO sessions (token_digest, user_id, tenant_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_digest)
        .bind(user_id)
        .bind(tenant_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    pub async fn find_session(&self, token_digest: &str, now: i64) -> Result<Option<SessionRow>> {
        let _span = self.span("find_session");
        Ok(sqlx::query_as::<_, SessionRow>(
            "SELECT s.user_id, s.tenant_id, u.role, u.permissions, u.status, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_digest = $1 AND s.expires_at > $2",
        )
        .bind(token_digest)
        .bind(now)
        .fetch_optional(self.db()?)
        .await?)
    }

    pub async fn delete_session(&self, token_digest: &str) -> Result<bool> {
        let _span = self.span("delete_session");
        let done = sqlx::query("DELETE FROM sessions WHERE token_digest = $1")
            .bind(token_digest)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_sessions_of(&self, user_id: &str) -> Result<()> {
        let _span = self.span("delete_sessions_of");
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(self.db()?)
            .await?;
        Ok(())
    }

    /// Ends the sessions of the tenant's users who hold an active key (the
    /// "API-only users" policy was turned on). Answers how many ended.
    pub async fn delete_sessions_of_key_holders(&self, tenant_id: &str, now: i64) -> Result<u64> {
        let _span = self.span("delete_sessions_of_key_holders");
        let done = sqlx::query(
            "DELETE FROM sessions WHERE tenant_id = $1 AND user_id IN \
             (SELECT owner_id FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2))",
        )
        .bind(tenant_id)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn insert_revoked_token(&self, jti: &str, expires_at: i64, now: i64) -> Result<()> {
        let _span = self.span("insert_revoked_token");
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    /// Revoked tokens that have not expired yet (expired ones are refused anyway).
    pub async fn live_revoked_tokens(&self, now: i64) -> Result<Vec<(String, i64)>> {
        let _span = self.span("live_revoked_tokens");
        Ok(
            sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
                .bind(now)
                .fetch_all(self.db()?)
                .await?,
        )
    }
}
