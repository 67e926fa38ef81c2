//! Outbound webhooks: endpoints, the outbox (events, written in the
//! transaction of the change that caused them, each naming the endpoints
//! that heard it; the worker then writes one delivery per endpoint), leased
//! claims of due deliveries, and the attempts' record.

use super::{Backend, Result, StorageError, Store};
use crate::domain::{Audience, EndpointOwner, WebhookSigningKey};

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
    pub data: EventData<'a>,
    /// The `traceparent` of the request the event comes from, when that is
    /// not the current task's (a push, written by the group-commit writer).
    /// `None`: the current span's, if any.
    pub trace: Option<&'a str>,
}

/// An event's `data`.
#[derive(Debug, Clone)]
pub enum EventData<'a> {
    Json(serde_json::Value),
    /// A push's `record.created`, written from the push as it is: building
    /// a `serde_json::Value` of it first, then printing that, cost more
    /// than writing the row's key.
    RecordCreated {
        client_id: &'a str,
        collection: &'a str,
        owner_id: &'a str,
        /// The push's records (id, body): only the ids are written.
        records: &'a [(String, String)],
    },
}

impl serde::Serialize for EventData<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self {
            EventData::Json(value) => value.serialize(serializer),
            EventData::RecordCreated {
                client_id,
                collection,
                owner_id,
                records,
            } => {
                struct Ids<'a>(&'a [(String, String)]);
                impl serde::Serialize for Ids<'_> {
                    fn serialize<S: serde::Serializer>(
                        &self,
                        serializer: S,
                    ) -> std::result::Result<S::Ok, S::Error> {
                        serializer.collect_seq(self.0.iter().map(|(id, _)| id))
                    }
                }
                // The members in the order a `Value` printed them (sorted),
                // so the body is the same bytes as before.
                let mut map = serializer.serialize_map(Some(4))?;
                map.serialize_entry("client_id", client_id)?;
                map.serialize_entry("collection", collection)?;
                map.serialize_entry("owner_id", owner_id)?;
                map.serialize_entry("record_ids", &Ids(records))?;
                map.end()
            }
        }
    }
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
struct CandidateRow {
    id: String,
    events: String,
    collections: Option<String>,
    owner_id: String,
    owner_status: String,
    owner_role: String,
    owner_permissions: String,
}

/// An enabled endpoint, and what its owner may hear, judged once for all
/// the events of a batch.
struct Candidate {
    id: String,
    events: String,
    collections: Option<String>,
    owner_id: String,
    audience: Audience,
}

/// Records `event` for every enabled endpoint of its tenant that wants it
/// and whose owner may hear it now (active, holding `webhooks:manage`, and
/// allowed to see what the event is about); writes nothing when none does.
/// Runs in the caller's transaction.
pub(super) async fn record_event(
    tx: &mut Transaction<'_>,
    event: &WebhookEvent<'_>,
    now: i64,
) -> Result<usize> {
    record_events(tx, &[(event, now)]).await
}

