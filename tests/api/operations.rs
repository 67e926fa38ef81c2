//! What operators watch: `GET /metrics` in Prometheus text format.

use crate::helpers::{Backend, spawn_app, spawn_app_with_integration};

async fn metrics_count_tokens_latency_keys_and_pool_use(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    app.token_for(&integration).await;
    app.token_for(&integration).await;
    let wrong = keyport::domain::ClientSecret::generate();
    app.request_token(integration.client_id(), wrong.expose())
        .await;
    app.request_scoped_token(integration.client_id(), integration.secret(), "keys:manage")
        .await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        "keyport_tokens_issued_total 2",
        "keyport_tokens_refused_total{reason=\"invalid_client\"} 1",
        "keyport_tokens_refused_total{reason=\"invalid_scope\"} 1",
        "keyport_active_keys 1",
        "keyport_db_pool_connections{state=\"idle\"}",
        "keyport_db_pool_connections{state=\"in_use\"}",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let token_latency = text
        .lines()
        .find(|l| {
            l.starts_with("keyport_http_request_duration_seconds_count")
                && l.contains("route=\"/oauth/token\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no token latency histogram in:\n{text}"));
    assert!(token_latency.ends_with(" 2"), "{token_latency}");
    assert!(
        !text.contains(integration.secret()) && !text.contains(integration.client_id()),
        "metrics carry no credentials"
    );
}

async fn routes_are_labelled_by_pattern_not_by_raw_path(backend: Backend) {
    let app = spawn_app(backend).await;
    for n in 0..3 {
        app.get(&format!("/api/v1/reports/collection-{n}")).await;
    }
    app.get("/no/such/path").await;

    let text = app.get("/metrics").await.text().await.unwrap();

    assert!(
        text.contains("route=\"/api/v1/reports/{collection}\""),
        "{text}"
    );
    assert!(
        !text.contains("collection-1"),
        "raw paths would explode the label set"
    );
    assert!(text.contains("route=\"unmatched\""), "{text}");
}

crate::on_both_backends!(
    metrics_count_tokens_latency_keys_and_pool_use,
    routes_are_labelled_by_pattern_not_by_raw_path,
);
