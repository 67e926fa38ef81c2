//! Usage per key and hour (see `service::key_usage`): rows are added to,
//! never overwritten, so instances sharing a database each add their
//! share. Counts arrive by client ID and are filed under the key's id and
//! company in the same statement; a client ID that names no key (a token of
//! an exchange rule) adds nothing.

use super::{Result, Store};

/// `count` more `outcome`s for the key behind `client_id` in `hour`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub client_id: String,
    pub hour: i64,
    /// `tokens_issued`, `direct_uses`, `sigv4_uses`, `token_uses` or
    /// `refused:<reason>`.
    pub outcome: String,
    pub count: i64,
}

/// The busiest minute of `hour` seen by one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePeak {
    pub client_id: String,
    pub hour: i64,
    pub per_minute: i64,
}

/// An address the key was used from in `hour`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageAddress {
    pub client_id: String,
    pub hour: i64,
    pub address: String,
}

/// Whose usage is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope<'a> {
    Key(&'a str),
    Tenant(&'a str),
    /// One owner's keys within their company.
    Owner(&'a str, &'a str),
    All,
}

/// One stored figure in a bucket: `what` is an outcome with its `value`,
/// `peak` (the busiest minute) or `address`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub key_id: String,
    pub client_id: String,
    pub name: String,
    pub bucket: i64,
    pub what: String,
    pub value: i64,
    pub address: Option<String>,
}

// Each sums within `key_usage*` first and joins the key's names onto the
// sums: joining before grouping made every hourly row carry them through the
// sort, which doubled the time a company's fortnight took to read.
/// The three selects of a usage read (counts, busiest minutes, first
/// addresses), each bucketed from `$1` by `$3` seconds up to `$2`, for the
/// rows `scope` (an SQL condition on `u`) admits.
fn usage_selects(scope: &str) -> [String; 3] {
    [
        format!(
            "SELECT g.key_id, k.client_id, k.name, g.bucket, g.what, g.value, \
             CAST(NULL AS TEXT) AS address FROM (\
             SELECT u.key_id, CAST(((u.hour - $1) / $3) * $3 + $1 AS BIGINT) AS bucket, \
             u.outcome AS what, CAST(SUM(u.count) AS BIGINT) AS value \
             FROM key_usage u WHERE u.hour >= $1 AND u.hour < $2 AND {scope} \
             GROUP BY u.key_id, bucket, u.outcome) g JOIN api_keys k ON k.id = g.key_id"
        ),
        format!(
            "SELECT g.key_id, k.client_id, k.name, g.bucket, CAST('peak' AS TEXT) AS what, \
             g.value, CAST(NULL AS TEXT) AS address FROM (\
             SELECT u.key_id, CAST(((u.hour - $1) / $3) * $3 + $1 AS BIGINT) AS bucket, \
             CAST(MAX(u.per_minute) AS BIGINT) AS value \
             FROM key_usage_peaks u WHERE u.hour >= $1 AND u.hour < $2 AND {scope} \
             GROUP BY u.key_id, bucket) g JOIN api_keys k ON k.id = g.key_id"
        ),
        format!(
            "SELECT u.key_id, k.client_id, k.name, CAST(((u.hour - $1) / $3) * $3 + $1 AS BIGINT) AS bucket, \
             CAST('address' AS TEXT) AS what, CAST(0 AS BIGINT) AS value, u.address \
             FROM key_usage_addresses u JOIN api_keys k ON k.id = u.key_id \
             WHERE u.hour >= $1 AND u.hour < $2 AND {scope} \
             ORDER BY u.hour, u.address LIMIT 10000"
        ),
    ]
}