/// [`record_event`] for several events (each with its time) at once, as a
/// group commit of pushes writes them: the endpoints are read once per
/// tenant, and the events inserted a few rows per statement. Each event
/// names the endpoints that hear it now (`pending_endpoints`); their
/// deliveries are written by the worker ([`Store::claim_due_deliveries`]),
/// so a listened-to push writes one row beside its records rather than two
/// or more, with their keys and indexes: that was most of what an endpoint
/// listening added to a push. How many deliveries were queued.
pub(super) async fn record_events(
    tx: &mut Transaction<'_>,
    events: &[(&WebhookEvent<'_>, i64)],
) -> Result<usize> {
    let mut candidates: Vec<(&str, Vec<Candidate>)> = Vec::new();
    let mut queued: Vec<(String, &WebhookEvent<'_>, i64, String)> = Vec::new();
    let mut deliveries = 0;
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
        let mut listening = String::new();
        for candidate in &candidates[index].1 {
            if candidate.listens_to(event) {
                if !listening.is_empty() {
                    listening.push(' ');
                }
                listening.push_str(&candidate.id);
                deliveries += 1;
            }
        }
        if listening.is_empty() {
            continue;
        }
        queued.push((new_event_id(), event, now, listening));
    }
    let rows: Vec<EventRow> = queued
        .iter()
        .map(|(id, event, now, listening)| EventRow::new(id, event, *now, listening))
        .collect();
    insert_rows(tx, &EVENT_INSERT, &rows).await?;
    Ok(deliveries)
}

/// The tenant's enabled endpoints, with their owners as they stand.
async fn enabled_endpoints(tx: &mut Transaction<'_>, tenant_id: &str) -> Result<Vec<Candidate>> {
    let rows: Vec<CandidateRow> = sqlx::query_as(
        "SELECT e.id, e.events, e.collections, e.owner_id, u.status AS owner_status, \
         u.role AS owner_role, u.permissions AS owner_permissions FROM webhook_endpoints e \
         JOIN users u ON u.id = e.owner_id WHERE e.tenant_id = $1 AND e.status = 'enabled'",
    )
    .bind(tenant_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let audience = EndpointOwner {
                user_id: &row.owner_id,
                status: &row.owner_status,
                role: &row.owner_role,
                permissions: &row.owner_permissions,
            }
            .audience();
            Candidate {
                id: row.id,
                events: row.events,
                collections: row.collections,
                owner_id: row.owner_id,
                audience,
            }
        })
        .collect())
}

impl Candidate {
    fn listens_to(&self, event: &WebhookEvent<'_>) -> bool {
        let wants_type = self.events.split(' ').any(|e| e == event.event_type);
        let wants_collection = match (event.collection, &self.collections) {
            (Some(collection), Some(listed)) => listed.split(' ').any(|l| l == collection),
            _ => true,
        };
        wants_type
            && wants_collection
            && self
                .audience
                .refuses(&self.owner_id, Some(event.subject_owner_id))
                .is_none()
    }
}

/// A multi-row `INSERT`: its table and columns, and how a row binds them.
pub(super) struct RowInsert {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    /// Placeholders of one row beyond its columns' (`'pending', 0, $4…`):
    /// `None` binds one parameter per column.
    pub values: Option<&'static [&'static str]>,
    /// The statement for each size of [`ROWS_PER_STATEMENT`], built once:
    /// building it for every statement was a tenth of what an event added
    /// to a push, counted in instructions.
    pub texts: [std::sync::OnceLock<String>; ROWS_PER_STATEMENT.len()],
}

/// A row [`insert_rows`] writes.
pub(super) trait InsertRow {
    fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q>;
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Rows per statement, largest first: a batch of n rows takes a few
/// statements of these sizes, so only these few texts are ever prepared
/// (and cached), and no statement nears SQLite's limit on parameters.
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];

/// Inserts `rows` into `insert.table`, several rows per statement.
pub(super) async fn insert_rows<R: InsertRow>(
    tx: &mut Transaction<'_>,
    insert: &'static RowInsert,
    rows: &[R],
) -> Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let which = ROWS_PER_STATEMENT
            .iter()
            .position(|size| *size <= rest.len())
            .unwrap_or(ROWS_PER_STATEMENT.len() - 1);
        let size = ROWS_PER_STATEMENT[which];
        let (chunk, after) = rest.split_at(size);
        let text: &'static str = insert.texts[which].get_or_init(|| insert.sql(size));
        let mut query = sqlx::query(text);
        for row in chunk {
            query = row.bind(query);
        }
        query.execute(&mut **tx).await?;
        rest = after;
    }
    Ok(())
}

impl RowInsert {
    /// No statement built yet.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const TEXTS: [std::sync::OnceLock<String>; ROWS_PER_STATEMENT.len()] =
        [const { std::sync::OnceLock::new() }; ROWS_PER_STATEMENT.len()];

