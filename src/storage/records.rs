use super::webhooks::{
    AnyQuery, EventData, InsertRow, RowInsert, WebhookEvent, insert_rows, record_events,
};
use super::{Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    pub id: String,
    pub collection: String,
    pub owner_id: String,
    pub client_id: String,
    pub body: String,
    pub created_at: i64,
}

/// One push: records already serialised, their ids already chosen, and the
/// response the push will answer (stored with the idempotency key so a retry
/// gets the very same answer).
pub struct NewRecords<'a> {
    pub tenant_id: &'a str,
    pub owner_id: &'a str,
    pub client_id: &'a str,
    pub collection: &'a str,
    pub records: &'a [(String, String)],
    pub now: i64,
    pub idempotency: Option<Idempotency<'a>>,
    /// The pushing request's W3C `traceparent`, for the deliveries' spans.
    pub traceparent: Option<&'a str>,
}

pub struct Idempotency<'a> {
    pub key: &'a str,
    pub request_digest: &'a str,
    pub response: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Stored,
    /// The idempotency key was used before for the same request: here is the
    /// answer it got.
    Replayed {
        response: String,
    },
    /// The idempotency key was used before for a different request.
    KeyReused,
}

pub struct RecordQuery<'a> {
    pub tenant_id: &'a str,
    pub collection: &'a str,
    /// `None` for admins: the whole tenant.
    pub owner_id: Option<&'a str>,
    pub after_id: Option<&'a str>,
    pub limit: u32,
}

impl RecordQuery<'_> {
    /// One row more than the page, to tell whether another page follows.
    pub(super) fn rows_to_fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

pub struct RecordPage {
    pub records: Vec<RecordRow>,
    pub has_more: bool,
}

/// `LIMIT CAST($5 AS BIGINT)`, not `LIMIT $5`: SQLite's planner reads a bare
/// parameter's value for LIMIT and then re-prepares the statement every time
/// it is bound, which was most of a pull's CPU.
pub(super) const LIST_RECORDS: &str = "SELECT id, collection, owner_id, client_id, body, created_at FROM records \
             WHERE tenant_id = $1 AND collection = $2 AND ($3 IS NULL OR owner_id = $3) \
             AND ($4 IS NULL OR id > $4) ORDER BY id LIMIT CAST($5 AS BIGINT)";

impl Store {
    /// Stores the records, and the idempotency key if any, in one transaction:
    /// when this returns `Stored`, the push is committed (and, with SQLite's
    /// synchronous=FULL or PostgreSQL's defaults, on disk).
    pub async fn push_records(&self, push: NewRecords<'_>) -> Result<PushOutcome> {
        let _span = self.span("push_records");
        let mut outcomes = self.push_batch(std::slice::from_ref(&push)).await?;
        outcomes
            .pop()
            .ok_or_else(|| super::StorageError::Corrupt("an empty batch outcome".to_owned()))
    }

