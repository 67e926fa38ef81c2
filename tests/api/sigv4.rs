//! AWS Signature Version 4: keys created with SigV4 allowed sign requests
//! with curl's `--aws-sigv4`, botocore's `SigV4Auth`, the `aws4` npm
//! package (and a signer written here, independent of the server's, for
//! the bad-input table); every refusal is a 4xx with its code. A signed
//! write is accepted once, at any instance; its Idempotency-Key is signed.

use std::path::PathBuf;
use std::time::Duration;

use hmac::{Hmac, Mac};
use keyport::domain::Principal;
use keyport::domain::sigv4::{Presentation, RequestParts};
use keyport::service::keys as admin;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, TestApp, every_stored_row, json_body, spawn_app, spawn_app_with, spawn_sibling,
};
use crate::python_client::python_interpreter;

crate::on_both_backends!(
    a_key_created_with_sigv4_keeps_its_secret_only_sealed_and_says_so,
    a_signed_request_acts_as_the_keys_owner_with_its_scopes,
    curl_signs_get_and_post_requests_that_keyport_accepts,
    botocore_signs_get_post_and_presigned_requests_that_keyport_accepts,
    the_aws4_package_signs_get_and_post_requests_that_keyport_accepts,
    bad_signatures_are_refused_with_their_code_and_never_a_5xx,
    failed_signatures_are_throttled_like_failed_client_authentication,
    revoked_disabled_and_expired_keys_are_refused_at_once_and_lose_their_cached_signing_key,
    presigned_urls_work_for_get_until_they_expire,
    the_region_and_service_are_configurable_and_published,
    a_signed_post_sent_again_byte_for_byte_is_refused_at_every_instance_and_stored_once,
    a_signed_request_with_an_unsigned_idempotency_key_is_refused,
    a_post_signed_again_with_the_same_signed_idempotency_key_stores_once,
    a_signed_get_sent_again_within_its_window_is_still_served,
    the_replay_cache_admits_a_signature_once_and_sweeps_only_rows_past_their_window,
);

