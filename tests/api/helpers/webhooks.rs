//! Webhook endpoints as the tests set them up: one stored behind the API's
//! back (as if from before a guard existed), and the first delivery
//! attempt of a test event.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Integration, TestApp, json_body};

/// Stores an endpoint on `url` for `owner`, listening to `events`, straight
/// into the database, past every check the API makes. Its id.
pub async fn endpoint_stored_directly(
    app: &TestApp,
    owner: &Integration,
    url: &str,
    events: &str,
) -> String {
    let endpoint_id = uuid::Uuid::now_v7().to_string();
    app.store
        .insert_endpoint(keyport::storage::NewEndpoint {
            id: &endpoint_id,
            tenant_id: &owner.tenant.id,
            owner_id: &owner.user.id,
            url,
            description: None,
            events,
            collections: None,
            now: chrono::Utc::now().timestamp(),
        })
        .await
        .expect("insert");
    endpoint_id
}

/// The first test delivery attempt to `url`, stored directly for `owner`.
pub async fn first_attempt_at(
    app: &TestApp,
    owner: &Integration,
    session: &str,
    url: &str,
) -> Value {
    let endpoint_id = endpoint_stored_directly(app, owner, url, "key.created").await;
    first_test_attempt(app, session, &endpoint_id).await
}

/// Asserts that a delivery attempt was never sent (no status code), and
/// that its error says `why`.
pub fn assert_not_sent(attempt: &Value, why: &str) {
    assert_eq!(attempt["status_code"], Value::Null, "{attempt}");
    assert!(
        attempt["error"].as_str().is_some_and(|e| e.contains(why)),
        "{attempt}"
    );
}

/// Sends the endpoint a test event (202) and waits, up to 15 s, for the
/// first delivery attempt: what it records.
pub async fn first_test_attempt(app: &TestApp, session: &str, endpoint_id: &str) -> Value {
    let queued = app
        .post(
            &format!("/api/v1/webhook-endpoints/{endpoint_id}/test"),
            session,
        )
        .await;
    assert_eq!(queued.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(first) = attempts(app, session, endpoint_id).await.first() {
            return first.clone();
        }
        assert!(Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The attempts listed for `endpoint_id`, newest first.
pub async fn attempts(app: &TestApp, session: &str, endpoint_id: &str) -> Vec<Value> {
    let listed = json_body(
        app.get_as(
            &format!("/api/v1/webhook-endpoints/{endpoint_id}/attempts"),
            session,
        )
        .await,
    )
    .await;
    listed["attempts"].as_array().expect("attempts").clone()
}
