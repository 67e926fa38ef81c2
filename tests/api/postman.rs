//! The Postman collection: `GET /api/v1/postman/collection.json`, `keyport
//! postman export` (which needs no database), and newman (Postman's own
//! runner, from `package.json`) running the exported collection against a
//! real server: with the right key every request passes; with a wrong secret
//! the run fails, and its report says the token request got 401
//! `invalid_client`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, TestApp, json_body, spawn_app, spawn_app_with_integration,
};

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport");
const SCHEMA: &str = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json";
const PATH: &str = "/api/v1/postman/collection.json";

/// A database URL nothing listens on: `postman export` must not need one.
const NO_DATABASE: &str = "postgres://keyport@127.0.0.1:1/unreachable";

/// The project's newman (`npm ci` installs it). Missing is a failure, never a skip.
fn newman() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/newman");
    assert!(
        path.exists(),
        "newman is not installed: {} does not exist. Run `scripts/test`, which runs \
         `npm ci --no-audit --no-fund` (package.json pins newman), or run that npm command \
         in the repository root yourself",
        path.display()
    );
    path
}

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("keyport_postman_{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `keyport ARGS` with only the given KEYPORT_* variables (the database
/// one unreachable), asserting it exits 0; returns stdout.
async fn keyport(args: &[&str], issuer: &str) -> String {
    let mut command = tokio::process::Command::new(KEYPORT);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYPORT_") {
            command.env_remove(name);
        }
    }
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        command
            .args(args)
            .env("KEYPORT_ISSUER", issuer)
            .env("KEYPORT_DATABASE_URL", NO_DATABASE)
            .env("KEYPORT_DATABASE_TIMEOUT_SECONDS", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("keyport {args:?} did not finish within 60 s"))
    .expect("run the keyport binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "keyport {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    stdout
}

fn variable<'a>(collection: &'a Value, key: &str) -> &'a Value {
    collection["variable"]
        .as_array()
        .expect("collection variables")
        .iter()
        .find(|v| v["key"] == key)
        .map(|v| &v["value"])
        .unwrap_or_else(|| panic!("no collection variable `{key}`"))
}

/// Sets collection variables, as a user does in Postman's Variables tab.
fn fill(mut collection: Value, values: &[(&str, &str)]) -> Value {
    let variables = collection["variable"]
        .as_array_mut()
        .expect("collection variables");
    for (key, value) in values {
        let variable = variables
            .iter_mut()
            .find(|v| v["key"] == *key)
            .unwrap_or_else(|| panic!("no collection variable `{key}`"));
        variable["value"] = json!(value);
    }
    collection
}

/// The collection for `app`, exported by the binary with the app's address
/// as its issuer (the test server itself keeps the default issuer, so
/// `base_url` must come from the export).
async fn exported_for(app: &TestApp, scratch: &Scratch) -> Value {
    let file = scratch.path("keyport.postman_collection.json");
    keyport(
        &[
            "postman",
            "export",
            "--out",
            file.to_str().expect("utf-8 path"),
        ],
        &app.address,
    )
    .await;
    let text = std::fs::read_to_string(&file).expect("the exported collection");
    let collection: Value = serde_json::from_str(&text).expect("the export is JSON");
    assert_eq!(variable(&collection, "base_url"), app.address.as_str());
    collection
}

struct NewmanRun {
    success: bool,
    describe: String,
    stdout: String,
    report: Value,
}

