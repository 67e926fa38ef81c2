//! The outbox of pushes: a group commit of pushes writes each stored push's
//! `record.created` event, naming the endpoints that hear it, in the same
//! transaction as its records, several rows per statement; the worker's
//! claim then writes one delivery per endpoint named, once; a batch that
//! fails writes nothing; an endpoint added is heard by the very next push.

use serde_json::{Value, json};
use sqlx::Row as _;

use crate::helpers::{
    Backend, Integration, TestApp, endpoint_stored_directly, json_body, spawn_app_with,
};
use keyport::storage::{Idempotency, NewRecords, PushOutcome};

crate::on_both_backends!(
    a_group_commit_writes_each_pushs_event_and_deliveries_with_its_records,
    a_batch_that_fails_leaves_no_event_no_delivery_and_no_record,
    an_endpoint_added_is_heard_by_the_next_push,
    an_event_is_fanned_out_once_and_not_to_an_endpoint_deleted_since,
);

const OWNER_PERMISSIONS: &str = "reports:read webhooks:write webhooks:manage";

/// An app whose deliveries are never sent (the rows stay as written).
async fn app(backend: Backend) -> (TestApp, Integration) {
    let app = spawn_app_with(backend, &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let owner = app.integration("admin", OWNER_PERMISSIONS).await;
    (app, owner)
}

/// The rows of `sql`, each as its text columns.
async fn rows(app: &TestApp, sql: &'static str) -> Vec<Vec<Option<String>>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.db.url).await.expect("connect");
    let rows = sqlx::query(sql).fetch_all(&pool).await.expect(sql);
    pool.close().await;
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).expect("text"))
                .collect()
        })
        .collect()
}

async fn count(app: &TestApp, sql: &'static str) -> usize {
    rows(app, sql).await.len()
}

/// Pushes as the group-commit writer receives them: push `n` stores one
/// to three records (`n % 3 + 1`) in `orders` (even `n`) or `returns`
/// (odd), with a trace of its own.
struct Pushes {
    records: Vec<Vec<(String, String)>>,
    traces: Vec<String>,
}