const REGION: &str = "us-east-1";
const SERVICE: &str = "keyport";

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex_sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn amz_date(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .expect("time")
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// A SigV4 request as the tests build it, written from AWS's description
/// and independent of Keyport's own code: every part can be broken.
#[derive(Clone)]
struct Signing {
    method: &'static str,
    /// Path and query exactly as sent (the query already canonical).
    path: String,
    query: String,
    body: Vec<u8>,
    /// Extra headers sent (and signed unless left out of `signed`).
    headers: Vec<(String, String)>,
    access_key: String,
    secret: String,
    date: String,
    scope_date: Option<String>,
    region: String,
    service: String,
    /// Names to sign; `None`: host, x-amz-date and every extra header.
    signed: Option<Vec<String>>,
    send_date: bool,
}

impl Signing {
    fn new(access_key: &str, secret: &str, method: &'static str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Signing {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            body: Vec::new(),
            headers: Vec::new(),
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            date: amz_date(chrono::Utc::now().timestamp()),
            scope_date: None,
            region: REGION.to_owned(),
            service: SERVICE.to_owned(),
            signed: None,
            send_date: true,
        }
    }

    fn body(mut self, body: &[u8], content_type: &str) -> Self {
        self.body = body.to_vec();
        self.headers
            .push(("content-type".to_owned(), content_type.to_owned()));
        self
    }

    fn signature(&self, host: &str) -> (String, String) {
        let mut all: Vec<(String, String)> = vec![
            ("host".to_owned(), host.to_owned()),
            ("x-amz-date".to_owned(), self.date.clone()),
        ];
        all.extend(self.headers.iter().cloned());
        all.sort();
        let signed: Vec<String> = self
            .signed
            .clone()
            .unwrap_or_else(|| all.iter().map(|(n, _)| n.clone()).collect());
        let canonical_headers: String = signed
            .iter()
            .map(|name| {
                let value = all
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.trim().to_owned())
                    .unwrap_or_default();
                format!("{name}:{value}\n")
            })
            .collect();
        let signed_headers = signed.join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
            self.method,
            self.path,
            self.query,
            hex_sha256(&self.body)
        );
        let scope = format!(
            "{}/{}/{}/aws4_request",
            self.scope_date.as_deref().unwrap_or(&self.date[..8]),
            self.region,
            self.service
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            self.date,
            hex_sha256(canonical.as_bytes())
        );
        let mut key = format!("AWS4{}", self.secret).into_bytes();
        for part in [
            self.scope_date.as_deref().unwrap_or(&self.date[..8]),
            &self.region,
            &self.service,
            "aws4_request",
        ] {
            key = hmac(&key, part);
        }
        let signature = hex::encode(hmac(&key, &string_to_sign));
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.access_key
            ),
            signature,
        )
    }

    /// The signed request, ready to send (and to tamper with).
    fn request(&self, app: &TestApp) -> reqwest::RequestBuilder {
        let host = format!("127.0.0.1:{}", app.port);
        let (authorization, _) = self.signature(&host);
        let url = if self.query.is_empty() {
            app.url(&self.path)
        } else {
            app.url(&format!("{}?{}", self.path, self.query))
        };
        let mut request = app
            .client
            .request(self.method.parse().expect("method"), url)
            .header("authorization", authorization);
        if self.send_date {
            request = request.header("x-amz-date", &self.date);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if !self.body.is_empty() {
            request = request.body(self.body.clone());
        }
        request
    }

    async fn send(&self, app: &TestApp) -> (u16, Value) {
        let response = self.request(app).sent().await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

mod hex {
    pub fn encode(bytes: Vec<u8>) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The status of a SigV4-signed `GET /api/v1/whoami` with this key.
pub async fn signed_whoami(app: &TestApp, access_key: &str, secret: &str) -> u16 {
    Signing::new(access_key, secret, "GET", "/api/v1/whoami")
        .send(app)
        .await
        .0
}

/// The headers that sign a `GET` of `path` (no query) on `127.0.0.1:port`
/// now, for a server the tests did not spawn in-process.
pub fn signed_get_headers(
    access_key: &str,
    secret: &str,
    port: u16,
    path: &str,
) -> Vec<(&'static str, String)> {
    let signing = Signing::new(access_key, secret, "GET", path);
    let (authorization, _) = signing.signature(&format!("127.0.0.1:{port}"));
    vec![
        ("authorization", authorization),
        ("x-amz-date", signing.date),
    ]
}

/// A tenant with an admin who holds a SigV4 key (and a token-only key).
struct Fixture {
    app: TestApp,
    session: String,
    access_key: String,
    secret: String,
    key_id: String,
    user_id: String,
}

async fn fixture_with(
    backend: Backend,
    overrides: &[(&str, &str)],
    scopes: Option<&str>,
) -> Fixture {
    let app = spawn_app_with(backend, overrides).await;
    let (admin, session) = app
        .signed_in_integration("admin", "reports:read,webhooks:write,keys:manage")
        .await;
    let mut body = json!({ "name": "SQL Account style", "sigv4": true });
    if let Some(scopes) = scopes {
        body["scopes"] = json!(scopes.split(' ').collect::<Vec<_>>());
    }
    let created = app.create_key_over_http(&session, body).await;
    Fixture {
        access_key: created["client_id"].as_str().expect("client_id").to_owned(),
        secret: created["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
        key_id: created["id"].as_str().expect("id").to_owned(),
        user_id: admin.user.id.clone(),
        session,
        app,
    }
}

async fn fixture(backend: Backend) -> Fixture {
    fixture_with(backend, &[], None).await
}

impl Fixture {
    fn sign(&self, method: &'static str, path: &str) -> Signing {
        Signing::new(&self.access_key, &self.secret, method, path)
    }
}

async fn a_key_created_with_sigv4_keeps_its_secret_only_sealed_and_says_so(backend: Backend) {
    let f = fixture(backend).await;
    let app = &f.app;
    let listed = app.get_json("/api/v1/keys", &f.session).await;
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{listed}");
    for key in keys {
        let expected = key["client_id"] == f.access_key.as_str();
        assert_eq!(key["sigv4"], expected, "{key}");
    }
    let rows = every_stored_row(&app.db).await;
    let key_rows: Vec<&String> = rows
        .iter()
        .filter(|(table, _)| table == "api_keys")
        .map(|(_, row)| row)
        .collect();
    for row in &key_rows {
        assert!(!row.contains(&f.secret), "the secret is in clear: {row}");
        assert!(!row.contains(f.secret.trim_start_matches("kps_")), "{row}");
    }
    let sealed: Vec<(String, Option<String>)> =
        sqlx_rows(app, "SELECT client_id, sigv4_secret_sealed FROM api_keys").await;
    for (client_id, sealed) in &sealed {
        if *client_id == f.access_key {
            assert!(
                sealed
                    .as_deref()
                    .is_some_and(|s| s.starts_with("kpseal:v1:")),
                "{sealed:?}"
            );
        } else {
            assert_eq!(sealed, &None, "a key without SigV4 keeps only its digest");
        }
    }
    // Rolling copies the setting; the CLI creates SigV4 keys too.
    let rolled = app
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/keys/{}/roll", f.key_id),
            &f.session,
        )
        .json(&json!({ "grace_seconds": 60 }))
        .sent()
        .await;
    assert_eq!(rolled.status(), 201);
    let rolled = json_body(rolled).await;
    assert_eq!(rolled["sigv4"], true, "{rolled}");
    let new_key = Signing::new(
        rolled["client_id"].as_str().unwrap(),
        rolled["client_secret"].as_str().unwrap(),
        "GET",
        "/api/v1/whoami",
    );
    let (status, body) = new_key.send(app).await;
    assert_eq!(status, 200, "the rolled key signs: {body}");
    // A token-only key's answer says it may not sign.
    let plain = keys
        .iter()
        .find(|k| k["sigv4"] == false)
        .expect("the token-only key");
    let (status, body) = Signing::new(
        plain["client_id"].as_str().unwrap(),
        "kps_whatever",
        "GET",
        "/api/v1/whoami",
    )
    .send(app)
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_access_key_id"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"sigv4\": true"),
        "{body}"
    );
}

async fn sqlx_rows(app: &TestApp, sql: &'static str) -> Vec<(String, Option<String>)> {
    let url = app.db.url.clone();
    if url.starts_with("sqlite") {
        let path = app.db.sqlite_dir().expect("dir").join("keyport.db");
        tokio::task::spawn_blocking(move || {
            let connection = rusqlite::Connection::open(path).expect("open");
            let mut statement = connection.prepare(sql).expect("prepare");
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<Result<Vec<_>, _>>()
                .expect("rows")
        })
        .await
        .expect("read")
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_as(sql)
            .fetch_all(&mut connection)
            .await
            .expect("rows")
    }
}

async fn a_signed_request_acts_as_the_keys_owner_with_its_scopes(backend: Backend) {
    let f = fixture_with(
        backend,
        &[("KEYPORT_LAST_USED_FLUSH_SECONDS", "1")],
        Some("reports:read"),
    )
    .await;
    let app = &f.app;
    let (status, who) = f.sign("GET", "/api/v1/whoami").send(app).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["sub"], f.user_id.as_str());
    assert_eq!(who["client_id"], f.access_key.as_str());
    assert_eq!(who["credential"], "sigv4");
    assert_eq!(who["scope"], "reports:read");
    let (status, body) = f
        .sign("POST", "/api/v1/webhooks/orders")
        .body(br#"{"n":1}"#, "application/json")
        .send(app)
        .await;
    assert_eq!(status, 403, "the key lacks webhooks:write: {body}");
    assert_eq!(body["error"], "insufficient_scope");
    let (status, body) = f.sign("GET", "/api/v1/keys").send(app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // The last use is recorded as sigv4.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let key = app
        .get_json(&format!("/api/v1/keys/{}", f.key_id), &f.session)
        .await;
    assert_eq!(key["last_used_kind"], "sigv4", "{key}");
    assert_eq!(key["last_used_from"], "127.0.0.1", "{key}");
}

/// Runs `curl` with `args`; returns the status and the JSON body.
async fn curl(args: &[&str]) -> (u16, Value) {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

async fn curl_signs_get_and_post_requests_that_keyport_accepts(backend: Backend) {
    let f = fixture(backend).await;
    let app = &f.app;
    let sigv4 = format!("aws:amz:{REGION}:{SERVICE}");
    let user = format!("{}:{}", f.access_key, f.secret);
    let signed = |url: String| {
        vec![
            "--aws-sigv4".to_owned(),
            sigv4.clone(),
            "--user".to_owned(),
            user.clone(),
            url,
        ]
    };
    let args = signed(app.url("/api/v1/whoami"));
    let (status, who) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["credential"], "sigv4");

    // A body, signed through its SHA-256.
    let mut args = signed(app.url("/api/v1/webhooks/orders"));
    args.extend(
        [
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"order": "café & co", "total": 12.5}"#,
        ]
        .map(str::to_owned),
    );
    let (status, pushed) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 201, "{pushed}");

    // curl signs the headers given with -H, an Idempotency-Key among them
    // (an unsigned one is refused): its retry, run again a second later
    // (a new X-Amz-Date), answers the original push.
    let mut args = signed(app.url("/api/v1/webhooks/curl-retried"));
    args.extend(
        [
            "-H",
            "Content-Type: application/json",
            "-H",
            "Idempotency-Key: curl-order-1",
            "--data-binary",
            r#"{"order": 1}"#,
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, first) = curl(&args).await;
    assert_eq!(status, 201, "{first}");
    // X-Amz-Date counts whole seconds: after 1.1 s the retry's is later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, retried) = curl(&args).await;
    assert_eq!(status, 201, "{retried}");
    assert_eq!(retried["ids"], first["ids"], "the original answer");

    // A query whose values need encoding. curl 7.88 signs the query as
    // typed (later curls sort and encode it), so it is typed canonical.
    let args = signed(app.url("/api/v1/keys?label=env%3Dprod%20%26%20eu"));
    let (status, listed) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{listed}");
    let args = signed(app.url("/api/v1/reports/orders?limit=5"));
    let (status, page) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["records"][0]["data"]["order"], "café & co");

    // A POST without a body: disable, then enable, another of the owner's keys.
    let other = app
        .create_key_over_http(&f.session, json!({ "name": "other" }))
        .await;
    for action in ["disable", "enable"] {
        let mut args = signed(app.url(&format!(
            "/api/v1/keys/{}/{action}",
            other["id"].as_str().unwrap()
        )));
        args.extend(["-X", "POST"].map(str::to_owned));
        let (status, key) = curl(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(status, 200, "{action}: {key}");
    }

    // The audit trail names the credential: a SigV4 signature, by this key.
    let audit = app
        .get_json("/api/v1/audit?action=key.disable", &f.session)
        .await;
    let event = &audit["events"][0];
    assert_eq!(event["credential_kind"], "sigv4", "{audit}");
    assert_eq!(event["credential_id"], f.access_key.as_str(), "{audit}");
    assert_eq!(event["actor"], f.user_id.as_str(), "{audit}");

    // A wrong secret: 401 with what Keyport computed.
    let wrong = format!("{}:{}", f.access_key, "kps_wrong");
    let (status, refused) = curl(&[
        "--aws-sigv4",
        &sigv4,
        "--user",
        &wrong,
        &app.url("/api/v1/whoami"),
    ])
    .await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"], "signature_mismatch");
    let canonical = refused["canonical_request"].as_str().expect("canonical");
    assert!(
        canonical.starts_with("GET\n/api/v1/whoami\n\n"),
        "{canonical}"
    );
    assert!(
        refused["string_to_sign"]
            .as_str()
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256\n"),
        "{refused}"
    );
    assert!(!refused.to_string().contains(&f.secret));
}

fn client_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client script; it prints one JSON report on its last line.
async fn run_client(mut command: tokio::process::Command, f: &Fixture) -> Value {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        command
            .env("KEYPORT_BASE_URL", f.app.url(""))
            .env("KEYPORT_ACCESS_KEY", &f.access_key)
            .env("KEYPORT_SECRET_KEY", &f.secret)
            .env("KEYPORT_REGION", REGION)
            .env("KEYPORT_SERVICE", SERVICE)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finished within 120 s")
    .expect("the client ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the client failed:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains(&f.secret) && !stderr.contains(&f.secret));
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report")
}

/// Every check a client script reports: `{"name": [status, expected]}`.
fn assert_all_as_expected(report: &Value) {
    let checks = report.as_object().expect("an object of checks");
    assert!(checks.len() >= 5, "{report}");
    for (name, outcome) in checks {
        assert_eq!(outcome[0], outcome[1], "{name}: {report}");
    }
}

async fn botocore_signs_get_post_and_presigned_requests_that_keyport_accepts(backend: Backend) {
    let f = fixture(backend).await;
    let mut command = tokio::process::Command::new(python_interpreter());
    command.arg(client_script("sigv4_botocore.py"));
    let report = run_client(command, &f).await;
    assert_all_as_expected(&report);
}

async fn the_aws4_package_signs_get_and_post_requests_that_keyport_accepts(backend: Backend) {
    let f = fixture(backend).await;
    let mut command = tokio::process::Command::new("node");
    command.arg(client_script("sigv4_aws4.mjs"));
    let report = run_client(command, &f).await;
    assert_all_as_expected(&report);
}

async fn bad_signatures_are_refused_with_their_code_and_never_a_5xx(backend: Backend) {
    let f = fixture_with(backend, &[("KEYPORT_MAX_ACTIVE_KEYS_PER_USER", "5")], None).await;
    let app = &f.app;
    let now = chrono::Utc::now().timestamp();
    let good = f.sign("GET", "/api/v1/whoami");
    let (status, body) = good.send(app).await;
    assert_eq!(status, 200, "the unaltered request is accepted: {body}");

    let plain_key = app
        .create_key_over_http(&f.session, json!({ "name": "token only" }))
        .await;
    let revoked = app
        .create_key_over_http(&f.session, json!({ "name": "revoked", "sigv4": true }))
        .await;
    let revoked_response = app
        .post(
            &format!("/api/v1/keys/{}/revoke", revoked["id"].as_str().unwrap()),
            &f.session,
        )
        .await;
    assert_eq!(revoked_response.status(), 200);

    let mut cases: Vec<(&str, reqwest::RequestBuilder, &str)> = Vec::new();
    let mut no_date = good.clone();
    no_date.send_date = false;
    cases.push(("no date", no_date.request(app), "missing_date"));
    let malformed = good
        .request(app)
        .header("x-amz-date", "2026-01-01T00:00:00Z");
    cases.push(("a second, malformed date", malformed, "duplicate_header"));
    let mut malformed = good.clone();
    malformed.date = "2026-01-01T00:00:00Z".to_owned();
    malformed.scope_date = Some("20260101".to_owned());
    cases.push(("a malformed date", malformed.request(app), "malformed_date"));
    let mut late = good.clone();
    late.date = amz_date(now - 16 * 60);
    cases.push(("16 minutes off", late.request(app), "request_expired"));
    let mut early = good.clone();
    early.date = amz_date(now + 16 * 60);
    cases.push(("16 minutes ahead", early.request(app), "request_expired"));
    let mut scope = good.clone();
    scope.scope_date = Some(amz_date(now - 2 * 86_400)[..8].to_owned());
    cases.push((
        "scope date differs",
        scope.request(app),
        "invalid_credential_scope",
    ));
    let mut region = good.clone();
    region.region = "eu-west-1".to_owned();
    cases.push((
        "wrong region",
        region.request(app),
        "invalid_credential_scope",
    ));
    let mut service = good.clone();
    service.service = "execute-api".to_owned();
    cases.push((
        "wrong service",
        service.request(app),
        "invalid_credential_scope",
    ));
    let mut unsigned_host = good.clone();
    unsigned_host.signed = Some(vec!["x-amz-date".to_owned()]);
    cases.push((
        "host not signed",
        unsigned_host.request(app),
        "header_not_signed",
    ));
    let mut missing = good.clone();
    missing.signed = Some(vec![
        "host".to_owned(),
        "x-amz-date".to_owned(),
        "x-custom".to_owned(),
    ]);
    cases.push((
        "a signed header missing",
        missing.request(app),
        "signed_header_missing",
    ));
    let mut duplicated = good.clone();
    duplicated
        .headers
        .push(("x-custom".to_owned(), "one".to_owned()));
    let duplicated = duplicated.request(app).header("x-custom", "two");
    cases.push(("a duplicated header", duplicated, "duplicate_header"));
    for (what, signature) in [
        ("a non-hex signature", "z".repeat(64)),
        ("a short signature", "ab".repeat(16)),
    ] {
        let request = app
            .client
            .get(app.url("/api/v1/whoami"))
            .header("x-amz-date", &good.date)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{}/{REGION}/{SERVICE}/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}",
                    f.access_key,
                    &good.date[..8]
                ),
            );
        cases.push((what, request, "malformed_authorization"));
    }
    let mut changed = f
        .sign("POST", "/api/v1/webhooks/orders")
        .body(br#"{"total": 10}"#, "application/json");
    let tampered = {
        let request = changed.request(app);
        request.body(r#"{"total": 1000}"#)
    };
    cases.push((
        "a body changed after signing",
        tampered,
        "signature_mismatch",
    ));
    changed.headers.push((
        "x-amz-content-sha256".to_owned(),
        hex_sha256(br#"{"total": 10}"#),
    ));
    let tampered = changed.request(app).body(r#"{"total": 1000}"#);
    cases.push((
        "a body changed after signing, its hash sent",
        tampered,
        "content_sha256_mismatch",
    ));
    let plain = Signing::new(
        plain_key["client_id"].as_str().unwrap(),
        plain_key["client_secret"].as_str().unwrap(),
        "GET",
        "/api/v1/whoami",
    );
    cases.push((
        "a key without SigV4",
        plain.request(app),
        "invalid_access_key_id",
    ));
    let gone = Signing::new(
        revoked["client_id"].as_str().unwrap(),
        revoked["client_secret"].as_str().unwrap(),
        "GET",
        "/api/v1/whoami",
    );
    cases.push(("a revoked key", gone.request(app), "key_revoked"));
    let mut unknown = good.clone();
    unknown.access_key = keyport::domain::ClientId::generate().to_string();
    cases.push((
        "an unknown access key",
        unknown.request(app),
        "invalid_access_key_id",
    ));
    let mut wrong_secret = good.clone();
    wrong_secret.secret = plain_key["client_secret"].as_str().unwrap().to_owned();
    cases.push((
        "a wrong secret",
        wrong_secret.request(app),
        "signature_mismatch",
    ));
    let mut other_path = good.clone();
    other_path.path = "/api/v1/keys".to_owned();
    let replayed = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("x-amz-date", &good.date)
        .header(
            "authorization",
            other_path.signature(&format!("127.0.0.1:{}", app.port)).0,
        );
    cases.push(("signed for another path", replayed, "signature_mismatch"));
    let expired = presign(&f, "/api/v1/whoami", "", now - 400, 300);
    cases.push((
        "an expired presigned URL",
        app.client.get(expired),
        "request_expired",
    ));
    let too_long = presign(&f, "/api/v1/whoami", "", now, 8 * 86_400);
    cases.push((
        "a presigned URL for 8 days",
        app.client.get(too_long),
        "invalid_expires",
    ));
    let posted = presign(&f, "/api/v1/webhooks/orders", "", now, 300);
    cases.push((
        "a presigned POST",
        app.client.post(posted),
        "presigned_url_get_only",
    ));
    let algorithm = app
        .client
        .get(app.url("/api/v1/whoami"))
        .header("x-amz-date", &good.date)
        .header("authorization", "AWS4-HMAC-SHA1 Credential=x/y");
    cases.push(("another algorithm", algorithm, "unsupported_algorithm"));
    let unsigned_key = good.request(app).header("Idempotency-Key", "order-1");
    cases.push((
        "an Idempotency-Key not signed",
        unsigned_key,
        "header_not_signed",
    ));
    let both = good.request(app).header("x-api-key", &f.secret);
    cases.push(("a key beside the signature", both, "invalid_request"));

    for (what, request, code) in cases {
        let response = request.send().await.expect(what);
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        assert_eq!(body["error"], code, "{what}: {status} {body}");
        let expected = if code == "invalid_request" { 400 } else { 401 };
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        assert!(!text.contains(&f.secret), "{what} echoes the secret");
    }
    let rows = every_stored_row(&app.db).await;
    assert!(
        rows.iter()
            .all(|(_, row)| !row.contains(&f.secret) && !row.contains(&good.signature("x").1)),
        "no secret or signature in any stored row"
    );
}

/// A presigned URL (header `host` signed) valid `expires` seconds from `at`.
fn presign(f: &Fixture, path: &str, extra_query: &str, at: i64, expires: i64) -> String {
    let date = amz_date(at);
    let scope = format!("{}/{REGION}/{SERVICE}/aws4_request", &date[..8]);
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let mut params = vec![
        ("X-Amz-Algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        (
            "X-Amz-Credential".to_owned(),
            enc(&format!("{}/{scope}", f.access_key)),
        ),
        ("X-Amz-Date".to_owned(), date.clone()),
        ("X-Amz-Expires".to_owned(), expires.to_string()),
        ("X-Amz-SignedHeaders".to_owned(), "host".to_owned()),
    ];
    for pair in extra_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((name.to_owned(), value.to_owned()));
    }
    params.sort();
    let query: Vec<String> = params.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let query = query.join("&");
    let host = format!("127.0.0.1:{}", f.app.port);
    let canonical = format!(
        "GET\n{path}\n{query}\nhost:{host}\n\nhost\n{}",
        hex_sha256(b"")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex_sha256(canonical.as_bytes())
    );
    let mut key = format!("AWS4{}", f.secret).into_bytes();
    for part in [&date[..8], REGION, SERVICE, "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex::encode(hmac(&key, &string_to_sign));
    f.app
        .url(&format!("{path}?{query}&X-Amz-Signature={signature}"))
}

async fn presigned_urls_work_for_get_until_they_expire(backend: Backend) {
    let f = fixture(backend).await;
    let app = &f.app;
    let now = chrono::Utc::now().timestamp();
    let url = presign(&f, "/api/v1/whoami", "", now, 300);
    let response = app.client.get(&url).sent().await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "an answer to a presigned URL is never cached"
    );
    let who = json_body(response).await;
    assert_eq!(who["credential"], "sigv4");
    // Handlers see their own parameters, not the signature's.
    let url = presign(&f, "/api/v1/reports/orders", "limit=2", now, 604_800);
    let response = app.client.get(&url).sent().await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let url = presign(&f, "/api/v1/keys", "label=env%3Dprod", now, 60);
    let listed = json_body(app.client.get(&url).sent().await).await;
    assert_eq!(listed["keys"], json!([]), "{listed}");
    // A week-old URL signed for a week still works; a moment later it does not.
    let url = presign(&f, "/api/v1/whoami", "", now - 604_790, 604_800);
    let response = app.client.get(&url).sent().await;
    assert_eq!(response.status(), 200);
    let url = presign(&f, "/api/v1/whoami", "", now - 604_810, 604_800);
    let refused = json_body(app.client.get(&url).sent().await).await;
    assert_eq!(refused["error"], "request_expired", "{refused}");
    // Changing a parameter breaks the signature.
    let url =
        presign(&f, "/api/v1/reports/orders", "limit=2", now, 300).replace("limit=2", "limit=3");
    let refused = json_body(app.client.get(&url).sent().await).await;
    assert_eq!(refused["error"], "signature_mismatch", "{refused}");
}

async fn failed_signatures_are_throttled_like_failed_client_authentication(backend: Backend) {
    let f = fixture_with(backend, &[("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "3")], None).await;
    let app = &f.app;
    let mut wrong = f.sign("GET", "/api/v1/whoami");
    wrong.secret = "kps_guess".to_owned();
    for _ in 0..3 {
        let (status, body) = wrong.send(app).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("signature_mismatch"))
        );
    }
    let response = wrong.request(app).sent().await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // The same client ID at the token endpoint is throttled too: one throttle.
    let response = app.request_token(&f.access_key, &f.secret).await;
    assert_eq!(
        response.status(),
        429,
        "the token endpoint shares the throttle"
    );
    // Another key from the same address is not.
    let other = app
        .create_key_over_http(&f.session, json!({ "name": "other", "sigv4": true }))
        .await;
    let (status, body) = Signing::new(
        other["client_id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
        "GET",
        "/api/v1/whoami",
    )
    .send(app)
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn revoked_disabled_and_expired_keys_are_refused_at_once_and_lose_their_cached_signing_key(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let app = &f.app;
    let service = app.service();
    let signing = f.sign("GET", "/api/v1/whoami");
    let host = format!("127.0.0.1:{}", app.port);
    let (authorization, _) = signing.signature(&host);
    let verify = || async {
        let headers: Vec<(&str, &[u8])> = vec![
            ("host", host.as_bytes()),
            ("x-amz-date", signing.date.as_bytes()),
            ("authorization", authorization.as_bytes()),
        ];
        keyport::service::authz::sigv4(
            &service,
            &RequestParts {
                method: "GET",
                path: "/api/v1/whoami",
                query: "",
                headers: &headers,
                body_sha256: keyport::domain::sigv4::EMPTY_PAYLOAD_SHA256,
            },
            Presentation::Header,
            "127.0.0.1".parse().unwrap(),
        )
        .await
        .map_err(|e| e.code())
    };
    let principal = verify().await.expect("verifies");
    assert_eq!(principal.credential.kind(), "sigv4");
    assert!(
        service.sigv4_keys.holds(&f.access_key),
        "the derived key is cached"
    );
    admin::disable_key(&service, &Principal::operator(), &f.key_id)
        .await
        .unwrap();
    assert!(
        !service.sigv4_keys.holds(&f.access_key),
        "disabling drops it"
    );
    assert_eq!(verify().await.err(), Some("key_disabled"));
    let (status, body) = signing.send(app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("key_disabled"))
    );
    admin::enable_key(&service, &Principal::operator(), &f.key_id)
        .await
        .unwrap();
    verify().await.expect("enabled again");
    assert!(service.sigv4_keys.holds(&f.access_key));
    // Revoked through the HTTP API: the derived key goes, and the key's
    // standing is asked on every request.
    let revoked = app
        .post(&format!("/api/v1/keys/{}/revoke", f.key_id), &f.session)
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(verify().await.err(), Some("key_revoked"));
    assert!(
        !service.sigv4_keys.holds(&f.access_key),
        "a refused key's entry goes"
    );
    let (status, body) = signing.send(app).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("key_revoked")));

    // Expired, and deleted.
    let expiring = app
        .create_key_over_http(
            &f.session,
            json!({ "name": "short", "sigv4": true, "expires_in_seconds": 2 }),
        )
        .await;
    let short = Signing::new(
        expiring["client_id"].as_str().unwrap(),
        expiring["client_secret"].as_str().unwrap(),
        "GET",
        "/api/v1/whoami",
    );
    assert_eq!(short.send(app).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let short = Signing {
        date: amz_date(chrono::Utc::now().timestamp()),
        ..short
    };
    let (status, body) = short.send(app).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("key_expired")));
    admin::delete_key(
        &service,
        &Principal::operator(),
        expiring["id"].as_str().unwrap(),
        None,
    )
    .await
    .unwrap();
    let (status, body) = short.send(app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_access_key_id"))
    );
}

async fn the_region_and_service_are_configurable_and_published(backend: Backend) {
    let f = fixture_with(
        backend,
        &[
            ("KEYPORT_SIGV4_REGION", "ap-southeast-1"),
            ("KEYPORT_SIGV4_SERVICE", "sqlaccount"),
        ],
        None,
    )
    .await;
    let app = &f.app;
    let metadata = json_body(app.get("/.well-known/oauth-authorization-server").await).await;
    assert_eq!(metadata["sigv4_region"], "ap-southeast-1");
    assert_eq!(metadata["sigv4_service"], "sqlaccount");
    let default_scope = f.sign("GET", "/api/v1/whoami");
    let (status, body) = default_scope.send(app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credential_scope"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ap-southeast-1/sqlaccount"),
        "{body}"
    );
    let mut configured = default_scope;
    configured.region = "ap-southeast-1".to_owned();
    configured.service = "sqlaccount".to_owned();
    assert_eq!(configured.send(app).await.0, 200);
    let defaults = spawn_app(backend).await;
    let metadata = json_body(
        defaults
            .get("/.well-known/oauth-authorization-server")
            .await,
    )
    .await;
    assert_eq!(
        (
            metadata["sigv4_region"].as_str(),
            metadata["sigv4_service"].as_str()
        ),
        (Some(REGION), Some(SERVICE))
    );
}