/// `newman run` on `collection` (written to a file), with the JSON reporter.
async fn run_newman(
    collection: &Value,
    scratch: &Scratch,
    name: &str,
    extra: &[&str],
) -> NewmanRun {
    let newman = newman();
    let file = scratch.path(&format!("{name}.postman_collection.json"));
    std::fs::write(&file, collection.to_string()).expect("write the collection");
    let report_file = scratch.path(&format!("{name}.report.json"));
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(&newman)
            .arg("run")
            .arg(&file)
            .args(["--reporters", "cli,json", "--reporter-json-export"])
            .arg(&report_file)
            .args([
                "--color",
                "off",
                "--disable-unicode",
                "--timeout-request",
                "30000",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("newman finished within 180 s")
    .unwrap_or_else(|e| panic!("cannot run {} ({e}); run `scripts/test`", newman.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let describe = format!(
        "newman {name} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let report = std::fs::read_to_string(&report_file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("newman wrote no JSON report; {describe}"));
    NewmanRun {
        success: output.status.success(),
        describe,
        stdout,
        report,
    }
}

impl NewmanRun {
    fn stat(&self, kind: &str, field: &str) -> u64 {
        self.report["run"]["stats"][kind][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no run.stats.{kind}.{field}; {}", self.describe))
    }

    fn failures(&self) -> &[Value] {
        self.report["run"]["failures"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The executions of the collection item named `name`.
    fn executions(&self, name: &str) -> Vec<&Value> {
        self.report["run"]["executions"]
            .as_array()
            .expect("run.executions")
            .iter()
            .filter(|e| e["item"]["name"] == name)
            .collect()
    }
}

/// The body newman's JSON report holds for a response (a Buffer's bytes).
fn response_body(execution: &Value) -> String {
    let bytes: Vec<u8> = execution["response"]["stream"]["data"]
        .as_array()
        .map(|data| data.iter().map(|b| b.as_u64().unwrap_or(0) as u8).collect())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn the_endpoint_needs_a_credential_and_serves_a_v2_1_collection(backend: Backend) {
    let app = spawn_app(backend).await;

    let anonymous = app.client.get(app.url(PATH)).sent().await;
    assert_eq!(anonymous.status(), 401);
    let challenge = anonymous
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let bogus = app
        .api(reqwest::Method::GET, PATH, "not-a-token")
        .sent()
        .await;
    assert_eq!(bogus.status(), 401);

    // Any valid credential, with no scope: the key itself of a user without
    // permissions, and an access token.
    let unprivileged = app.integration("member", "").await;
    let by_key = app
        .client
        .get(app.url(PATH))
        .header("x-api-key", unprivileged.secret())
        .sent()
        .await;
    assert_eq!(by_key.status(), 200);
    let integration = app.integration("member", "reports:read").await;
    let token = app.token_for(&integration).await;
    let response = app.api(reqwest::Method::GET, PATH, &token).sent().await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"keyport.postman_collection.json\""
    );
    let document = json_body(response).await;
    assert_eq!(document["info"]["schema"], SCHEMA, "{document:#}");
    assert_eq!(document, keyport::postman::collection(&app.settings));
    assert_eq!(
        variable(&document, "base_url"),
        app.settings.tokens.issuer.as_str()
    );
    for blank in ["client_id", "client_secret", "access_token"] {
        assert_eq!(variable(&document, blank), "", "{blank} must ship blank");
    }
    assert_eq!(variable(&document, "collection"), "orders");
    assert_eq!(document["auth"]["type"], "bearer");
    assert_eq!(document["event"][0]["listen"], "prerequest");
    let folders: Vec<&str> = document["item"]
        .as_array()
        .expect("folders")
        .iter()
        .map(|f| f["name"].as_str().expect("folder name"))
        .collect();
    assert_eq!(folders, ["Auth", "Webhooks", "Reports", "Discovery"]);
    assert_eq!(json_body(by_key).await, document);

    let post = app.api(reqwest::Method::POST, PATH, &token).sent().await;
    assert_eq!(post.status(), 405);
}

async fn newman_runs_the_exported_collection_green(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;
    let scratch = Scratch::new();
    let exported = exported_for(&app, &scratch).await;
    let filled = fill(
        exported,
        &[
            ("client_id", integration.client_id()),
            ("client_secret", integration.secret()),
        ],
    );

    let run = run_newman(&filled, &scratch, "full", &[]).await;
    assert!(run.success, "{}", run.describe);
    assert!(run.failures().is_empty(), "{}", run.describe);
    assert_eq!(run.stat("requests", "failed"), 0, "{}", run.describe);
    assert_eq!(run.stat("assertions", "failed"), 0, "{}", run.describe);
    assert!(run.stat("assertions", "total") >= 17, "{}", run.describe);
    for name in [
        "Get an access token",
        "Push a record",
        "Replay the push (same Idempotency-Key)",
        "List records",
        "Get the pushed record",
        "Authorization server metadata",
        "JSON Web Key Set",
    ] {
        assert_eq!(run.executions(name).len(), 1, "{name}; {}", run.describe);
    }
    let replay = run.executions("Replay the push (same Idempotency-Key)")[0];
    assert_eq!(replay["response"]["code"], 201, "{}", run.describe);

    // The replay stored nothing: one record, the one the push reported.
    let token = app.token_for(&integration).await;
    let ids = app.pull_all_ids(&token, "orders", 50).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let pushed = json_body_of(run.executions("Push a record")[0]);
    assert_eq!(pushed["ids"], json!(ids));

    // Without the Auth folder, with a token about to expire: the collection's
    // pre-request script must get a new one on its own.
    let soon = (chrono::Utc::now().timestamp_millis() + 5_000).to_string();
    let stale = fill(
        filled,
        &[
            ("access_token", "an-expiring-token-the-script-must-replace"),
            ("token_expires_at", soon.as_str()),
        ],
    );
    let run = run_newman(
        &stale,
        &scratch,
        "renewal",
        &["--folder", "Webhooks", "--folder", "Reports"],
    )
    .await;
    assert!(run.success, "{}", run.describe);
    assert!(run.failures().is_empty(), "{}", run.describe);
    assert!(run.executions("Get an access token").is_empty());
    assert_eq!(run.executions("List records").len(), 1, "{}", run.describe);
    assert_eq!(app.pull_all_ids(&token, "orders", 50).await.len(), 2);
}

fn json_body_of(execution: &Value) -> Value {
    let text = response_body(execution);
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

async fn newman_fails_with_a_wrong_secret_and_says_invalid_client(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;
    // A well-formed, real secret, but another key's.
    let other = app.key(&integration.user.email, None).await;
    let scratch = Scratch::new();
    let exported = exported_for(&app, &scratch).await;
    let wrong = fill(
        exported,
        &[
            ("client_id", integration.client_id()),
            ("client_secret", other.secret.expose()),
        ],
    );

    let run = run_newman(&wrong, &scratch, "wrong-secret", &[]).await;
    assert!(
        !run.success,
        "newman passed with a wrong secret; {}",
        run.describe
    );

    // Why: the token request got 401 invalid_client...
    let token = run.executions("Get an access token");
    assert_eq!(token.len(), 1, "{}", run.describe);
    assert_eq!(token[0]["response"]["code"], 401, "{}", run.describe);
    let body = json_body_of(token[0]);
    assert_eq!(body["error"], "invalid_client", "{body}");
    // ...its status assertion is among the failures...
    assert!(
        run.failures().iter().any(|f| {
            f["source"]["name"] == "Get an access token"
                && f["error"]["message"].as_str().is_some_and(|m| {
                    m.contains("expected response to have status code 200 but got 401")
                })
        }),
        "no failure for the token request's status; {}",
        run.describe
    );
    // ...and the pre-request script's own token request says why too.
    assert!(
        run.failures().iter().any(|f| {
            f["error"]["test"] == "Keyport issued an access token for client_id and client_secret"
                && f["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid_client"))
        }),
        "the pre-request script did not report invalid_client; {}",
        run.describe
    );
    assert!(run.stdout.contains("401 Unauthorized"), "{}", run.describe);
    assert!(run.stdout.contains("invalid_client"), "{}", run.describe);

    // Nothing was pushed with the wrong secret.
    let token = app.token_for(&integration).await;
    assert!(app.pull_all_ids(&token, "orders", 50).await.is_empty());
}

/// The AWS Signature variant exported by the binary (`--sigv4`).
async fn exported_sigv4_for(app: &TestApp, scratch: &Scratch) -> Value {
    let file = scratch.path("keyport-sigv4.postman_collection.json");
    keyport(
        &[
            "postman",
            "export",
            "--sigv4",
            "--out",
            file.to_str().expect("utf-8 path"),
        ],
        &app.address,
    )
    .await;
    let text = std::fs::read_to_string(&file).expect("the exported collection");
    let collection: Value = serde_json::from_str(&text).expect("the export is JSON");
    assert_eq!(collection["auth"]["type"], "awsv4");
    assert_eq!(variable(&collection, "base_url"), app.address.as_str());
    collection
}

/// A member's key with SigV4 allowed (access key ID, secret).
async fn sigv4_key(app: &TestApp) -> (String, String) {
    let integration = app.integration("member", READ_AND_PUSH).await;
    let created = app
        .sigv4_key(&integration.user.email, "Postman, AWS Signature")
        .await;
    (
        created.key.client_id.clone(),
        created.secret.expose().to_owned(),
    )
}

async fn newman_runs_the_aws_signature_collection_green_with_only_the_two_variables(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (access_key, secret_key) = sigv4_key(&app).await;
    let scratch = Scratch::new();
    let exported = exported_sigv4_for(&app, &scratch).await;
    let filled = fill(
        exported,
        &[
            ("access_key", access_key.as_str()),
            ("secret_key", secret_key.as_str()),
        ],
    );
    let run = run_newman(&filled, &scratch, "sigv4", &[]).await;
    assert!(run.success, "{}", run.describe);
    assert!(run.failures().is_empty(), "{}", run.describe);
    assert_eq!(run.stat("assertions", "failed"), 0, "{}", run.describe);
    for name in [
        "Who am I",
        "Push a record",
        "Replay the push (same Idempotency-Key)",
        "List records",
        "Get the pushed record",
        "Authorization server metadata",
        "JSON Web Key Set",
    ] {
        assert_eq!(run.executions(name).len(), 1, "{name}; {}", run.describe);
    }
    let who = json_body_of(run.executions("Who am I")[0]);
    assert_eq!(who["credential"], "sigv4", "{who}");
    assert!(run.executions("Get an access token").is_empty());
    assert!(!run.stdout.contains(&secret_key));
}

async fn newman_fails_the_aws_signature_collection_with_a_wrong_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    let (access_key, _) = sigv4_key(&app).await;
    let scratch = Scratch::new();
    let exported = exported_sigv4_for(&app, &scratch).await;
    let wrong = fill(
        exported,
        &[
            ("access_key", access_key.as_str()),
            (
                "secret_key",
                keyport::domain::ClientSecret::generate().expose(),
            ),
        ],
    );
    let run = run_newman(&wrong, &scratch, "sigv4-wrong", &[]).await;
    assert!(
        !run.success,
        "newman passed with a wrong secret; {}",
        run.describe
    );
    let who = run.executions("Who am I");
    assert_eq!(who[0]["response"]["code"], 401, "{}", run.describe);
    let body = json_body_of(who[0]);
    assert_eq!(body["error"], "signature_mismatch", "{body}");
    let push = run.executions("Push a record");
    assert_eq!(push[0]["response"]["code"], 401, "{}", run.describe);
    assert!(run.stdout.contains("401 Unauthorized"), "{}", run.describe);
}

async fn the_endpoint_serves_the_aws_signature_variant_on_request(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let response = app
        .client
        .get(app.url(&format!("{PATH}?auth=sigv4")))
        .header("x-api-key", integration.secret())
        .sent()
        .await;
    assert_eq!(response.status(), 200);
    let document = json_body(response).await;
    assert_eq!(document["auth"]["type"], "awsv4");
    assert_eq!(document["info"]["schema"], SCHEMA);
    let response = app
        .client
        .get(app.url(&format!("{PATH}?auth=basic")))
        .header("x-api-key", integration.secret())
        .sent()
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(json_body(response).await["error"], "invalid_query");
}

crate::on_both_backends!(
    the_endpoint_needs_a_credential_and_serves_a_v2_1_collection,
    newman_runs_the_exported_collection_green,
    newman_fails_with_a_wrong_secret_and_says_invalid_client,
    newman_runs_the_aws_signature_collection_green_with_only_the_two_variables,
    newman_fails_the_aws_signature_collection_with_a_wrong_secret,
    the_endpoint_serves_the_aws_signature_variant_on_request,
);

/// `keyport postman export`: stdout without `--out`, the file with it; the
/// database URL points nowhere, so this also shows it never connects.
#[tokio::test]
async fn the_cli_exports_without_a_database() {
    let issuer = "https://keyport.example.com";
    let printed: Value = serde_json::from_str(&keyport(&["postman", "export"], issuer).await)
        .expect("stdout is one JSON document");
    assert_eq!(printed["info"]["schema"], SCHEMA);
    assert_eq!(variable(&printed, "base_url"), issuer);

    let scratch = Scratch::new();
    let file = scratch.path("out.json");
    let summary = keyport(
        &[
            "--json",
            "postman",
            "export",
            "--out",
            file.to_str().unwrap(),
        ],
        issuer,
    )
    .await;
    let summary: Value = serde_json::from_str(summary.trim()).expect("--json summary");
    assert_eq!(summary["out"], file.to_str().unwrap());
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("the written file"))
            .expect("the file is JSON");
    assert_eq!(written, printed);

    let help = keyport(&["postman", "export", "--help"], issuer).await;
    assert!(help.contains("--out <FILE>"), "{help}");
    assert!(help.contains("Postman"), "{help}");
}
