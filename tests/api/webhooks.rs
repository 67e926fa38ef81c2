//! POST /api/v1/webhooks/{collection}: storing records, idempotent retries,
//! durability and the body limit.

use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, json_body, spawn_app_with, spawn_app_with_integration,
    spawn_app_with_token, spawn_sibling,
};

async fn a_push_stores_one_record_or_an_array_of_them(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;

    let one = app.push(&token, "orders", &json!({"order": 1}), None).await;
    assert_eq!(one.status(), 201);
    assert_eq!(json_body(one).await["count"], 1);
    let many = app
        .push(&token, "orders", &json!([{"order": 2}, {"order": 3}]), None)
        .await;
    assert_eq!(many.status(), 201);
    let many = json_body(many).await;
    assert_eq!(many["ids"].as_array().unwrap().len(), 2);

    let pulled = json_body(app.pull(&token, "orders", "").await).await;
    let orders: Vec<i64> = pulled["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"]["order"].as_i64().unwrap())
        .collect();
    assert_eq!(orders, vec![1, 2, 3]);
    assert_eq!(pulled["records"][0]["client_id"], integration.client_id());
}

async fn a_retried_push_with_the_same_idempotency_key_is_stored_once(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    let body = json!([{"invoice": "A-1"}, {"invoice": "A-2"}]);

    let first = app
        .push(&token, "invoices", &body, Some("sync-2026-11-22"))
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_body(first).await;
    let retry = app
        .push(&token, "invoices", &body, Some("sync-2026-11-22"))
        .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry = json_body(retry).await;

    assert_eq!(
        first["ids"], retry["ids"],
        "the retry gets the original answer"
    );
    assert_eq!(app.pull_all_ids(&token, "invoices", 50).await.len(), 2);
}

async fn concurrent_retries_with_one_idempotency_key_store_once(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    let body = json!({"payment": 99});

    let attempts = (0..8).map(|_| app.push(&token, "payments", &body, Some("pay-99")));
    let responses = futures_util::future::join_all(attempts).await;

    for response in responses {
        assert_eq!(response.status(), 201);
    }
    assert_eq!(app.pull_all_ids(&token, "payments", 50).await.len(), 1);
}

async fn an_idempotency_key_reused_for_another_request_is_refused(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    app.push(&token, "orders", &json!({"n": 1}), Some("k-1"))
        .await;

    let different = app
        .push(&token, "orders", &json!({"n": 2}), Some("k-1"))
        .await;

    assert_eq!(different.status(), 422);
    assert_eq!(json_body(different).await["error"], "invalid_record");
    assert_eq!(app.pull_all_ids(&token, "orders", 50).await.len(), 1);
}

async fn idempotency_keys_belong_to_their_owner(backend: Backend) {
    let (app, a) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;
    let b = app.integration("member", READ_AND_PUSH).await;
    let a_token = app.token_for(&a).await;
    let b_token = app.token_for(&b).await;

    app.push(&a_token, "orders", &json!({"n": 1}), Some("shared"))
        .await;
    let other = app
        .push(&b_token, "orders", &json!({"n": 1}), Some("shared"))
        .await;

    assert_eq!(other.status(), 201);
    assert!(other.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.pull_all_ids(&b_token, "orders", 50).await.len(), 1);
}

async fn an_answered_push_survives_a_restart(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    let pushed = json_body(
        app.push(&token, "ledger", &json!({"amount": 10}), Some("l-1"))
            .await,
    )
    .await;
    app.store.close().await;

    let restarted = spawn_sibling(&app, &[]).await;

    let ids = restarted.pull_all_ids(&token, "ledger", 50).await;
    assert_eq!(ids, vec![pushed["ids"][0].as_str().unwrap().to_owned()]);
    let retry = restarted
        .push(&token, "ledger", &json!({"amount": 10}), Some("l-1"))
        .await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
}

async fn bodies_over_the_limit_get_a_clear_413(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_MAX_BODY_BYTES", "2048")]).await;
    let integration = app.integration("member", READ_AND_PUSH).await;
    let token = app.token_for(&integration).await;

    let response = app
        .push(&token, "orders", &json!({"blob": "x".repeat(4096)}), None)
        .await;

    assert_eq!(response.status(), 413);
    let body = json_body(response).await;
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("2048"));
    let small = app
        .push(&token, "orders", &json!({"blob": "x"}), None)
        .await;
    assert_eq!(small.status(), 201);
}

async fn bad_push_bodies_get_clear_4xx_answers(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_MAX_RECORDS_PER_PUSH", "3")]).await;
    let integration = app.integration("member", READ_AND_PUSH).await;
    let token = app.token_for(&integration).await;
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "no content type",
            None,
            "{}".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            "a=1".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "invalid JSON",
            Some("application/json"),
            "{\"a\":".into(),
            400,
            "invalid_json",
        ),
        (
            "empty body",
            Some("application/json"),
            "".into(),
            400,
            "invalid_json",
        ),
        (
            "a number",
            Some("application/json"),
            "42".into(),
            422,
            "invalid_record",
        ),
        (
            "a string",
            Some("application/json"),
            "\"x\"".into(),
            422,
            "invalid_record",
        ),
        (
            "empty array",
            Some("application/json"),
            "[]".into(),
            422,
            "invalid_record",
        ),
        (
            "array with a non-object",
            Some("application/json"),
            "[{},1]".into(),
            422,
            "invalid_record",
        ),
        (
            "too many records",
            Some("application/json"),
            "[{},{},{},{}]".into(),
            422,
            "invalid_record",
        ),
        (
            "deeply nested",
            Some("application/json"),
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            400,
            "invalid_json",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let mut request = app
            .client
            .post(app.url("/api/v1/webhooks/orders"))
            .bearer_auth(&token)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        let response = request.sent().await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(json_body(response).await["error"], code, "{what}");
    }
    for bad_key in ["", "has space", &"k".repeat(300)] {
        let response = app.push(&token, "orders", &json!({}), Some(bad_key)).await;
        assert_eq!(response.status(), 400, "idempotency key {bad_key:?}");
        assert_eq!(
            json_body(response).await["error"],
            "invalid_idempotency_key"
        );
    }
    let response = app
        .push(&token, "orders;DROP TABLE records", &json!({}), None)
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(json_body(response).await["error"], "invalid_collection");
    assert!(
        app.pull_all_ids(&token, "orders", 50).await.is_empty(),
        "nothing was stored"
    );
}

async fn records_keep_their_json_exactly(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    let record: Value = json!({
        "text": "naïve 'quotes' \"double\" ; DROP TABLE records; --",
        "big": 9007199254740993u64,
        "float": 1.5,
        "nested": {"list": [1, null, true]},
        "emoji": "🔑",
    });

    app.push(&token, "odd", &record, None).await;

    let pulled = json_body(app.pull(&token, "odd", "").await).await;
    assert_eq!(pulled["records"][0]["data"], record);
}

crate::on_both_backends!(
    a_push_stores_one_record_or_an_array_of_them,
    a_retried_push_with_the_same_idempotency_key_is_stored_once,
    concurrent_retries_with_one_idempotency_key_store_once,
    an_idempotency_key_reused_for_another_request_is_refused,
    idempotency_keys_belong_to_their_owner,
    an_answered_push_survives_a_restart,
    bodies_over_the_limit_get_a_clear_413,
    bad_push_bodies_get_clear_4xx_answers,
    records_keep_their_json_exactly,
);
