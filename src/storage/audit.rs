use super::{Result, Store};

/// One audit event, as `GET /api/v1/audit` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditRow {
    pub id: String,
    pub tenant_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub source_address: Option<String>,
    pub detail: Option<String>,
    /// `session`, `api_key`, `access_token`, `operator` or `none`.
    pub credential_kind: Option<String>,
    /// The key's client ID, or the session's handle.
    pub credential_id: Option<String>,
    /// The `X-Request-Id` of the request that wrote it; `None` for the
    /// CLI and Keyport's own work.
    pub request_id: Option<String>,
    pub created_at: i64,
}

/// What to list of one tenant's audit trail.
pub struct AuditFilter<'a> {
    pub action: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub target: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub request_id: Option<&'a str>,
    /// The id of the last event of the previous page.
    pub after_id: Option<&'a str>,
    pub limit: u32,
    /// Newest first (the console); oldest first otherwise (the API, whose
    /// cursor pages forward). `after_id` follows the order asked for.
    pub newest_first: bool,
}

macro_rules! list_audit {
    ($after:literal, $order:literal) => {
        concat!(
            "SELECT id, tenant_id, actor, action, target, source_address, detail, \
             credential_kind, credential_id, request_id, created_at \
             FROM audit_events WHERE tenant_id = $1 \
             AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR actor = $3) \
             AND ($4 IS NULL OR target = $4) AND ($5 IS NULL OR created_at >= $5) \
             AND ($6 IS NULL OR created_at <= $6) AND ($7 IS NULL OR id ",
            $after,
            " $7) AND ($8 IS NULL OR request_id = $8) ORDER BY id ",
            $order,
            " LIMIT CAST($9 AS BIGINT)"
        )
    };
}

/// `LIMIT CAST(.. AS BIGINT)` for the reason given at `records::LIST_RECORDS`.
/// Ids are UUIDv7s, so their order is the order events were written.
pub(super) const LIST_AUDIT: &str = list_audit!(">", "ASC");
pub(super) const LIST_AUDIT_NEWEST_FIRST: &str = list_audit!("<", "DESC");

impl Store {
    pub async fn insert_audit(&self, event: &AuditRow) -> Result<()> {
        let _span = self.span("insert_audit");
        sqlx::query(
            "INSERT INTO audit_events (id, tenant_id, actor, action, target, source_address, detail, \
             credential_kind, credential_id, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&event.id)
        .bind(event.tenant_id.as_deref())
        .bind(&event.actor)
        .bind(&event.action)
        .bind(event.target.as_deref())
        .bind(event.source_address.as_deref())
        .bind(event.detail.as_deref())
        .bind(event.credential_kind.as_deref())
        .bind(event.credential_id.as_deref())
        .bind(event.request_id.as_deref())
        .bind(event.created_at)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    /// One page of a tenant's audit trail, oldest or newest first;
    /// `has_more` via limit+1.
    pub async fn list_audit(
        &self,
        tenant_id: &str,
        query: &AuditFilter<'_>,
    ) -> Result<(Vec<AuditRow>, bool)> {
        let _span = self.span("list_audit");
        let mut rows = sqlx::query_as::<_, AuditRow>(if query.newest_first {
            LIST_AUDIT_NEWEST_FIRST
        } else {
            LIST_AUDIT
        })
        .bind(tenant_id)
        .bind(query.action)
        .bind(query.actor)
        .bind(query.target)
        .bind(query.since)
        .bind(query.until)
        .bind(query.after_id)
        .bind(query.request_id)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(self.db()?)
        .await?;
        let has_more = rows.len() > query.limit as usize;
        rows.truncate(query.limit as usize);
        Ok((rows, has_more))
    }
}