impl Store {
    /// Adds one flush's counts, peaks and addresses, in one transaction.
    /// Rows are written in a fixed order (the callers sort them), so two
    /// instances flushing at once wait for each other rather than deadlock.
    pub async fn add_key_usage(
        &self,
        counts: &[UsageCount],
        peaks: &[UsagePeak],
        addresses: &[UsageAddress],
    ) -> Result<()> {
        let _span = self.span("add_key_usage");
        let mut tx = self.db()?.begin().await?;
        for count in counts {
            sqlx::query(
                "INSERT INTO key_usage (key_id, tenant_id, hour, outcome, count) \
                 SELECT id, tenant_id, CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS BIGINT) \
                 FROM api_keys WHERE client_id = $1 \
                 ON CONFLICT (key_id, hour, outcome) \
                 DO UPDATE SET count = key_usage.count + excluded.count",
            )
            .bind(&count.client_id)
            .bind(count.hour)
            .bind(&count.outcome)
            .bind(count.count)
            .execute(&mut *tx)
            .await?;
        }
        for peak in peaks {
            sqlx::query(
                "INSERT INTO key_usage_peaks (key_id, tenant_id, hour, per_minute) \
                 SELECT id, tenant_id, CAST($2 AS BIGINT), CAST($3 AS BIGINT) \
                 FROM api_keys WHERE client_id = $1 \
                 ON CONFLICT (key_id, hour) DO UPDATE SET per_minute = CASE \
                 WHEN excluded.per_minute > key_usage_peaks.per_minute \
                 THEN excluded.per_minute ELSE key_usage_peaks.per_minute END",
            )
            .bind(&peak.client_id)
            .bind(peak.hour)
            .bind(peak.per_minute)
            .execute(&mut *tx)
            .await?;
        }
        for address in addresses {
            sqlx::query(
                "INSERT INTO key_usage_addresses (key_id, tenant_id, hour, address) \
                 SELECT id, tenant_id, CAST($2 AS BIGINT), CAST($3 AS TEXT) \
                 FROM api_keys WHERE client_id = $1 \
                 ON CONFLICT (key_id, hour, address) DO NOTHING",
            )
            .bind(&address.client_id)
            .bind(address.hour)
            .bind(&address.address)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The usage of `scope` (of its keys among `only`, when given) in the hours `[from, to)`, summed into buckets
    /// of `bucket_seconds` counted from `from` (an hour's start): UTC hours
    /// or days when `from` starts one, or 24-hour windows ending at the
    /// current hour.
    pub async fn key_usage_rows(
        &self,
        scope: &UsageScope<'_>,
        only: Option<&[&str]>,
        from: i64,
        to: i64,
        bucket_seconds: i64,
    ) -> Result<Vec<UsageRow>> {
        let _span = self.span("key_usage_rows");
        if only.is_some_and(<[&str]>::is_empty) {
            return Ok(Vec::new());
        }
        let (mut condition, mut names): (String, Vec<&str>) = match *scope {
            UsageScope::Key(key_id) => ("u.key_id = $4".into(), vec![key_id]),
            UsageScope::Tenant(tenant) => ("u.tenant_id = $4".into(), vec![tenant]),
            UsageScope::Owner(tenant, owner) => (
                "u.tenant_id = $4 AND u.key_id IN (SELECT id FROM api_keys WHERE owner_id = $5)"
                    .into(),
                vec![tenant, owner],
            ),
            UsageScope::All => ("1 = 1".into(), vec![]),
        };
        if let Some(only) = only {
            let first = names.len() + 4;
            let placeholders: Vec<String> = (first..first + only.len())
                .map(|n| format!("${n}"))
                .collect();
            condition.push_str(&format!(" AND u.key_id IN ({})", placeholders.join(", ")));
            names.extend_from_slice(only);
        }
        let mut rows = Vec::new();
        // Safe to assemble: the condition is this function's own text, and
        // every value, key ids included, is a bound parameter.
        for query in usage_selects(&condition) {
            let mut query = sqlx::query_as::<_, UsageRow>(sqlx::AssertSqlSafe(query))
                .bind(from)
                .bind(to)
                .bind(bucket_seconds);
            for name in &names {
                query = query.bind(*name);
            }
            rows.extend(query.fetch_all(self.db()?).await?);
        }
        Ok(rows)
    }

    /// Deletes usage from hours that started before `before`.
    pub async fn sweep_key_usage(&self, before: i64) -> Result<u64> {
        let _span = self.span("sweep_key_usage");
        let mut deleted = 0;
        for query in [
            "DELETE FROM key_usage WHERE hour < $1",
            "DELETE FROM key_usage_peaks WHERE hour < $1",
            "DELETE FROM key_usage_addresses WHERE hour < $1",
        ] {
            deleted += sqlx::query(query)
                .bind(before)
                .execute(self.db()?)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }
}