    /// The statement for `rows` rows (its text depends only on that).
    fn sql(&self, rows: usize) -> String {
        use std::fmt::Write as _;
        let per_row = self.columns.len();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ",
            self.table,
            self.columns.join(", ")
        );
        let mut parameter = 0;
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            match self.values {
                None => {
                    for column in 0..per_row {
                        parameter += 1;
                        let _ = write!(sql, "{}${parameter}", if column == 0 { "" } else { ", " });
                    }
                }
                Some(values) => {
                    // `$n` in the template counts from this row's first.
                    let base = parameter;
                    let mut highest = 0;
                    for (i, value) in values.iter().enumerate() {
                        sql.push_str(if i == 0 { "" } else { ", " });
                        match value
                            .strip_prefix('$')
                            .and_then(|n| n.parse::<usize>().ok())
                        {
                            Some(n) => {
                                highest = highest.max(n);
                                let _ = write!(sql, "${}", base + n);
                            }
                            None => sql.push_str(value),
                        }
                    }
                    parameter += highest;
                }
            }
            sql.push(')');
        }
        sql
    }
}

static EVENT_INSERT: RowInsert = RowInsert {
    table: "webhook_events",
    columns: &[
        "id",
        "tenant_id",
        "event_type",
        "payload",
        "created_at",
        "subject_owner_id",
        "traceparent",
        "pending_endpoints",
    ],
    values: None,
    texts: RowInsert::TEXTS,
};

static DELIVERY_INSERT: RowInsert = RowInsert {
    table: "webhook_deliveries",
    columns: &[
        "id",
        "event_id",
        "endpoint_id",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
    ],
    values: Some(&["$1", "$2", "$3", "'pending'", "0", "$4", "$4", "$4"]),
    texts: RowInsert::TEXTS,
};

/// An event's row: its body, the trace it continues and the endpoints
/// that hear it (ids, space-separated).
struct EventRow<'a> {
    id: &'a str,
    event: &'a WebhookEvent<'a>,
    payload: String,
    traceparent: Option<String>,
    now: i64,
    pending_endpoints: &'a str,
}

/// An event's body, its members in the order they have always had
/// (`data`, `timestamp`, `type`), serialised without copying `data`.
#[derive(serde::Serialize)]
struct EventBody<'a> {
    data: &'a EventData<'a>,
    timestamp: String,
    #[serde(rename = "type")]
    event_type: &'a str,
}

impl<'a> EventRow<'a> {
    fn new(id: &'a str, event: &'a WebhookEvent<'a>, now: i64, pending_endpoints: &'a str) -> Self {
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
            // A `Value` beside two strings always serialises.
            payload: serde_json::to_string(&body).unwrap_or_default(),
            traceparent: event
                .trace
                .map(str::to_owned)
                .or_else(crate::telemetry::traces::current_traceparent),
            now,
            pending_endpoints,
        }
    }
}

impl InsertRow for EventRow<'_> {
    fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.id)
            .bind(self.event.tenant_id)
            .bind(self.event.event_type)
            .bind(self.payload.as_str())
            .bind(self.now)
            .bind(self.event.subject_owner_id)
            .bind(self.traceparent.as_deref())
            .bind(self.pending_endpoints)
    }
}

struct DeliveryRow<'a> {
    id: String,
    event_id: &'a str,
    endpoint_id: &'a str,
    now: i64,
}

impl InsertRow for DeliveryRow<'_> {
    fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.id.as_str())
            .bind(self.event_id)
            .bind(self.endpoint_id)
            .bind(self.now)
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

const FAN_OUT_TAKE_SQLITE: &str = "SELECT id, pending_endpoints, created_at FROM webhook_events \
     WHERE pending_endpoints IS NOT NULL ORDER BY created_at LIMIT CAST($1 AS BIGINT)";
/// Of the endpoints named (a JSON array at `$1`), those that still exist.
const FAN_OUT_EXISTING_SQLITE: &str =
    "SELECT id FROM webhook_endpoints WHERE id IN (SELECT value FROM json_each($1))";
const FAN_OUT_CLEAR_SQLITE: &str = "UPDATE webhook_events SET pending_endpoints = NULL \
     WHERE id IN (SELECT value FROM json_each($1))";

