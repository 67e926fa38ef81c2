//! Outbound webhooks: endpoints, the outbox (events and one delivery per
//! interested endpoint, written in the transaction of the change that caused
//! them), leased claims of due deliveries, and the attempts' record.

use super::json_rows::{self, Column, JsonRows};
use super::records::RECORD_ROWS;
use super::{Backend, Result, StorageError, Store};
use crate::domain::{EndpointOwner, WebhookSigningKey};

type Transaction<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// An event to announce, with what decides who hears of it.
#[derive(Debug, Clone)]
pub struct WebhookEvent<'a> {
    pub tenant_id: &'a str,
    /// The user the event concerns (the key's or record's owner, the locked
    /// user): members' endpoints hear only of themselves.
    pub subject_owner_id: &'a str,
    pub event_type: &'static str,
    /// For `record.created`: endpoints may listen to some collections only.
    pub collection: Option<&'a str>,
    /// The `data` member of the body: ids only, never a secret.
    pub data: serde_json::Value,
    /// The `traceparent` of the request the event comes from, when that is
    /// not the current task's (a push, written by the group-commit writer).
    /// `None`: the current span's, if any.
    pub trace: Option<&'a str>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub url: String,
    pub description: Option<String>,
    pub events: String,
    pub collections: Option<String>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewEndpoint<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub owner_id: &'a str,
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub events: &'a str,
    pub collections: Option<&'a str>,
    pub now: i64,
}

/// An endpoint's settings as [`Store::update_endpoint`] writes them, whole.
pub struct EndpointSettings<'a> {
    pub url: &'a str,
    pub description: Option<&'a str>,
    pub events: &'a str,
    pub collections: Option<&'a str>,
    /// `enabled` clears the failure record; `disabled` keeps `reason`.
    pub status: &'a str,
    pub disabled_reason: Option<&'a str>,
}

/// A delivery a worker has leased and must attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub endpoint_id: String,
    pub tenant_id: String,
    pub url: String,
    pub owner_id: String,
    pub endpoint_status: String,
    pub failing_since: Option<i64>,
    pub attempts: i64,
    pub created_at: i64,
    /// The endpoint's owner as they stand now: what decides whether the
    /// delivery may still be sent (`EndpointOwner::refuses`).
    pub owner_status: String,
    pub owner_role: String,
    pub owner_permissions: String,
    /// Whom the event is about; `None` for an event from before this was
    /// recorded whose payload did not say.
    pub subject_owner_id: Option<String>,
    /// The request that queued the event, as a W3C `traceparent`.
    pub traceparent: Option<String>,
}

impl DueDelivery {
    pub fn owner(&self) -> EndpointOwner<'_> {
        EndpointOwner {
            user_id: &self.owner_id,
            status: &self.owner_status,
            role: &self.owner_role,
            permissions: &self.owner_permissions,
        }
    }
}

/// One attempt's record, as listed to people.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
    pub delivery_state: String,
}

pub struct NewAttempt<'a> {
    pub delivery_id: &'a str,
    pub endpoint_id: &'a str,
    pub attempted_at: i64,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub response_excerpt: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// What an attempt did to its delivery, decided by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

/// What an attempt did to its endpoint, decided by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointHealth<'a> {
    Succeeded,
    Failing,
    Disable(&'a str),
    /// Nothing was sent (the delivery was dropped): the endpoint's health
    /// says nothing new.
    Unchanged,
}

/// What [`Store::insert_endpoint_within_limits`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointInsert {
    Inserted,
    /// The owner holds this many endpoints already.
    OwnerLimitReached {
        registered: i64,
    },
    /// The tenant holds this many endpoints already.
    TenantLimitReached {
        registered: i64,
    },
}

/// Pending deliveries: how many, and the creation time of the oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub pending: i64,
    pub oldest_created_at: Option<i64>,
}

/// An enabled endpoint and its owner as they stand, for [`record_event`].
#[derive(sqlx::FromRow)]
struct Candidate {
    id: String,
    events: String,
    collections: Option<String>,
    owner_id: String,
    owner_status: String,
    owner_role: String,
    owner_permissions: String,
}

