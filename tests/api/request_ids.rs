//! One request, found everywhere by its id: the `X-Request-Id` answer
//! header, the JSON error body, the access log line (text or JSON) and the
//! audit rows it wrote. A proxy's id is kept only when the proxy is trusted
//! and the id well formed.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{Backend, ServedBinary, TestApp, spawn_app, spawn_app_with};

/// `keyport serve` on `app`'s database, logging in `format`.
fn serve_beside(app: &TestApp, format: &str, log: Arc<Mutex<String>>) -> ServedBinary {
    let mut command = ServedBinary::command(&app.db.url, 1);
    command.env("KEYPORT_LOG_FORMAT", format);
    ServedBinary::start(command, log)
}

fn request_id_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("every answer has X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The JSON log lines of the access log naming `id` (waits for the line:
/// it is written just after the answer is sent).
async fn access_line(server: &ServedBinary, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = server.log();
        let found = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["target"] == "keyport::access" && line["request_id"] == id);
        if let Some(line) = found {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access line for {id} in:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `POST /oauth/token` on `server`, client_credentials with HTTP Basic.
async fn ask_for_token(server: &ServedBinary, client_id: &str, secret: &str) -> reqwest::Response {
    client_credentials(
        &reqwest::Client::new(),
        server.url("/oauth/token"),
        client_id,
        secret,
    )
    .sent()
    .await
}

async fn one_request_id_is_in_the_answer_the_error_body_the_log_and_the_audit_rows(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.integration("admin", "keys:manage,reports:read").await;
    let log = Arc::new(Mutex::new(String::new()));
    let server = serve_beside(&app, "json", Arc::clone(&log));
    let http = reqwest::Client::new();

    // A wrong secret: 401, and the log says why while the answer does not.
    let wrong_secret = keyport::domain::ClientSecret::generate();
    let refused = ask_for_token(&server, admin.client_id(), wrong_secret.expose()).await;
    assert_eq!(refused.status(), 401);
    let id = request_id_of(&refused);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id} is a UUID");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(!body.to_string().contains("wrong secret"), "{body}");
    let line = access_line(&server, &id).await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["route"], "/oauth/token", "{line}");
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["error"], "invalid_client", "{line}");
    assert_eq!(line["reason"], "wrong secret", "{line}");
    assert_eq!(line["credential_kind"], "client_secret", "{line}");
    assert_eq!(line["credential_id"], admin.client_id(), "{line}");
    assert_eq!(line["client_address"], "127.0.0.1", "{line}");
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    assert!(
        line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );

    // An unknown client is told apart from a wrong secret, in the log only.
    let nobody = keyport::domain::ClientId::generate();
    let unknown = ask_for_token(&server, nobody.as_str(), wrong_secret.expose()).await;
    assert_eq!(unknown.status(), 401);
    let unknown_id = request_id_of(&unknown);
    let line = access_line(&server, &unknown_id).await;
    assert_eq!(line["reason"], "unknown client", "{line}");

    // A change made with a token: its audit row carries the request's id,
    // and the audit API finds the row by it.
    // From this server: a token names its issuer, the server's address.
    let issued: Value = ask_for_token(&server, admin.client_id(), admin.secret())
        .await
        .json()
        .await
        .unwrap();
    let token = issued["access_token"].as_str().expect("a token").to_owned();
    let created = http
        .post(server.url("/api/v1/keys"))
        .bearer_auth(&token)
        .json(&json!({ "name": "traced key" }))
        .sent()
        .await;
    assert_eq!(created.status(), 201);
    let create_id = request_id_of(&created);
    let line = access_line(&server, &create_id).await;
    assert_eq!(line["route"], "/api/v1/keys", "{line}");
    assert_eq!(line["status"], 201, "{line}");
    assert_eq!(line["credential_kind"], "access_token", "{line}");
    assert_eq!(line["company_id"], admin.tenant.id.as_str(), "{line}");
    let audit: Value = http
        .get(server.url(&format!("/api/v1/audit?request_id={create_id}")))
        .bearer_auth(&token)
        .sent_json()
        .await;
    let events = audit["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["action"], "key.create", "{audit}");
    assert_eq!(events[0]["request_id"], create_id.as_str(), "{audit}");

    // A path nobody serves: the error body has the id too, and the log
    // line names no raw path.
    let missing = http
        .get(server.url("/api/v1/keys-typo/kps_secretlooking"))
        .sent()
        .await;
    assert_eq!(missing.status(), 404);
    let missing_id = request_id_of(&missing);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["request_id"], missing_id.as_str(), "{body}");
    let line = access_line(&server, &missing_id).await;
    assert_eq!(line["route"], "unmatched", "{line}");
    assert!(!line.to_string().contains("keys-typo"), "{line}");

    // Every id differs.
    let mut ids = vec![id, unknown_id, create_id, missing_id];
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

/// In text, the access line carries the same fields as `key=value` pairs.
async fn the_text_access_line_has_the_same_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let log = Arc::new(Mutex::new(String::new()));
    let server = serve_beside(&app, "text", Arc::clone(&log));

    let answer = reqwest::get(server.url("/healthz")).await.unwrap();
    let id = request_id_of(&answer);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let log = server.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains(&format!("request_id={id}")))
        {
            break line.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(line.contains("keyport::access] GET /healthz 200"), "{line}");
    assert!(line.contains(" method=GET"), "{line}");
    assert!(line.contains(" route=/healthz"), "{line}");
    assert!(line.contains(" status=200"), "{line}");
    assert!(line.contains(" client_address=127.0.0.1"), "{line}");
    assert!(!line.trim_start().starts_with('{'), "{line}");
}

/// A proxy's `X-Request-Id` is kept when the proxy is trusted and the id
/// well formed; otherwise Keyport makes its own. Tried: a UUID-like id, a
/// 200-character id, one with a space, and one with a newline.
async fn a_request_id_from_a_trusted_proxy_is_kept_and_others_are_replaced(backend: Backend) {
    let behind_proxy =
        spawn_app_with(backend, &[("KEYPORT_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let exposed = spawn_app(backend).await;
    let send = |app: &TestApp, id: &str| {
        app.client
            .get(app.url("/no/such/path"))
            .header("x-request-id", id)
            .send()
    };

    let kept = send(&behind_proxy, "edge-7f3a:42.b_c").await.unwrap();
    assert_eq!(request_id_of(&kept), "edge-7f3a:42.b_c");
    let body: Value = kept.json().await.unwrap();
    assert_eq!(body["request_id"], "edge-7f3a:42.b_c");

    for bad in ["x".repeat(200), "two words".to_owned()] {
        let replaced = send(&behind_proxy, &bad).await.unwrap();
        let id = request_id_of(&replaced);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{bad:?} gave {id}");
    }
    // A newline cannot even be sent as a header value; no id may carry one.
    assert!(reqwest::header::HeaderValue::from_str("a\nb").is_err());

    // Not through a trusted proxy: the caller does not choose its id.
    let untrusted = send(&exposed, "edge-7f3a:42.b_c").await.unwrap();
    let id = request_id_of(&untrusted);
    assert_ne!(id, "edge-7f3a:42.b_c");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
}

crate::on_both_backends!(
    one_request_id_is_in_the_answer_the_error_body_the_log_and_the_audit_rows,
    the_text_access_line_has_the_same_fields,
    a_request_id_from_a_trusted_proxy_is_kept_and_others_are_replaced,
);