/// [`fan_out_sqlite`] in one statement: the oldest `$1` events still to fan
/// out, taken `FOR UPDATE SKIP LOCKED` (two instances never fan out one
/// event), cleared, and one delivery written for each endpoint named that
/// still exists. Its ids are random (v4) rather than time-ordered: nothing
/// orders deliveries by id but a tie of `next_attempt_at`.
const FAN_OUT_POSTGRES: &str = "WITH taken AS (\
     SELECT id, pending_endpoints, created_at FROM webhook_events \
     WHERE pending_endpoints IS NOT NULL ORDER BY created_at \
     LIMIT CAST($1 AS BIGINT) FOR UPDATE SKIP LOCKED), \
     cleared AS (UPDATE webhook_events e SET pending_endpoints = NULL FROM taken \
     WHERE e.id = taken.id RETURNING taken.id, taken.pending_endpoints, taken.created_at) \
     INSERT INTO webhook_deliveries (id, event_id, endpoint_id, state, attempts, \
     next_attempt_at, created_at, updated_at) \
     SELECT gen_random_uuid()::text, c.id, p.id, 'pending', 0, c.created_at, c.created_at, \
     c.created_at FROM cleared c \
     CROSS JOIN LATERAL unnest(string_to_array(c.pending_endpoints, ' ')) AS named(endpoint_id) \
     JOIN webhook_endpoints p ON p.id = named.endpoint_id";

/// Writes one pending delivery for each endpoint the oldest `limit` events
/// still to fan out name, due at once and dated from the event, and clears
/// the events' lists, in the caller's transaction: every endpoint that
/// heard an event when it was queued gets its delivery, exactly once, and
/// no other does. An endpoint deleted since gets none (its deliveries would
/// have gone with it). How many events were fanned out. (PostgreSQL does
/// the same in one statement, [`FAN_OUT_POSTGRES`].)
async fn fan_out_sqlite(tx: &mut Transaction<'_>, limit: u32) -> Result<usize> {
    let events: Vec<(String, String, i64)> = sqlx::query_as(FAN_OUT_TAKE_SQLITE)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    if events.is_empty() {
        return Ok(0);
    }
    let mut named: Vec<&str> = events
        .iter()
        .flat_map(|(_, endpoints, _)| endpoints.split(' '))
        .collect();
    named.sort_unstable();
    named.dedup();
    let existing: Vec<(String,)> = sqlx::query_as(FAN_OUT_EXISTING_SQLITE)
        .bind(to_json(&named)?)
        .fetch_all(&mut **tx)
        .await?;
    let existing: std::collections::HashSet<&str> =
        existing.iter().map(|(id,)| id.as_str()).collect();
    let rows: Vec<DeliveryRow<'_>> = events
        .iter()
        .flat_map(|(event_id, endpoints, created_at)| {
            endpoints
                .split(' ')
                .filter(|endpoint| existing.contains(endpoint))
                .map(move |endpoint_id| DeliveryRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    event_id,
                    endpoint_id,
                    now: *created_at,
                })
        })
        .collect();
    insert_rows(tx, &DELIVERY_INSERT, &rows).await?;
    let ids: Vec<&str> = events.iter().map(|(id, _, _)| id.as_str()).collect();
    sqlx::query(FAN_OUT_CLEAR_SQLITE)
        .bind(to_json(&ids)?)
        .execute(&mut **tx)
        .await?;
    Ok(events.len())
}

