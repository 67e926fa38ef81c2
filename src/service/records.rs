//! Records: pushes (the webhook endpoints) and pulls (the report
//! endpoints). Who may read or write whose records is decided offline by
//! [`authz::records`](super::authz::records), from the token alone; a
//! function here takes that decision ([`RecordAccess`]) and does the rest:
//! chooses the ids, fingerprints the request for its idempotency key, and
//! hands the push to the group-commit queue, which stores the records and
//! queues their `record.created` events in one transaction.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::authz::{self, RecordAccess};
use super::{Result, Service, ServiceError};
use crate::domain::{CollectionName, IdempotencyKey, Principal, RecordBatch, now};
use crate::storage::{PushJob, PushOutcome, PushQueue, RecordQuery, RecordRow};
use crate::telemetry::traces;

/// What `principal` may do with records under `scope` (`reports:read` or
/// `webhooks:write`): asked first, before the rate limit and before the
/// request is read.
pub fn access<'a>(principal: &'a Principal, scope: &'static str) -> Result<RecordAccess<'a>> {
    authz::records(principal, scope)
}

/// A stored record. `data` is served as the JSON text stored at push time
/// (validated then), not parsed again. Fields in alphabetical order, as
/// the answers have always had them.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Record {
    /// The key that pushed it (`session` when a session did).
    client_id: String,
    collection: String,
    /// Unix seconds.
    created_at: i64,
    /// The object as pushed.
    #[schema(value_type = Object)]
    data: Box<RawValue>,
    id: String,
    /// The user whose credential pushed it.
    owner_id: String,
}

impl TryFrom<RecordRow> for Record {
    type Error = ServiceError;

    fn try_from(row: RecordRow) -> Result<Self> {
        let data = RawValue::from_string(row.body).map_err(|e| {
            ServiceError::Internal(format!("record {} holds invalid JSON: {e}", row.id))
        })?;
        Ok(Record {
            client_id: row.client_id,
            collection: row.collection,
            created_at: row.created_at,
            data,
            id: row.id,
            owner_id: row.owner_id,
        })
    }
}

/// One page of records, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordPage {
    collection: String,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
    records: Vec<Record>,
}

/// The record id a page's `next_cursor` names, or `None` for a cursor
/// this API did not hand out.
pub fn cursor_id(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let id = String::from_utf8(bytes).ok()?;
    Uuid::parse_str(&id).ok()?;
    Some(id)
}

fn cursor_of(record_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(record_id)
}

/// Up to `limit` records of `collection` after the record `after_id` (a
/// [`cursor_id`]), oldest first: the caller's own, or the whole tenant's
/// for an admin. An empty page for a collection nobody has pushed to.
pub async fn pull(
    service: &Service,
    access: RecordAccess<'_>,
    collection: &CollectionName,
    after_id: Option<&str>,
    limit: u32,
) -> Result<RecordPage> {
    let page = service
        .store
        .list_records(&RecordQuery {
            tenant_id: access.tenant_id,
            collection: collection.as_str(),
            owner_id: access.visible_owner,
            after_id,
            limit,
        })
        .await
        .map_err(ServiceError::Storage)?;
    let next_cursor = if page.has_more {
        page.records.last().map(|r| cursor_of(&r.id))
    } else {
        None
    };
    let records = page
        .records
        .into_iter()
        .map(Record::try_from)
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordPage {
        collection: collection.as_str().to_owned(),
        next_cursor,
        records,
    })
}

/// One record, if the caller may see it: `None` for one that does not
/// exist and for another owner's alike.
pub async fn pull_one(
    service: &Service,
    access: RecordAccess<'_>,
    collection: &CollectionName,
    record_id: Uuid,
) -> Result<Option<Record>> {
    service
        .store
        .find_record(
            access.tenant_id,
            collection.as_str(),
            access.visible_owner,
            &record_id.to_string(),
        )
        .await
        .map_err(ServiceError::Storage)?
        .map(Record::try_from)
        .transpose()
}

/// How a push was answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Stored now; the JSON answer.
    Stored(String),
    /// A retry with the same idempotency key and the same request: nothing
    /// stored, and the answer the first attempt got.
    Replayed(String),
    /// The idempotency key was used before for a different request.
    KeyReused,
}

/// Stores `batch` (parsed from `body`) in `collection` as the caller's,
/// answered only once durably committed. With an idempotency key, the
/// request (collection and body) is fingerprinted so a retry of the same
/// request is told apart from another that reuses the key.
pub async fn push(
    pushes: &PushQueue,
    access: RecordAccess<'_>,
    collection: &CollectionName,
    idempotency_key: Option<&IdempotencyKey>,
    body: &[u8],
    batch: RecordBatch,
) -> Result<Pushed> {
    let created_at = now();
    let records: Vec<(String, String)> = batch
        .into_texts()
        .into_iter()
        .map(|text| (Uuid::now_v7().to_string(), text))
        .collect();
    let ids: Vec<&str> = records.iter().map(|(id, _)| id.as_str()).collect();
    let response = serde_json::json!({
        "collection": collection.as_str(),
        "count": ids.len(),
        "ids": ids,
        "created_at": created_at,
    })
    .to_string();
    let idempotency = idempotency_key.map(|key| {
        (
            key.as_str().to_owned(),
            request_digest(collection, body),
            response.clone(),
        )
    });
    // Group commit: answered only once durably committed.
    let outcome = pushes
        .push(PushJob {
            tenant_id: access.tenant_id.to_owned(),
            owner_id: access.user_id.to_owned(),
            client_id: access.client_id.to_owned(),
            collection: collection.as_str().to_owned(),
            records,
            now: created_at,
            idempotency,
            traceparent: traces::current_traceparent(),
        })
        .await
        .map_err(ServiceError::Storage)?;
    Ok(match outcome {
        PushOutcome::Stored => Pushed::Stored(response),
        PushOutcome::Replayed { response } => Pushed::Replayed(response),
        PushOutcome::KeyReused => Pushed::KeyReused,
    })
}

/// The fingerprint stored beside an idempotency key: SHA-256 of the
/// collection, a zero byte (no collection name holds one) and the body.
fn request_digest(collection: &CollectionName, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(collection.as_str().as_bytes());
    hash.update([0]);
    hash.update(body);
    format!("{:x}", hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_the_record_it_was_made_from() {
        let id = "0190b8a0-0000-7000-8000-000000000001";
        assert_eq!(cursor_id(&cursor_of(id)).as_deref(), Some(id));
    }

    #[test]
    fn a_cursor_this_api_did_not_hand_out_is_refused() {
        assert_eq!(cursor_id("not base64!"), None);
        assert_eq!(cursor_id(&URL_SAFE_NO_PAD.encode("not-a-uuid")), None);
        assert_eq!(cursor_id(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), None);
    }

    #[test]
    fn the_request_digest_tells_the_collection_from_the_body() {
        let a = CollectionName::parse("ab").expect("a name");
        let b = CollectionName::parse("a").expect("a name");
        assert_ne!(request_digest(&a, b"{}"), request_digest(&b, b"b{}"));
        assert_eq!(request_digest(&a, b"{}"), request_digest(&a, b"{}"));
    }
}
