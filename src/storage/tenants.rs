use super::{Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_tenant(&self, id: &str, name: &str, now: i64) -> Result<TenantRow> {
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(TenantRow {
            id: id.to_owned(),
            name: name.to_owned(),
            created_at: now,
        })
    }

    /// Finds a tenant by its id or, failing that, its name.
    pub async fn find_tenant(&self, id_or_name: &str) -> Result<Option<TenantRow>> {
        Ok(sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, created_at FROM tenants WHERE id = $1 OR name = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?)
    }
}
