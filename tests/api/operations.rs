//! What operators watch: `GET /metrics` in Prometheus text format, on the
//! public port or on a listener of its own, without a database query per
//! scrape.

use std::time::Duration;

use sqlx::Connection;

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TestApp, header, spawn_app, spawn_app_with};

/// `/metrics` until `wanted` is in it (the gauges that need the database
/// are refreshed in the background), or a panic with the last text.
async fn metrics_once_they_show(app: &TestApp, wanted: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        if text.contains(wanted) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{wanted}` never appeared in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metrics_count_tokens_latency_keys_and_pool_use(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_METRICS_REFRESH_SECONDS", "1")]).await;
    let integration = app.integration("member", "reports:read").await;
    app.token_for(&integration).await;
    app.token_for(&integration).await;
    let wrong = keyport::domain::ClientSecret::generate();
    app.request_token(integration.client_id(), wrong.expose())
        .await;
    app.request_scoped_token(integration.client_id(), integration.secret(), "keys:manage")
        .await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/plain"));
    let text = metrics_once_they_show(&app, "keyport_active_keys 1").await;
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

/// The build and the process are described, as operators of any service
/// expect: which version and commit runs, its CPU, memory, open files and
/// start time.
async fn metrics_describe_the_build_and_the_process(backend: Backend) {
    let app = spawn_app(backend).await;

    let text = app.get("/metrics").await.text().await.unwrap();

    let build = text
        .lines()
        .find(|l| l.starts_with("keyport_build_info{"))
        .unwrap_or_else(|| panic!("no build info in:\n{text}"));
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("commit=\""), "{build}");
    assert!(build.ends_with(" 1"), "{build}");
    for series in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "no `{series}` in:\n{text}"
        );
    }
}

/// A scrape reads no database: with the api_keys table locked by another
/// session (every query on it waits), `/metrics` still answers, and with
/// the gauge the background task read before the lock.
async fn a_scrape_does_not_wait_for_the_database() {
    let app = spawn_app_with(
        Backend::Postgres,
        &[("KEYPORT_METRICS_REFRESH_SECONDS", "1")],
    )
    .await;
    app.integration("member", "reports:read").await;
    metrics_once_they_show(&app, "keyport_active_keys 1").await;
    let mut locker = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();

    // Several scrapes, across refresh periods: none waits on the lock.
    for _ in 0..5 {
        let response = app
            .client
            .get(app.url("/metrics"))
            .timeout(Duration::from_secs(10))
            .sent()
            .await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("keyport_active_keys 1"), "{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
}

/// `metrics_bind`: `/metrics` on a listener of its own, and no longer on
/// the public port (404 there, in the API's error format).
async fn metrics_can_be_kept_off_the_public_port(backend: Backend) {
    let db = std::sync::Arc::new(crate::helpers::TestDatabase::create(backend).await);
    let settings =
        crate::helpers::settings_for(&db.url, &[("KEYPORT_METRICS_BIND", "127.0.0.1:0")]);
    let store = keyport::storage::Store::connect_and_migrate(&settings.database)
        .await
        .unwrap();
    let app = keyport::startup::Application::build_with_store(settings, store)
        .await
        .unwrap();
    let public = app.port();
    let private = app.metrics_port().expect("a metrics listener");
    assert_ne!(public, private);
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();

    let on_public = http
        .get(format!("http://127.0.0.1:{public}/metrics"))
        .sent()
        .await;
    assert_eq!(on_public.status(), 404);
    let body: serde_json::Value = on_public.json().await.unwrap();
    assert_eq!(body["error"], "not_found", "{body}");

    let on_private = http
        .get(format!("http://127.0.0.1:{private}/metrics"))
        .sent()
        .await;
    assert_eq!(on_private.status(), 200);
    let text = on_private.text().await.unwrap();
    assert!(text.contains("keyport_build_info{"), "{text}");
    // The metrics listener serves nothing else.
    let other = http
        .get(format!("http://127.0.0.1:{private}/oauth/token"))
        .sent()
        .await;
    assert_eq!(other.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_scrape_does_not_wait_for_the_database() {
    a_scrape_does_not_wait_for_the_database().await
}

crate::on_both_backends!(
    metrics_count_tokens_latency_keys_and_pool_use,
    routes_are_labelled_by_pattern_not_by_raw_path,
    metrics_describe_the_build_and_the_process,
    metrics_can_be_kept_off_the_public_port,
);