    /// Group commit: several pushes in one transaction, one outcome each, in
    /// order. Either all of them are committed or none is (the caller then
    /// retries them one by one), their `record.created` events with them:
    /// an event is never committed without its records, nor records
    /// without their event.
    ///
    /// First each push's idempotency key is claimed (in order, so a key used
    /// twice in one batch answers the second as a retry of the first); then
    /// the records of every push stored now and their events (each naming
    /// the endpoints that hear it, whose deliveries the worker writes) are
    /// inserted a few rows per statement (see `webhooks::insert_rows`), the
    /// endpoints read once per tenant.
    pub async fn push_batch(&self, pushes: &[NewRecords<'_>]) -> Result<Vec<PushOutcome>> {
        let _span = self.span("push_batch");
        let mut tx = self.db()?.begin().await?;
        let mut outcomes = Vec::with_capacity(pushes.len());
        for push in pushes {
            outcomes.push(claim_idempotency_key(&mut tx, push).await?);
        }
        let stored: Vec<&NewRecords<'_>> = pushes
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == PushOutcome::Stored)
            .map(|(push, _)| push)
            .collect();
        let rows: Vec<RecordInsertRow<'_>> = stored
            .iter()
            .flat_map(|push| {
                push.records
                    .iter()
                    .map(move |(id, body)| RecordInsertRow { push, id, body })
            })
            .collect();
        insert_rows(&mut tx, &RECORD_INSERT, &rows).await?;
        let events: Vec<WebhookEvent<'_>> =
            stored.iter().map(|push| record_created(push)).collect();
        let timed: Vec<(&WebhookEvent<'_>, i64)> = events
            .iter()
            .zip(&stored)
            .map(|(event, push)| (event, push.now))
            .collect();
        record_events(&mut tx, &timed).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// One page of a collection in id order (ids are UUID v7, so this is
    /// creation order), starting after `after_id`.
    pub async fn list_records(&self, query: &RecordQuery<'_>) -> Result<RecordPage> {
        let _span = self.span("list_records");
        let direct = self.read_direct(|direct| direct.records(LIST_RECORDS, query));
        let mut records = match direct {
            Some(rows) => rows,
            None => {
                sqlx::query_as::<_, RecordRow>(LIST_RECORDS)
                    .bind(query.tenant_id)
                    .bind(query.collection)
                    .bind(query.owner_id)
                    .bind(query.after_id)
                    .bind(query.rows_to_fetch())
                    .fetch_all(self.db()?)
                    .await?
            }
        };
        let has_more = records.len() > query.limit as usize;
        records.truncate(query.limit as usize);
        Ok(RecordPage { records, has_more })
    }

    pub async fn find_record(
        &self,
        tenant_id: &str,
        collection: &str,
        owner_id: Option<&str>,
        record_id: &str,
    ) -> Result<Option<RecordRow>> {
        let _span = self.span("find_record");
        Ok(sqlx::query_as::<_, RecordRow>(
            "SELECT id, collection, owner_id, client_id, body, created_at FROM records \
             WHERE tenant_id = $1 AND collection = $2 AND ($3 IS NULL OR owner_id = $3) AND id = $4",
        )
        .bind(tenant_id)
        .bind(collection)
        .bind(owner_id)
        .bind(record_id)
        .fetch_optional(self.db()?)
        .await?)
    }
}

/// Claims the push's idempotency key, if it has one: `Stored` when the push
/// is to be stored now (no key, or a key first used now).
async fn claim_idempotency_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    push: &NewRecords<'_>,
) -> Result<PushOutcome> {
    let Some(idem) = &push.idempotency else {
        return Ok(PushOutcome::Stored);
    };
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, owner_id, idempotency_key, request_digest, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(push.tenant_id)
    .bind(push.owner_id)
    .bind(idem.key)
    .bind(idem.request_digest)
    .bind(idem.response)
    .bind(push.now)
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(PushOutcome::Stored);
    }
    let (digest, response): (String, String) = sqlx::query_as(
        "SELECT request_digest, response FROM idempotency_keys \
         WHERE tenant_id = $1 AND owner_id = $2 AND idempotency_key = $3",
    )
    .bind(push.tenant_id)
    .bind(push.owner_id)
    .bind(idem.key)
    .fetch_one(&mut **tx)
    .await?;
    Ok(if digest == idem.request_digest {
        PushOutcome::Replayed { response }
    } else {
        PushOutcome::KeyReused
    })
}

static RECORD_INSERT: RowInsert = RowInsert {
    table: "records",
    columns: &[
        "id",
        "tenant_id",
        "collection",
        "owner_id",
        "client_id",
        "body",
        "created_at",
    ],
    values: None,
    texts: RowInsert::TEXTS,
};

/// One record of a push, as [`insert_rows`] writes it.
struct RecordInsertRow<'a> {
    push: &'a NewRecords<'a>,
    id: &'a str,
    body: &'a str,
}

impl InsertRow for RecordInsertRow<'_> {
    fn bind<'q>(&'q self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        query
            .bind(self.id)
            .bind(self.push.tenant_id)
            .bind(self.push.collection)
            .bind(self.push.owner_id)
            .bind(self.push.client_id)
            .bind(self.body)
            .bind(self.push.now)
    }
}

/// The `record.created` event of a push stored now.
fn record_created<'a>(push: &'a NewRecords<'a>) -> WebhookEvent<'a> {
    WebhookEvent {
        tenant_id: push.tenant_id,
        subject_owner_id: push.owner_id,
        event_type: "record.created",
        trace: push.traceparent,
        collection: Some(push.collection),
        data: EventData::RecordCreated {
            client_id: push.client_id,
            collection: push.collection,
            owner_id: push.owner_id,
            records: push.records,
        },
    }
}
