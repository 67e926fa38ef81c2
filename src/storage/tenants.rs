use super::{RateColumns, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantPolicyRow {
    pub api_only_users: i64,
    pub default_rate_limit_requests: Option<i64>,
    pub default_rate_limit_per_seconds: Option<i64>,
    pub default_rate_limit_burst: Option<i64>,
}

impl Store {
    pub async fn insert_tenant(&self, id: &str, name: &str, now: i64) -> Result<TenantRow> {
        let _span = self.span("insert_tenant");
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(TenantRow {
            id: id.to_owned(),
            name: name.to_owned(),
            created_at: now,
        })
    }

    /// Users across every tenant: none means the server is on its first run.
    pub async fn count_users(&self) -> Result<i64> {
        let _span = self.span("count_users");
        let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(self.db()?)
            .await?;
        Ok(users)
    }

    pub async fn set_api_only_users(&self, tenant_id: &str, on: bool, now: i64) -> Result<()> {
        let _span = self.span("set_api_only_users");
        sqlx::query("UPDATE tenants SET api_only_users = $2, updated_at = $3 WHERE id = $1")
            .bind(tenant_id)
            .bind(i64::from(on))
            .bind(now)
            .execute(self.db()?)
            .await?;
        Ok(())
    }

    pub async fn api_only_users(&self, tenant_id: &str) -> Result<bool> {
        let _span = self.span("api_only_users");
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT api_only_users FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(self.db()?)
                .await?;
        Ok(row.is_some_and(|(on,)| on != 0))
    }

    /// Sets (or, with `None`, removes) the company's default rate for keys
    /// without their own.
    pub async fn set_default_rate_limit(
        &self,
        tenant_id: &str,
        rate: Option<RateColumns>,
        now: i64,
    ) -> Result<()> {
        let _span = self.span("set_default_rate_limit");
        let (requests, per_seconds, burst) = RateColumns::split(rate);
        sqlx::query(
            "UPDATE tenants SET default_rate_limit_requests = $2, \
             default_rate_limit_per_seconds = $3, default_rate_limit_burst = $4, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(tenant_id)
        .bind(requests)
        .bind(per_seconds)
        .bind(burst)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    /// The company's policy: API-only users, and the default rate's three
    /// columns (all NULL without one).
    pub async fn tenant_policy(&self, tenant_id: &str) -> Result<Option<TenantPolicyRow>> {
        let _span = self.span("tenant_policy");
        Ok(sqlx::query_as::<_, TenantPolicyRow>(
            "SELECT api_only_users, default_rate_limit_requests, default_rate_limit_per_seconds, \
             default_rate_limit_burst FROM tenants WHERE id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(self.db()?)
        .await?)
    }

    /// Every tenant, by name (for the operator's `keyport tenant list`).
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        let _span = self.span("list_tenants");
        Ok(sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, created_at FROM tenants ORDER BY name, id",
        )
        .fetch_all(self.db()?)
        .await?)
    }

    /// Finds a tenant by its id or, failing that, its name.
    pub async fn find_tenant(&self, id_or_name: &str) -> Result<Option<TenantRow>> {
        let _span = self.span("find_tenant");
        Ok(sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, created_at FROM tenants WHERE id = $1 OR name = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(id_or_name)
        .fetch_optional(self.db()?)
        .await?)
    }
}