/// Records `event` for every enabled endpoint of its tenant that wants it
/// and whose owner may hear it now (active, holding `webhooks:manage`, and
/// allowed to see what the event is about); writes nothing when none does.
/// Runs in the caller's transaction.
pub(super) async fn record_event(
    tx: &mut Transaction<'_>,
    backend: Backend,
    event: &WebhookEvent<'_>,
    now: i64,
) -> Result<usize> {
    let outbox = Outbox::of(tx, &[(event, now)]).await?;
    outbox.write(tx, backend, None).await?;
    Ok(outbox.queued)
}

/// What some events put in the outbox: the events at least one endpoint
/// listens to and one delivery per such endpoint, as the JSON rows of
/// [`EVENT_ROWS`] and [`DELIVERY_ROWS`].
pub(super) struct Outbox {
    events: String,
    deliveries: String,
    /// How many deliveries.
    pub queued: usize,
}

impl Outbox {
    /// The outbox rows of `events` (each with its time), as a group commit
    /// of pushes needs them: the endpoints are read once per tenant.
    pub(super) async fn of(
        tx: &mut Transaction<'_>,
        events: &[(&WebhookEvent<'_>, i64)],
    ) -> Result<Outbox> {
        let mut candidates: Vec<(&str, Vec<Candidate>)> = Vec::new();
        let mut queued: Vec<EventRow<'_>> = Vec::new();
        let mut deliveries: Vec<DeliveryRow> = Vec::new();
        for &(event, now) in events {
            let known = candidates
                .iter()
                .position(|(tenant, _)| *tenant == event.tenant_id);
            let index = match known {
                Some(index) => index,
                None => {
                    candidates.push((
                        event.tenant_id,
                        enabled_endpoints(tx, event.tenant_id).await?,
                    ));
                    candidates.len() - 1
                }
            };
            let mut listening = candidates[index]
                .1
                .iter()
                .filter(|candidate| candidate.listens_to(event))
                .peekable();
            if listening.peek().is_none() {
                continue;
            }
            let row = EventRow::new(new_event_id(), event, now);
            for candidate in listening {
                deliveries.push(DeliveryRow::new(&row.id, &candidate.id, now));
            }
            queued.push(row);
        }
        Outbox::from_rows(&queued, &deliveries)
    }

    /// One event for one endpoint, whatever it listens to; and its id.
    fn single(event: &WebhookEvent<'_>, endpoint_id: &str, now: i64) -> Result<(Outbox, String)> {
        let row = EventRow::new(new_event_id(), event, now);
        let delivery = DeliveryRow::new(&row.id, endpoint_id, now);
        let outbox = Outbox::from_rows(std::slice::from_ref(&row), &[delivery])?;
        Ok((outbox, row.id))
    }

    fn from_rows(events: &[EventRow<'_>], deliveries: &[DeliveryRow]) -> Result<Outbox> {
        let events: Vec<_> = events.iter().map(EventRow::values).collect();
        Ok(Outbox {
            events: json_rows(&events)?,
            deliveries: json_rows(&deliveries)?,
            queued: deliveries.len(),
        })
    }

    /// Inserts the outbox's rows, and before them `records` (JSON rows of
    /// the records table) if any, in one call to the database.
    pub(super) async fn write(
        &self,
        tx: &mut Transaction<'_>,
        backend: Backend,
        records: Option<&str>,
    ) -> Result<()> {
        let outbox = self.queued > 0;
        let (sql, rows): (&'static str, Vec<&str>) = match (records, outbox) {
            (None, false) => return Ok(()),
            (Some(records), false) => (&STATEMENTS.of(backend).records, vec![records]),
            (None, true) => (
                &STATEMENTS.of(backend).outbox,
                vec![&self.events, &self.deliveries],
            ),
            (Some(records), true) => (
                &STATEMENTS.of(backend).records_and_outbox,
                vec![records, &self.events, &self.deliveries],
            ),
        };
        let mut query = sqlx::query(sql);
        for rows in rows {
            query = query.bind(rows);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }
}

/// `rows` as one JSON array (each row itself an array of its values).
pub(super) fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<String> {
    serde_json::to_string(rows)
        .map_err(|e| StorageError::Corrupt(format!("rows not written as JSON: {e}")))
}

/// The tenant's enabled endpoints, with their owners as they stand.
async fn enabled_endpoints(tx: &mut Transaction<'_>, tenant_id: &str) -> Result<Vec<Candidate>> {
    Ok(sqlx::query_as(
        "SELECT e.id, e.events, e.collections, e.owner_id, u.status AS owner_status, \
         u.role AS owner_role, u.permissions AS owner_permissions FROM webhook_endpoints e \
         JOIN users u ON u.id = e.owner_id WHERE e.tenant_id = $1 AND e.status = 'enabled'",
    )
    .bind(tenant_id)
    .fetch_all(&mut **tx)
    .await?)
}

impl Candidate {
    fn listens_to(&self, event: &WebhookEvent<'_>) -> bool {
        let wants_type = self.events.split(' ').any(|e| e == event.event_type);
        let wants_collection = match (event.collection, &self.collections) {
            (Some(collection), Some(listed)) => listed.split(' ').any(|l| l == collection),
            _ => true,
        };
        let owner = EndpointOwner {
            user_id: &self.owner_id,
            status: &self.owner_status,
            role: &self.owner_role,
            permissions: &self.owner_permissions,
        };
        wants_type && wants_collection && owner.refuses(Some(event.subject_owner_id)).is_none()
    }
}

/// The statements that write pushes and outboxes, built once per backend.
struct Statements {
    records: String,
    outbox: String,
    records_and_outbox: String,
}

struct BothBackends {
    sqlite: Statements,
    postgres: Statements,
}

impl BothBackends {
    fn of(&self, backend: Backend) -> &Statements {
        match backend {
            Backend::Sqlite => &self.sqlite,
            Backend::Postgres => &self.postgres,
        }
    }
}

static STATEMENTS: std::sync::LazyLock<BothBackends> = std::sync::LazyLock::new(|| {
    let of = |backend| Statements {
        records: json_rows::statement(backend, &[&RECORD_ROWS]),
        outbox: json_rows::statement(backend, &[&EVENT_ROWS, &DELIVERY_ROWS]),
        records_and_outbox: json_rows::statement(
            backend,
            &[&RECORD_ROWS, &EVENT_ROWS, &DELIVERY_ROWS],
        ),
    };
    BothBackends {
        sqlite: of(Backend::Sqlite),
        postgres: of(Backend::Postgres),
    }
});

const EVENT_ROWS: JsonRows = JsonRows {
    table: "webhook_events",
    columns: &[
        ("id", Column::Text(0)),
        ("tenant_id", Column::Text(1)),
        ("event_type", Column::Text(2)),
        ("payload", Column::Text(3)),
        ("created_at", Column::Int(4)),
        ("subject_owner_id", Column::Text(5)),
        ("traceparent", Column::Text(6)),
    ],
};

const DELIVERY_ROWS: JsonRows = JsonRows {
    table: "webhook_deliveries",
    columns: &[
        ("id", Column::Text(0)),
        ("event_id", Column::Text(1)),
        ("endpoint_id", Column::Text(2)),
        ("state", Column::Sql("'pending'")),
        ("attempts", Column::Sql("0")),
        ("next_attempt_at", Column::Int(3)),
        ("created_at", Column::Int(3)),
        ("updated_at", Column::Int(3)),
    ],
};

/// An event's row: its body and the trace it continues.
struct EventRow<'a> {
    id: String,
    event: &'a WebhookEvent<'a>,
    payload: String,
    traceparent: Option<String>,
    now: i64,
}

/// An event's body: `data`, `timestamp`, `type` (in that order, as the
/// bodies have always had them).
#[derive(serde::Serialize)]
struct EventBody<'a> {
    data: &'a serde_json::Value,
    timestamp: String,
    #[serde(rename = "type")]
    event_type: &'a str,
}

impl<'a> EventRow<'a> {
    fn new(id: String, event: &'a WebhookEvent<'a>, now: i64) -> Self {
        let body = EventBody {
            data: &event.data,
            timestamp: chrono::DateTime::from_timestamp(now, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            event_type: event.event_type,
        };
        EventRow {
            id,
            event,
            // A `Value` and a struct of strings always serialise.
            payload: serde_json::to_string(&body).unwrap_or_default(),
            traceparent: event
                .trace
                .map(str::to_owned)
                .or_else(crate::telemetry::traces::current_traceparent),
            now,
        }
    }

    /// The row as [`EVENT_ROWS`] reads it.
    #[allow(clippy::type_complexity)]
    fn values(&self) -> (&str, &str, &str, &str, i64, &str, Option<&str>) {
        (
            &self.id,
            self.event.tenant_id,
            self.event.event_type,
            &self.payload,
            self.now,
            self.event.subject_owner_id,
            self.traceparent.as_deref(),
        )
    }
}

/// A delivery's row as [`DELIVERY_ROWS`] reads it: id, event, endpoint,
/// time.
#[derive(serde::Serialize)]
struct DeliveryRow(String, String, String, i64);

impl DeliveryRow {
    fn new(event_id: &str, endpoint_id: &str, now: i64) -> Self {
        DeliveryRow(
            uuid::Uuid::now_v7().to_string(),
            event_id.to_owned(),
            endpoint_id.to_owned(),
            now,
        )
    }
}

async fn insert_endpoint(tx: &mut Transaction<'_>, endpoint: &NewEndpoint<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, tenant_id, owner_id, url, description, events, \
         collections, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'enabled', $8, $8)",
    )
    .bind(endpoint.id)
    .bind(endpoint.tenant_id)
    .bind(endpoint.owner_id)
    .bind(endpoint.url)
    .bind(endpoint.description)
    .bind(endpoint.events)
    .bind(endpoint.collections)
    .bind(endpoint.now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn new_event_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// One attempt and its consequences, in the caller's transaction; true
/// when it disabled its endpoint.
async fn record_attempt(
    tx: &mut Transaction<'_>,
    attempt: &NewAttempt<'_>,
    outcome: AttemptOutcome,
    health: EndpointHealth<'_>,
) -> Result<bool> {
    let now = attempt.attempted_at;
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, attempted_at, \
         status_code, latency_ms, response_excerpt, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(attempt.delivery_id)
    .bind(attempt.endpoint_id)
    .bind(now)
    .bind(attempt.status_code.map(i64::from))
    .bind(attempt.latency_ms)
    .bind(attempt.response_excerpt)
    .bind(attempt.error)
    .execute(&mut **tx)
    .await?;
    let (state, next_attempt_at) = match outcome {
        AttemptOutcome::Delivered => ("delivered", now),
        AttemptOutcome::RetryAt(at) => ("pending", at),
        AttemptOutcome::GiveUp => ("failed", now),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $2, next_attempt_at = $3, \
         attempts = attempts + 1, leased_until = NULL, updated_at = $4 WHERE id = $1",
    )
    .bind(attempt.delivery_id)
    .bind(state)
    .bind(next_attempt_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let disabled = match health {
        EndpointHealth::Succeeded => {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 \
                 AND failing_since IS NOT NULL",
            )
            .bind(attempt.endpoint_id)
            .execute(&mut **tx)
            .await?;
            false
        }
        EndpointHealth::Failing => {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 \
                 AND failing_since IS NULL",
            )
            .bind(attempt.endpoint_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            false
        }
        EndpointHealth::Unchanged => false,
        EndpointHealth::Disable(reason) => {
            let done = sqlx::query(
                "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $2, \
                 updated_at = $3 WHERE id = $1 AND status = 'enabled'",
            )
            .bind(attempt.endpoint_id)
            .bind(reason)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            done.rows_affected() == 1
        }
    };
    Ok(disabled)
}

const ENDPOINT_COLUMNS: &str = "id, tenant_id, owner_id, url, description, events, collections, \
     status, disabled_reason, failing_since, created_at, updated_at";

const CLAIM_POSTGRES: &str = "UPDATE webhook_deliveries SET leased_until = $2, updated_at = $1 \
     WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' \
     AND next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until < $1) \
     ORDER BY next_attempt_at LIMIT CAST($3 AS BIGINT) FOR UPDATE SKIP LOCKED) RETURNING id";

// SQLite has one writer at a time: the UPDATE is atomic without row locks.
const CLAIM_SQLITE: &str = "UPDATE webhook_deliveries SET leased_until = $2, updated_at = $1 \
     WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' \
     AND next_attempt_at <= $1 AND (leased_until IS NULL OR leased_until < $1) \
     ORDER BY next_attempt_at LIMIT CAST($3 AS BIGINT)) RETURNING id";

/// The claimed deliveries (their ids a JSON array at `$1`) with their
/// events, endpoints and the endpoints' owners as they stand.
macro_rules! read_claimed {
    ($ids:literal) => {
        concat!(
            "SELECT d.id, d.event_id, e.event_type, e.payload, d.endpoint_id, p.tenant_id, \
             p.url, p.owner_id, p.status AS endpoint_status, p.failing_since, d.attempts, \
             d.created_at, u.status AS owner_status, u.role AS owner_role, \
             u.permissions AS owner_permissions, e.subject_owner_id, e.traceparent \
             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
             JOIN webhook_endpoints p ON p.id = d.endpoint_id \
             JOIN users u ON u.id = p.owner_id WHERE d.id IN (SELECT value FROM ",
            $ids,
            ") ORDER BY d.next_attempt_at, d.id"
        )
    };
}
const READ_CLAIMED_SQLITE: &str = read_claimed!("json_each($1)");
const READ_CLAIMED_POSTGRES: &str = read_claimed!("json_array_elements_text($1::json)");

impl Store {
    /// Inserts the endpoint unless its owner already holds `max_per_owner`
    /// endpoints or its tenant `max_per_tenant` (disabled ones count: they
    /// may be enabled again). The tenant's row is locked first (an UPDATE
    /// takes a row lock on PostgreSQL and the write lock on SQLite), so
    /// concurrent registrations in one tenant are serialised and neither
    /// limit can be overshot; registrations are rare, so one lock per
    /// tenant costs nothing.
    pub async fn insert_endpoint_within_limits(
        &self,
        endpoint: NewEndpoint<'_>,
        max_per_owner: u32,
        max_per_tenant: u32,
    ) -> Result<EndpointInsert> {
        let _span = self.span("insert_endpoint_within_limits");
        let mut tx = self.db()?.begin().await?;
        sqlx::query("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
            .bind(endpoint.tenant_id)
            .execute(&mut *tx)
            .await?;
        let (in_tenant, of_owner): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN owner_id = $2 THEN 1 ELSE 0 END), 0) \
             FROM webhook_endpoints WHERE tenant_id = $1",
        )
        .bind(endpoint.tenant_id)
        .bind(endpoint.owner_id)
        .fetch_one(&mut *tx)
        .await?;
        let refused = if of_owner >= i64::from(max_per_owner) {
            Some(EndpointInsert::OwnerLimitReached {
                registered: of_owner,
            })
        } else if in_tenant >= i64::from(max_per_tenant) {
            Some(EndpointInsert::TenantLimitReached {
                registered: in_tenant,
            })
        } else {
            None
        };
        if let Some(refused) = refused {
            tx.rollback().await?;
            return Ok(refused);
        }
        insert_endpoint(&mut tx, &endpoint).await?;
        tx.commit().await?;
        Ok(EndpointInsert::Inserted)
    }

    /// Inserts the endpoint whatever the limits (tests arranging a state).
    pub async fn insert_endpoint(&self, endpoint: NewEndpoint<'_>) -> Result<()> {
        let _span = self.span("insert_endpoint");
        let mut tx = self.db()?.begin().await?;
        insert_endpoint(&mut tx, &endpoint).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        let _span = self.span("find_endpoint");
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        Ok(sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.db()?)
            .await?)
    }

    /// A tenant's endpoints, or one owner's within it.
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        owner_id: Option<&str>,
    ) -> Result<Vec<EndpointRow>> {
        let _span = self.span("list_endpoints");
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE tenant_id = $1 AND ($2 IS NULL OR owner_id = $2) ORDER BY created_at, id"
        );
        Ok(sqlx::query_as::<_, EndpointRow>(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(owner_id)
            .fetch_all(self.db()?)
            .await?)
    }

    pub async fn update_endpoint(
        &self,
        id: &str,
        settings: EndpointSettings<'_>,
        now: i64,
    ) -> Result<bool> {
        let _span = self.span("update_endpoint");
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = $2, description = $3, events = $4, \
             collections = $5, status = $6, disabled_reason = $7, updated_at = $8, \
             failing_since = CASE WHEN $6 = 'enabled' THEN NULL ELSE failing_since END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(settings.url)
        .bind(settings.description)
        .bind(settings.events)
        .bind(settings.collections)
        .bind(settings.status)
        .bind(settings.disabled_reason)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_endpoint(&self, id: &str) -> Result<bool> {
        let _span = self.span("delete_endpoint");
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Queues `event` for one endpoint only, whatever it listens to (a test
    /// event). Returns the event id.
    pub async fn queue_event_for(
        &self,
        endpoint_id: &str,
        event: &WebhookEvent<'_>,
        now: i64,
    ) -> Result<String> {
        let _span = self.span("queue_event_for");
        let (outbox, event_id) = Outbox::single(event, endpoint_id, now)?;
        let mut tx = self.db()?.begin().await?;
        outbox.write(&mut tx, self.backend, None).await?;
        tx.commit().await?;
        Ok(event_id)
    }

    /// Records `event` for the endpoints that want it, in a transaction of
    /// its own (for events no other write carries, such as `key.expiring`).
    pub async fn record_webhook_event(&self, event: &WebhookEvent<'_>, now: i64) -> Result<usize> {
        let _span = self.span("record_webhook_event");
        let mut tx = self.begin_write().await?;
        let queued = record_event(&mut tx, self.backend, event, now).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Leases up to `limit` due deliveries until `lease_until`. Instances
    /// sharing one database never lease one delivery twice at once: on
    /// PostgreSQL the rows are taken `FOR UPDATE SKIP LOCKED`, and SQLite has
    /// a single writer.
    pub async fn claim_due_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>> {
        let _span = self.span("claim_due_deliveries");
        let claim = match self.backend {
            Backend::Postgres => CLAIM_POSTGRES,
            Backend::Sqlite => CLAIM_SQLITE,
        };
        let ids: Vec<(String,)> = sqlx::query_as(claim)
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit))
            .fetch_all(self.db()?)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(|(id,)| id.as_str()).collect();
        let read = match self.backend {
            Backend::Postgres => READ_CLAIMED_POSTGRES,
            Backend::Sqlite => READ_CLAIMED_SQLITE,
        };
        // One read for the whole batch. A delivery gone meanwhile (its
        // endpoint was deleted) is simply not there: nothing to attempt.
        Ok(sqlx::query_as::<_, DueDelivery>(read)
            .bind(json_rows(&ids)?)
            .fetch_all(self.db()?)
            .await?)
    }

    /// The keys that sign `owner_id`'s deliveries: the marked key first, then
    /// keys that lost the mark after `unmarked_after` and are not revoked.
    pub async fn webhook_signing_keys_of(
        &self,
        owner_id: &str,
        unmarked_after: i64,
        now: i64,
    ) -> Result<Vec<WebhookSigningKey>> {
        let _span = self.span("webhook_signing_keys_of");
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, webhook_key_sealed FROM api_keys WHERE owner_id = $1 \
             AND webhook_key_sealed IS NOT NULL AND revoked_at IS NULL \
             AND ((signs_webhooks = 1 AND disabled_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > $3)) \
                  OR webhook_unmarked_at > $2) \
             ORDER BY signs_webhooks DESC, created_at DESC",
        )
        .bind(owner_id)
        .bind(unmarked_after)
        .bind(now)
        .fetch_all(self.db()?)
        .await?;
        rows.into_iter()
            .map(|(id, sealed)| {
                let clear = self.open("api_keys", "webhook_key_sealed", &id, &sealed)?;
                WebhookSigningKey::from_bytes(&clear).ok_or_else(|| {
                    StorageError::Corrupt(format!("key {id}: bad webhook key length"))
                })
            })
            .collect()
    }

    /// Writes a batch of attempts and their consequences in one transaction
    /// (one commit, so one disk flush, per batch). Returns, for each, whether
    /// it disabled its endpoint.
    pub async fn record_attempts(
        &self,
        attempts: &[(NewAttempt<'_>, AttemptOutcome, EndpointHealth<'_>)],
    ) -> Result<Vec<bool>> {
        let _span = self.span("record_attempts");
        let mut tx = self.db()?.begin().await?;
        let mut disabled = Vec::with_capacity(attempts.len());
        for (attempt, outcome, health) in attempts {
            disabled.push(record_attempt(&mut tx, attempt, *outcome, *health).await?);
        }
        tx.commit().await?;
        Ok(disabled)
    }

    /// Gives a lease back without an attempt (the endpoint was disabled
    /// meanwhile): the delivery waits, pending, until `next_attempt_at`.
    pub async fn release_delivery(&self, delivery_id: &str, next_attempt_at: i64) -> Result<()> {
        let _span = self.span("release_delivery");
        sqlx::query(
            "UPDATE webhook_deliveries SET leased_until = NULL, next_attempt_at = $2 WHERE id = $1",
        )
        .bind(delivery_id)
        .bind(next_attempt_at)
        .execute(self.db()?)
        .await?;
        Ok(())
    }

    /// The endpoint's latest attempts, newest first.
    pub async fn list_attempts(&self, endpoint_id: &str, limit: u32) -> Result<Vec<AttemptRow>> {
        let _span = self.span("list_attempts");
        Ok(sqlx::query_as::<_, AttemptRow>(
            "SELECT a.id, a.delivery_id, d.event_id, e.event_type, a.attempted_at, a.status_code, \
             a.latency_ms, a.response_excerpt, a.error, d.state AS delivery_state \
             FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
             JOIN webhook_events e ON e.id = d.event_id WHERE a.endpoint_id = $1 \
             ORDER BY a.attempted_at DESC, a.id DESC LIMIT CAST($2 AS BIGINT)",
        )
        .bind(endpoint_id)
        .bind(i64::from(limit))
        .fetch_all(self.db()?)
        .await?)
    }

    /// The endpoint a delivery belongs to, if the delivery exists.
    pub async fn delivery_endpoint(&self, delivery_id: &str) -> Result<Option<String>> {
        let _span = self.span("delivery_endpoint");
        let found: Option<(String,)> =
            sqlx::query_as("SELECT endpoint_id FROM webhook_deliveries WHERE id = $1")
                .bind(delivery_id)
                .fetch_optional(self.db()?)
                .await?;
        Ok(found.map(|(id,)| id))
    }

    /// Queues a delivery again, now, with the same event (and so the same
    /// `webhook-id`).
    pub async fn redeliver(&self, delivery_id: &str, now: i64) -> Result<bool> {
        let _span = self.span("redeliver");
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $2, \
             leased_until = NULL, created_at = $2, updated_at = $2 WHERE id = $1",
        )
        .bind(delivery_id)
        .bind(now)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Announces `key.expiring` once for each active key whose expiry falls
    /// within `window` seconds, in one transaction with the marks that stop
    /// it being announced twice (a key whose expiry changes is announced
    /// again for the new one). Returns how many keys were announced.
    pub async fn announce_expiring_keys(&self, now: i64, window: i64) -> Result<usize> {
        let _span = self.span("announce_expiring_keys");
        let mut tx = self.db()?.begin().await?;
        let due: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, tenant_id, owner_id, client_id, expires_at FROM api_keys \
             WHERE expires_at IS NOT NULL AND expires_at > $1 AND expires_at <= $2 \
             AND revoked_at IS NULL AND disabled_at IS NULL \
             AND (expiry_announced_at IS NULL OR expiry_announced_at < expires_at - $3)",
        )
        .bind(now)
        .bind(now + window)
        .bind(window)
        .fetch_all(&mut *tx)
        .await?;
        for (id, tenant_id, owner_id, client_id, expires_at) in &due {
            sqlx::query("UPDATE api_keys SET expiry_announced_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            record_event(
                &mut tx,
                self.backend,
                &WebhookEvent {
                    tenant_id,
                    subject_owner_id: owner_id,
                    event_type: "key.expiring",
                    trace: None,
                    collection: None,
                    data: serde_json::json!({
                        "key_id": id,
                        "client_id": client_id,
                        "owner_id": owner_id,
                        "expires_at": expires_at,
                    }),
                },
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(due.len())
    }

    pub async fn webhook_queue_stats(&self) -> Result<QueueStats> {
        let _span = self.span("webhook_queue_stats");
        let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries WHERE state = 'pending'",
        )
        .fetch_one(self.db()?)
        .await?;
        Ok(QueueStats {
            pending,
            oldest_created_at: oldest,
        })
    }
}