// ------------------------------------------------ replays and Idempotency-Key

/// The bytes a client puts on the wire for `signing`, signed for `host`:
/// what an eavesdropper or a logging proxy captures, to send again as is.
fn wire_bytes(signing: &Signing, host: &str) -> Vec<u8> {
    let (authorization, _) = signing.signature(host);
    let target = if signing.query.is_empty() {
        signing.path.clone()
    } else {
        format!("{}?{}", signing.path, signing.query)
    };
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nhost: {host}\r\nx-amz-date: {}\r\nauthorization: {authorization}\r\n",
        signing.method, signing.date
    );
    for (name, value) in &signing.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        signing.body.len()
    ));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&signing.body);
    bytes
}

/// A response read off the wire: status, lower-case headers, JSON body.
struct WireAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl WireAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `bytes` as they are to the instance on `port`; reads the answer
/// until the server closes the connection (`connection: close`).
async fn send_bytes(port: u16, bytes: &[u8]) -> WireAnswer {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("answered within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    WireAnswer {
        status,
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    }
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// How many records the key's owner (an admin) sees in `collection`, read
/// with a signed GET.
async fn records_in(f: &Fixture, collection: &str) -> usize {
    let (status, page) = f
        .sign("GET", &format!("/api/v1/reports/{collection}?limit=500"))
        .send(&f.app)
        .await;
    assert_eq!(status, 200, "{page}");
    page["records"].as_array().expect("records").len()
}

/// Input tried: a signed push captured on the wire and sent again, byte for
/// byte, to the instance that took it and to a second instance on the same
/// database; and one signed push sent to both instances at once.
async fn a_signed_post_sent_again_byte_for_byte_is_refused_at_every_instance_and_stored_once(
    backend: Backend,
) {
    let f = fixture(backend).await;
    let app = &f.app;
    let sibling = spawn_sibling(app, &[]).await;
    let host = format!("127.0.0.1:{}", app.port);
    let push = f
        .sign("POST", "/api/v1/webhooks/replayed")
        .body(br#"{"amount": 100}"#, "application/json");
    let bytes = wire_bytes(&push, &host);
    let first = send_bytes(app.port, &bytes).await;
    assert_eq!(
        first.status, 201,
        "the first sending stores: {}",
        first.body
    );
    for (instance, port) in [
        ("the same instance", app.port),
        ("another instance", sibling.port),
    ] {
        let again = send_bytes(port, &bytes).await;
        assert_eq!(
            (again.status, again.body["error"].as_str()),
            (401, Some("signature_replayed")),
            "{instance}: {}",
            again.body
        );
        let message = again.body["message"].as_str().expect("a message");
        assert!(message.contains("Idempotency-Key"), "{message}");
        assert!(
            again
                .header("www-authenticate")
                .is_some_and(|c| c.contains("error=\"signature_replayed\"")),
            "{instance}: {:?}",
            again.headers
        );
    }
    assert_eq!(records_in(&f, "replayed").await, 1, "stored once");

    // One signature sent to two instances at the same time: one stores.
    let raced = f
        .sign("POST", "/api/v1/webhooks/raced")
        .body(br#"{"amount": 7}"#, "application/json");
    let bytes = wire_bytes(&raced, &host);
    let (a, b) = tokio::join!(
        send_bytes(app.port, &bytes),
        send_bytes(sibling.port, &bytes)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 401], "{} / {}", a.body, b.body);
    assert_eq!(records_in(&f, "raced").await, 1);

    // The cache keeps a digest, never the signature.
    let signature = push.signature(&host).1;
    let rows = every_stored_row(&app.db).await;
    assert!(
        rows.iter().any(|(table, _)| table == "sigv4_replays"),
        "the signatures are remembered in the database"
    );
    assert!(rows.iter().all(|(_, row)| !row.contains(&signature)));
}

/// Input tried: a signed push sent again with an Idempotency-Key added
/// after signing (the replay an unsigned key allowed); a push whose
/// Idempotency-Key is sent but left out of SignedHeaders; and a signed
/// Idempotency-Key changed after signing.
async fn a_signed_request_with_an_unsigned_idempotency_key_is_refused(backend: Backend) {
    let f = fixture(backend).await;
    let app = &f.app;
    let host = format!("127.0.0.1:{}", app.port);
    let push = f
        .sign("POST", "/api/v1/webhooks/unsigned")
        .body(br#"{"amount": 100}"#, "application/json");
    let (status, body) = push.send(app).await;
    assert_eq!(status, 201, "{body}");
    for key in ["attacker-1", "attacker-2"] {
        let resent = push
            .request(app)
            .header("Idempotency-Key", key)
            .sent()
            .await;
        assert_eq!(
            resent.status(),
            401,
            "a new Idempotency-Key on a captured request"
        );
        let body = json_body(resent).await;
        assert_eq!(body["error"], "header_not_signed", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("idempotency-key") && m.contains("SignedHeaders")),
            "{body}"
        );
    }

    let mut left_out = f
        .sign("POST", "/api/v1/webhooks/unsigned")
        .body(br#"{"amount": 5}"#, "application/json");
    left_out
        .headers
        .push(("idempotency-key".to_owned(), "order-5".to_owned()));
    left_out.signed = Some(
        ["content-type", "host", "x-amz-date"]
            .map(str::to_owned)
            .to_vec(),
    );
    let (status, body) = left_out.send(app).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("header_not_signed")),
        "{body}"
    );

    let mut signed = f
        .sign("POST", "/api/v1/webhooks/unsigned")
        .body(br#"{"amount": 6}"#, "application/json");
    signed
        .headers
        .push(("idempotency-key".to_owned(), "order-6".to_owned()));
    let changed = String::from_utf8(wire_bytes(&signed, &host))
        .expect("text")
        .replace("idempotency-key: order-6", "idempotency-key: order-7");
    let answer = send_bytes(app.port, changed.as_bytes()).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (401, Some("signature_mismatch")),
        "{}",
        answer.body
    );
    assert_eq!(records_in(&f, "unsigned").await, 1, "only the first push");
}

/// Input tried: one push signed three times with the same signed
/// Idempotency-Key (an earlier X-Amz-Date, then another signed header
/// value, as a client's numbered attempts give).
async fn a_post_signed_again_with_the_same_signed_idempotency_key_stores_once(backend: Backend) {
    let f = fixture(backend).await;
    let app = &f.app;
    let mut attempt = f
        .sign("POST", "/api/v1/webhooks/retried")
        .body(br#"{"order": 1001}"#, "application/json");
    attempt
        .headers
        .push(("idempotency-key".to_owned(), "order-1001".to_owned()));
    let response = attempt.request(app).sent().await;
    assert_eq!(response.status(), 201);
    assert!(!response.headers().contains_key("idempotent-replayed"));
    let first = json_body(response).await;

    let signed_at = chrono::NaiveDateTime::parse_from_str(&attempt.date, "%Y%m%dT%H%M%SZ")
        .expect("the date signed")
        .and_utc()
        .timestamp();
    let mut earlier = attempt.clone();
    earlier.date = amz_date(signed_at - 1);
    let mut numbered = attempt.clone();
    numbered
        .headers
        .push(("amz-sdk-request".to_owned(), "attempt=2; max=3".to_owned()));
    for (what, retry) in [
        ("a new X-Amz-Date", earlier),
        ("a numbered attempt", numbered),
    ] {
        let response = retry.request(app).send().await.expect(what);
        assert_eq!(response.status(), 201, "{what}");
        assert_eq!(
            response.headers()["idempotent-replayed"],
            "true",
            "{what}: the original answer"
        );
        let body = json_body(response).await;
        assert_eq!(body["ids"], first["ids"], "{what}: {body}");
    }
    assert_eq!(records_in(&f, "retried").await, 1);
}

/// Input tried: one signed GET sent five times, byte for byte, to two
/// instances; a presigned URL fetched twice.
async fn a_signed_get_sent_again_within_its_window_is_still_served(backend: Backend) {
    let f = fixture(backend).await;
    let app = &f.app;
    let sibling = spawn_sibling(app, &[]).await;
    let host = format!("127.0.0.1:{}", app.port);
    let bytes = wire_bytes(&f.sign("GET", "/api/v1/whoami"), &host);
    for port in [app.port, app.port, sibling.port, app.port, sibling.port] {
        let answer = send_bytes(port, &bytes).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["credential"], "sigv4");
    }
    let url = presign(
        &f,
        "/api/v1/whoami",
        "",
        chrono::Utc::now().timestamp(),
        300,
    );
    for _ in 0..2 {
        let response = app.client.get(&url).sent().await;
        assert_eq!(response.status(), 200);
    }
}

/// The cache's two statements, on a file (SQLite's direct writer) and on
/// PostgreSQL: a digest is admitted once until swept; only rows whose
/// window ended go.
async fn the_replay_cache_admits_a_signature_once_and_sweeps_only_rows_past_their_window(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let store = &app.store;
    let at = chrono::Utc::now().timestamp();
    let (ended, open) = ("a".repeat(64), "b".repeat(64));
    assert!(store.first_sigv4_use(&ended, at - 10).await.unwrap());
    assert!(!store.first_sigv4_use(&ended, at - 10).await.unwrap());
    assert!(store.first_sigv4_use(&open, at + 900).await.unwrap());
    assert_eq!(store.sweep_sigv4_replays(at).await.unwrap(), 1);
    assert!(
        !store.first_sigv4_use(&open, at + 900).await.unwrap(),
        "kept until its window ends"
    );
    assert!(
        store.first_sigv4_use(&ended, at + 900).await.unwrap(),
        "swept"
    );
}
