//! An independent client: `tests/clients/python_client.py` uses authlib,
//! PyJWT and requests (libraries nobody wrote for Keyport) to get a token,
//! verify it offline against the JWKS and read a report with it.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, READ_AND_PUSH, findings, json_body, spawn_app_with_integration};

/// The interpreter with the client libraries: `KEYPORT_TEST_PYTHON`, else the
/// project's `.venv`. Missing both is a failure, never a skip.
pub fn python_interpreter() -> PathBuf {
    if let Some(python) = std::env::var_os("KEYPORT_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the independent-client test: {} does not exist and KEYPORT_TEST_PYTHON \
         is not set. Run `scripts/test`, which creates .venv with tests/clients/requirements.txt \
         (or: python3 -m venv .venv && .venv/bin/pip install -r tests/clients/requirements.txt)",
        venv.display()
    );
    venv
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py")
}

async fn an_authlib_and_pyjwt_client_gets_verifies_and_uses_a_token(backend: Backend) {
    let python = python_interpreter();
    let (app, integration) = spawn_app_with_integration(backend, "admin", READ_AND_PUSH).await;
    // A second key of the same owner: its secret is well-formed and real, but
    // not the first key's.
    let other_key = app.key(&integration.user.email, None).await;

    let token = app.token_for(&integration).await;
    let collection = "invoices";
    let marker = Uuid::new_v4().to_string();
    let pushed = app
        .push(
            &token,
            collection,
            &json!({ "marker": marker, "amount": 42 }),
            None,
        )
        .await;
    assert_eq!(pushed.status(), 201, "the setup push failed");
    let pushed = json_body(pushed).await;
    let record_id = pushed["ids"][0]
        .as_str()
        .expect("pushed record id")
        .to_owned();

    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(client_script())
            .args(["--base-url", &format!("http://127.0.0.1:{}", app.port)])
            .args(["--client-id", integration.client_id()])
            .args(["--issuer", &app.settings.tokens.issuer])
            .args(["--audience", &app.settings.tokens.audience])
            .args(["--collection", collection])
            .args(["--record-id", &record_id])
            // Secrets go through the environment, not the command line.
            .env("KEYPORT_CLIENT_SECRET", integration.secret())
            .env("KEYPORT_WRONG_SECRET", other_key.secret.expose())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Python client finished within 120 s")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}); run `scripts/test`, which creates .venv, or set KEYPORT_TEST_PYTHON",
            python.display()
        )
    });
    let findings: Value = findings(output, "the Python client");
    assert_eq!(findings["ok"], true, "{findings:#}");
    assert_eq!(findings["failures"], json!([]), "{findings:#}");

    // What the independent client decoded matches what the server knows.
    assert_eq!(findings["typ"], "at+jwt", "{findings:#}");
    assert_eq!(
        findings["sub"],
        integration.user.id.as_str(),
        "{findings:#}"
    );
    assert_eq!(
        findings["post_sub"],
        integration.user.id.as_str(),
        "{findings:#}"
    );
    assert_eq!(
        findings["client_id"],
        integration.client_id(),
        "{findings:#}"
    );
    assert_eq!(
        findings["post_client_id"],
        integration.client_id(),
        "{findings:#}"
    );
    assert_eq!(
        findings["tenant_id"],
        integration.tenant.id.as_str(),
        "{findings:#}"
    );
    assert_eq!(
        findings["iss"],
        app.settings.tokens.issuer.as_str(),
        "{findings:#}"
    );
    assert_eq!(
        findings["aud"],
        app.settings.tokens.audience.as_str(),
        "{findings:#}"
    );
    assert_eq!(
        findings["scope"], "audit:read reports:read tenant:manage users:manage webhooks:write",
        "{findings:#}"
    );
    assert_eq!(findings["token_type"], "Bearer", "{findings:#}");
    assert_eq!(
        findings["expires_in"],
        app.settings.tokens.default_ttl.as_secs(),
        "{findings:#}"
    );
    assert_eq!(
        findings["exp"].as_i64().expect("exp") - findings["iat"].as_i64().expect("iat"),
        app.settings.tokens.default_ttl.as_secs() as i64,
        "{findings:#}"
    );
    assert!(
        findings["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{findings:#}"
    );
    assert_eq!(findings["report_status"], 200, "{findings:#}");
    assert_eq!(findings["report_status_without_token"], 401, "{findings:#}");
    assert_eq!(findings["record_ids"], json!([record_id]), "{findings:#}");
    assert_eq!(
        findings["records"][0]["marker"],
        marker.as_str(),
        "{findings:#}"
    );

    let errors = findings["wrong_secret_errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no wrong-secret findings: {findings:#}"));
    assert_eq!(
        errors.len(),
        4,
        "both wrong secrets, both methods: {findings:#}"
    );
    for (name, error) in errors {
        assert_eq!(error, "invalid_client", "{name}: {findings:#}");
    }

    // Every check the script runs was reported as passed.
    let checks: Vec<&str> = findings["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in [
        "signature_verified",
        "typ_is_at_jwt",
        "claim_client_id_present",
        "claim_scope_present",
        "claim_tenant_id_present",
        "claim_jti_present",
        "tampered_signature_refused",
        "wrong_audience_refused",
        "pushed_record_listed",
        "client_secret_post_token_issued",
    ] {
        assert!(
            checks.contains(&expected),
            "check `{expected}` did not pass: {findings:#}"
        );
    }
}

crate::on_both_backends!(an_authlib_and_pyjwt_client_gets_verifies_and_uses_a_token);