/// Ids as one JSON array, one parameter however many.
fn to_json(ids: &[&str]) -> Result<String> {
    serde_json::to_string(ids)
        .map_err(|e| StorageError::Corrupt(format!("ids not written as JSON: {e}")))
}

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
        let mut tx = self.db()?.begin().await?;
        let event_id = new_event_id();
        insert_rows(
            &mut tx,
            &EVENT_INSERT,
            &[EventRow::new(&event_id, event, now, endpoint_id)],
        )
        .await?;
        tx.commit().await?;
        Ok(event_id)
    }

    /// Records `event` for the endpoints that want it, in a transaction of
    /// its own (for events no other write carries, such as `key.expiring`).
    pub async fn record_webhook_event(&self, event: &WebhookEvent<'_>, now: i64) -> Result<usize> {
        let _span = self.span("record_webhook_event");
        let mut tx = self.begin_write().await?;
        let queued = record_event(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(queued)
    }

    /// Writes the deliveries of the oldest `limit` events not fanned out
    /// yet, then leases up to `limit` due deliveries until `lease_until`,
    /// in one transaction (so one commit, as before events were fanned out
    /// here). Instances sharing one database never lease one delivery twice
    /// at once, nor fan one event out twice: on PostgreSQL the rows are
    /// taken `FOR UPDATE SKIP LOCKED`, and SQLite has a single writer.
    ///
    /// Only as many events as deliveries leased: a backlog is fanned out
    /// as it is sent, so the first claims after a burst of pushes do not
    /// write the whole burst's deliveries before sending any.
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
        let claim = sqlx::query_as(claim)
            .bind(now)
            .bind(lease_until)
            .bind(i64::from(limit));
        let ids: Vec<(String,)> = match self.backend {
            // One statement, in the claim's transaction: each statement and
            // each commit (a WAL flush) of a claim counts on PostgreSQL; a
            // fan-out of several statements, or committed on its own,
            // halved the delivery rate from a backlog.
            Backend::Postgres => {
                let mut tx = self.db()?.begin().await?;
                sqlx::query(FAN_OUT_POSTGRES)
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await?;
                let ids = claim.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                ids
            }
            Backend::Sqlite => {
                // A look first, outside a write transaction: taking the
                // write lock at every poll would queue the worker behind the
                // pushes' commits (and them behind it) for nothing. When
                // there is work, one transaction: one commit, one fsync.
                let to_fan_out: Option<(String,)> = sqlx::query_as(
                    "SELECT id FROM webhook_events WHERE pending_endpoints IS NOT NULL \
                     ORDER BY created_at LIMIT 1",
                )
                .fetch_optional(self.db()?)
                .await?;
                match to_fan_out {
                    None => claim.fetch_all(self.db()?).await?,
                    Some(_) => {
                        let mut tx = self.begin_write().await?;
                        fan_out_sqlite(&mut tx, limit).await?;
                        let ids = claim.fetch_all(&mut *tx).await?;
                        tx.commit().await?;
                        ids
                    }
                }
            }
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(|(id,)| id.as_str()).collect();
        let ids_json = to_json(&ids)?;
        let read = match self.backend {
            Backend::Postgres => READ_CLAIMED_POSTGRES,
            Backend::Sqlite => READ_CLAIMED_SQLITE,
        };
        // One read for the whole batch. A delivery gone meanwhile (its
        // endpoint was deleted) is simply not there: nothing to attempt.
        Ok(sqlx::query_as::<_, DueDelivery>(read)
            .bind(ids_json)
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
        let mut tx = self.begin_write().await?;
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
                &WebhookEvent {
                    tenant_id,
                    subject_owner_id: owner_id,
                    event_type: "key.expiring",
                    trace: None,
                    collection: None,
                    data: EventData::Json(serde_json::json!({
                        "key_id": id,
                        "client_id": client_id,
                        "owner_id": owner_id,
                        "expires_at": expires_at,
                    })),
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
        // Deliveries not written yet: one per endpoint an event names.
        let (to_write, oldest_event): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COALESCE(SUM(LENGTH(pending_endpoints) \
             - LENGTH(REPLACE(pending_endpoints, ' ', '')) + 1), 0), MIN(created_at) \
             FROM webhook_events WHERE pending_endpoints IS NOT NULL",
        )
        .fetch_one(self.db()?)
        .await?;
        Ok(QueueStats {
            pending: pending + to_write,
            oldest_created_at: match (oldest, oldest_event) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push's `record.created` data, written from the push, is the very
    /// text the `serde_json::Value` it replaced printed.
    #[test]
    fn record_created_data_is_written_as_the_value_was() {
        let records = [
            ("0193-a".to_owned(), "{}".to_owned()),
            ("0193-\"b\"".to_owned(), "{}".to_owned()),
        ];
        let data = EventData::RecordCreated {
            client_id: "kp_client",
            collection: "orders",
            owner_id: "u-1",
            records: &records,
        };
        let as_before = serde_json::json!({
            "collection": "orders",
            "record_ids": ["0193-a", "0193-\"b\""],
            "owner_id": "u-1",
            "client_id": "kp_client",
        });
        assert_eq!(serde_json::to_string(&data).unwrap(), as_before.to_string());
        let none = EventData::RecordCreated {
            client_id: "c",
            collection: "x",
            owner_id: "u",
            records: &[],
        };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"client_id":"c","collection":"x","owner_id":"u","record_ids":[]}"#
        );
    }
}
