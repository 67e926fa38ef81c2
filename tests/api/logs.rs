//! The real binary, logging at debug level through a full workflow: no
//! secret, password or token it handled may appear in what it printed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{Backend, ServedBinary, TestDatabase};

fn keyport(db: &TestDatabase) -> Command {
    let mut command = ServedBinary::command(&db.url, 1);
    command
        .env("KEYPORT_ALLOW_API_KEY_QUERY", "true")
        .env("KEYPORT_LAST_USED_FLUSH_SECONDS", "1")
        .env("RUST_LOG", "debug");
    command
}

/// Runs a CLI command; returns stdout, and appends stderr to `log`.
fn cli(db: &TestDatabase, args: &[&str], stdin: Option<&str>, log: &Mutex<String>) -> String {
    let mut child = keyport(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keyport");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    log.lock()
        .unwrap()
        .push_str(&String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "keyport {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts `keyport serve`; its log lines are appended to `log`.
fn serve(db: &TestDatabase, log: Arc<Mutex<String>>) -> ServedBinary {
    ServedBinary::start(keyport(db), log)
}

async fn no_secret_password_or_token_reaches_the_logs(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let log = Arc::new(Mutex::new(String::new()));
    let password = "log-canary passphrase 7f3a";
    let wrong_password = "wrong-canary passphrase 9c1d";

    // As an operator does: only `serve` and `migrate` create a database.
    cli(&db, &["migrate"], None, &log);
    cli(&db, &["tenant", "create", "Acme"], None, &log);
    cli(
        &db,
        &[
            "user",
            "create",
            "--tenant",
            "Acme",
            "--email",
            "ana@acme.io",
            "--role",
            "admin",
            "--permissions",
            "reports:read,webhooks:write,keys:manage",
        ],
        None,
        &log,
    );
    cli(
        &db,
        &["user", "set-password", "ana@acme.io"],
        Some(&format!("{password}\n")),
        &log,
    );
    let key: Value = serde_json::from_str(&cli(
        &db,
        &[
            "--json",
            "key",
            "create",
            "--user",
            "ana@acme.io",
            "--name",
            "canary",
        ],
        None,
        &log,
    ))
    .unwrap();
    let client_id = key["client_id"].as_str().unwrap().to_owned();
    let secret = key["client_secret"].as_str().unwrap().to_owned();
    let wrong_secret = keyport::domain::ClientSecret::generate()
        .expose()
        .to_owned();

    let server = serve(&db, Arc::clone(&log));
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();

    let token: Value =
        client_credentials(&http, format!("{base}/oauth/token"), &client_id, &secret)
            .sent_json()
            .await;
    let access_token = token["access_token"].as_str().expect("a token").to_owned();
    tokens.push(access_token.clone());
    let posted: Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ])
        .sent_json()
        .await;
    tokens.push(posted["access_token"].as_str().unwrap().to_owned());
    client_credentials(
        &http,
        format!("{base}/oauth/token"),
        &client_id,
        &wrong_secret,
    )
    .sent()
    .await;
    http.post(format!("{base}/api/v1/webhooks/orders"))
        .bearer_auth(&access_token)
        .json(&json!({"n": 1}))
        .sent()
        .await;
    http.get(format!("{base}/api/v1/reports/orders"))
        .header("x-api-key", &secret)
        .sent()
        .await;
    http.get(format!("{base}/api/v1/reports/orders?api_key={secret}"))
        .sent()
        .await;
    http.get(format!(
        "{base}/api/v1/reports/orders?api_key={wrong_secret}"
    ))
    .sent()
    .await;
    http.post(format!("{base}/api/v1/session"))
        .json(&json!({"email": "ana@acme.io", "password": wrong_password}))
        .sent()
        .await;
    let session: Value = http
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"email": "ana@acme.io", "password": password}))
        .sent_json()
        .await;
    let session_token = session["session_token"]
        .as_str()
        .expect("a session")
        .to_owned();
    let created: Value = http
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(&session_token)
        .json(&json!({"name": "second canary"}))
        .sent_json()
        .await;
    let second_secret = created["client_secret"]
        .as_str()
        .expect("a second key")
        .to_owned();
    http.post(format!("{base}/oauth/introspect"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", access_token.as_str())])
        .sent()
        .await;
    http.post(format!("{base}/oauth/revoke"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", access_token.as_str())])
        .sent()
        .await;
    // Careless requests: a secret, a session token or a JWT pasted into a
    // path. Neither the log line nor the answer may carry it.
    let careless = [
        (reqwest::Method::GET, format!("/api/v1/keys/{secret}")),
        (reqwest::Method::POST, format!("/oauth/token/{secret}")),
        (
            reqwest::Method::POST,
            format!("/api/v1/users/{session_token}/unlock"),
        ),
        (reqwest::Method::GET, format!("/api/v1/keys/{access_token}")),
        (
            reqwest::Method::DELETE,
            format!("/oauth/token/{access_token}"),
        ),
    ];
    for (method, path) in careless {
        let answer = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&session_token)
            .sent()
            .await;
        let status = answer.status();
        let body = answer.text().await.unwrap();
        for canary in [&secret, &session_token, &access_token] {
            assert!(
                !body.contains(canary.as_str()),
                "{method} {path} echoed a credential ({status}): {body}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(server);

    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("POST /oauth/token 200")
            && log.contains(&format!("credential_id={client_id}")),
        "the request log is there:\n{log}"
    );
    let mut canaries = vec![
        ("secret", secret.clone()),
        ("second secret", second_secret),
        ("wrong secret", wrong_secret),
        ("password", password.to_owned()),
        ("wrong password", wrong_password.to_owned()),
        ("session token", session_token),
    ];
    for token in tokens {
        canaries.push(("access token", token));
    }
    for (what, canary) in canaries {
        assert!(!log.contains(&canary), "the {what} appears in the logs");
        // Even a fragment would be a leak: check the random middle part.
        let fragment = &canary[canary.len() / 3..canary.len() / 3 + 12];
        assert!(
            !log.contains(fragment),
            "part of the {what} appears in the logs"
        );
    }
}

/// Bound beyond loopback without an issuer, `serve` says what to set: the
/// discovery document would otherwise name an address clients cannot use.
async fn serving_beyond_loopback_without_an_issuer_warns_what_to_set(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let log = Arc::new(Mutex::new(String::new()));
    let mut command = keyport(&db);
    command.env("KEYPORT_BIND", "0.0.0.0:0");
    let server = ServedBinary::start(command, Arc::clone(&log));
    drop(server);
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("KEYPORT_ISSUER") && log.contains("no issuer is configured"),
        "{log}"
    );

    // On loopback, no warning.
    let log = Arc::new(Mutex::new(String::new()));
    let server = serve(&db, Arc::clone(&log));
    drop(server);
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("no issuer is configured"), "{log}");
}

crate::on_both_backends!(
    no_secret_password_or_token_reaches_the_logs,
    serving_beyond_loopback_without_an_issuer_warns_what_to_set,
);