impl Pushes {
    fn new(count: usize) -> Self {
        let records = (0..count)
            .map(|n| {
                (0..n % 3 + 1)
                    .map(|i| {
                        (
                            uuid::Uuid::now_v7().to_string(),
                            json!({"push": n, "record": i}).to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        let traces = (0..count)
            .map(|n| format!("00-{:032x}-{:016x}-01", n + 1, n + 1))
            .collect();
        Pushes { records, traces }
    }

    fn collection(n: usize) -> &'static str {
        if n.is_multiple_of(2) {
            "orders"
        } else {
            "returns"
        }
    }

    fn batch<'a>(&'a self, owner: &'a Integration) -> Vec<NewRecords<'a>> {
        (0..self.records.len())
            .map(|n| NewRecords {
                tenant_id: &owner.tenant.id,
                owner_id: &owner.user.id,
                client_id: owner.client_id(),
                collection: Self::collection(n),
                records: &self.records[n],
                now: 1_800_000_000 + n as i64,
                idempotency: None,
                traceparent: Some(&self.traces[n]),
            })
            .collect()
    }
}

/// Writes the deliveries of the events queued so far (the worker's claim
/// does it first; this one, at time 0, leases nothing).
async fn fan_out(app: &TestApp) {
    let leased = app
        .store
        .claim_due_deliveries(0, 0, 1000)
        .await
        .expect("fan out");
    assert!(leased.is_empty());
}

/// The endpoints an event names, sorted.
fn named(pending_endpoints: &Option<String>) -> Vec<&str> {
    let mut named: Vec<&str> = pending_endpoints
        .as_deref()
        .map(|ids| ids.split(' ').collect())
        .unwrap_or_default();
    named.sort();
    named
}

/// 70 pushes in one group commit (more than the largest multi-row
/// statement, so every statement size is used), with two endpoints: one
/// hears `orders` only, the other every collection. Each stored push has
/// exactly one event, naming its records, carrying its trace and its time,
/// and the endpoints that hear it; fanned out, one delivery per endpoint,
/// dated from the push. A push that reuses an idempotency key within the
/// batch is answered as a retry and writes nothing.
async fn a_group_commit_writes_each_pushs_event_and_deliveries_with_its_records(backend: Backend) {
    let (app, owner) = app(backend).await;
    let every =
        endpoint_stored_directly(&app, &owner, "https://every.example", "record.created").await;
    let orders_only = uuid::Uuid::now_v7().to_string();
    app.store
        .insert_endpoint(keyport::storage::NewEndpoint {
            id: &orders_only,
            tenant_id: &owner.tenant.id,
            owner_id: &owner.user.id,
            url: "https://orders.example",
            description: None,
            events: "record.created",
            collections: Some("orders"),
            now: 1,
        })
        .await
        .expect("insert");
    let pushes = Pushes::new(70);
    let mut batch = pushes.batch(&owner);
    batch[3].idempotency = Some(Idempotency {
        key: "once",
        request_digest: "d",
        response: "{\"first\":true}",
    });
    batch[5].idempotency = Some(Idempotency {
        key: "once",
        request_digest: "d",
        response: "{\"second\":true}",
    });
    let outcomes = app.store.push_batch(&batch).await.expect("one commit");
    assert_eq!(
        outcomes[5],
        PushOutcome::Replayed {
            response: "{\"first\":true}".to_owned()
        }
    );
    let stored: Vec<usize> = (0..70).filter(|n| *n != 5).collect();
    assert!(
        outcomes
            .iter()
            .enumerate()
            .all(|(n, o)| n == 5 || *o == PushOutcome::Stored)
    );

    let records = count(&app, "SELECT id FROM records").await;
    let expected: usize = stored.iter().map(|n| pushes.records[*n].len()).sum();
    assert_eq!(records, expected);
    let events = rows(
        &app,
        "SELECT id, payload, traceparent, subject_owner_id, CAST(created_at AS TEXT), \
         pending_endpoints FROM webhook_events WHERE event_type = 'record.created'",
    )
    .await;
    assert_eq!(events.len(), stored.len(), "one event per stored push");
    assert_eq!(
        count(&app, "SELECT id FROM webhook_deliveries").await,
        0,
        "the worker writes the deliveries"
    );
    fan_out(&app).await;
    let deliveries = rows(
        &app,
        "SELECT event_id, endpoint_id, state, CAST(created_at AS TEXT), \
         CAST(next_attempt_at AS TEXT) FROM webhook_deliveries",
    )
    .await;
    assert_eq!(
        count(
            &app,
            "SELECT id FROM webhook_events WHERE pending_endpoints IS NOT NULL"
        )
        .await,
        0,
        "every event fanned out"
    );
    for n in &stored {
        let trace = &pushes.traces[*n];
        let event = events
            .iter()
            .find(|e| e[2].as_deref() == Some(trace.as_str()))
            .unwrap_or_else(|| panic!("push {n} has an event with its trace"));
        let payload: Value = serde_json::from_str(event[1].as_deref().unwrap()).unwrap();
        let ids: Vec<&str> = pushes.records[*n]
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(payload["data"]["record_ids"], json!(ids), "push {n}");
        assert_eq!(payload["data"]["collection"], Pushes::collection(*n));
        assert_eq!(event[3].as_deref(), Some(owner.user.id.as_str()));
        assert_eq!(
            event[4].as_deref(),
            Some((1_800_000_000 + *n as i64).to_string().as_str()),
            "push {n}'s own time"
        );
        let mut heard: Vec<&str> = deliveries
            .iter()
            .filter(|d| d[0] == event[0])
            .map(|d| d[1].as_deref().unwrap())
            .collect();
        heard.sort();
        let mut expected = vec![every.as_str()];
        if Pushes::collection(*n) == "orders" {
            expected.push(orders_only.as_str());
        }
        expected.sort();
        assert_eq!(named(&event[5]), expected, "push {n}'s listeners");
        assert_eq!(heard, expected, "push {n}'s deliveries");
        assert!(
            deliveries
                .iter()
                .filter(|d| d[0] == event[0])
                .all(|d| d[2].as_deref() == Some("pending")
                    && d[3] == event[4]
                    && d[4] == event[4])
        );
    }
    assert_eq!(
        deliveries.len(),
        stored.len() + stored.iter().filter(|n| n.is_multiple_of(2)).count()
    );
}

/// A batch one of whose pushes cannot be stored (a record id taken by
/// another push of the batch) commits nothing: no record, no event, no
/// delivery of any of its pushes. The push that could be stored, stored
/// alone afterwards (as the writer retries), gets its event.
async fn a_batch_that_fails_leaves_no_event_no_delivery_and_no_record(backend: Backend) {
    let (app, owner) = app(backend).await;
    endpoint_stored_directly(&app, &owner, "https://every.example", "record.created").await;
    let mut pushes = Pushes::new(6);
    let taken = pushes.records[1][0].0.clone();
    pushes.records[4][0].0 = taken;
    let batch = pushes.batch(&owner);
    assert!(app.store.push_batch(&batch).await.is_err());
    assert_eq!(count(&app, "SELECT id FROM records").await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT id FROM webhook_events WHERE event_type = 'record.created'"
        )
        .await,
        0,
        "no orphan event"
    );
    assert_eq!(count(&app, "SELECT id FROM webhook_deliveries").await, 0);

    let alone = app
        .store
        .push_records(pushes.batch(&owner).swap_remove(1))
        .await
        .expect("stored alone");
    assert_eq!(alone, PushOutcome::Stored);
    assert_eq!(count(&app, "SELECT id FROM records").await, 2);
    assert_eq!(
        count(
            &app,
            "SELECT id FROM webhook_events WHERE event_type = 'record.created'"
        )
        .await,
        1
    );
    fan_out(&app).await;
    assert_eq!(count(&app, "SELECT id FROM webhook_deliveries").await, 1);
}

/// Through the API: a push before any endpoint queues nothing; an endpoint
/// registered, the very next push queues its event for it; disabled, the
/// next queues nothing again.
async fn an_endpoint_added_is_heard_by_the_next_push(backend: Backend) {
    let (app, owner) = app(backend).await;
    let token = app.token_for(&owner).await;
    let pushed = app.push(&token, "orders", &json!({"order": 1}), None).await;
    assert_eq!(pushed.status(), 201);
    let record_events = "SELECT id FROM webhook_events WHERE event_type = 'record.created'";
    assert_eq!(count(&app, record_events).await, 0);

    let endpoint =
        endpoint_stored_directly(&app, &owner, "https://every.example", "record.created").await;
    let pushed = app.push(&token, "orders", &json!({"order": 2}), None).await;
    assert_eq!(pushed.status(), 201);
    assert_eq!(count(&app, record_events).await, 1, "heard at once");
    let listeners = rows(&app, "SELECT pending_endpoints FROM webhook_events").await;
    assert_eq!(listeners, vec![vec![Some(endpoint.clone())]]);

    let disabled = app
        .store
        .update_endpoint(
            &endpoint,
            keyport::storage::EndpointSettings {
                url: "https://every.example",
                description: None,
                events: "record.created",
                collections: None,
                status: "disabled",
                disabled_reason: Some("by hand"),
            },
            2,
        )
        .await
        .expect("update");
    assert!(disabled);
    let pushed = app.push(&token, "orders", &json!({"order": 3}), None).await;
    assert_eq!(json_body(pushed).await["count"], 1);
    assert_eq!(
        count(&app, record_events).await,
        1,
        "a disabled endpoint hears nothing"
    );
}

/// Three events queued for two endpoints, one endpoint deleted before the
/// worker comes: the fan-out writes the other's three deliveries and none
/// for the deleted one, and a second claim writes nothing more. The queue
/// counts the deliveries still to write as pending all along.
async fn an_event_is_fanned_out_once_and_not_to_an_endpoint_deleted_since(backend: Backend) {
    let (app, owner) = app(backend).await;
    let kept =
        endpoint_stored_directly(&app, &owner, "https://kept.example", "record.created").await;
    let deleted =
        endpoint_stored_directly(&app, &owner, "https://gone.example", "record.created").await;
    let pushes = Pushes::new(3);
    let outcomes = app
        .store
        .push_batch(&pushes.batch(&owner))
        .await
        .expect("one commit");
    assert!(outcomes.iter().all(|o| *o == PushOutcome::Stored));
    let stats = app.store.webhook_queue_stats().await.expect("stats");
    assert_eq!(
        stats.pending, 6,
        "two deliveries per event, not written yet"
    );
    assert_eq!(stats.oldest_created_at, Some(1_800_000_000));

    assert!(app.store.delete_endpoint(&deleted).await.expect("delete"));
    assert_eq!(app.store.webhook_queue_stats().await.unwrap().pending, 6);
    fan_out(&app).await;
    fan_out(&app).await;
    let deliveries = rows(&app, "SELECT endpoint_id FROM webhook_deliveries").await;
    assert_eq!(deliveries, vec![vec![Some(kept.clone())]; 3]);
    let stats = app.store.webhook_queue_stats().await.expect("stats");
    assert_eq!(stats.pending, 3);
    assert_eq!(stats.oldest_created_at, Some(1_800_000_000));
}
