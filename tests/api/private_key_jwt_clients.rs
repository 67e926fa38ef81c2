//! `private_key_jwt` with clients nobody wrote for Keyport: Python's
//! Authlib (`PrivateKeyJWT`, `tests/clients/private_key_jwt_client.py`) and
//! Node's openid-client 6 (`client.PrivateKeyJwt`,
//! `tests/clients/private_key_jwt_openid_client.mjs`) each obtain tokens with
//! an assertion signed by a registered key; no secret is involved.

use std::path::PathBuf;
use std::time::Duration;

use keyport::domain::Principal;
use keyport::service::public_keys;
use keyport::tokens::{SigningAlgorithm, SigningKey};
use serde_json::json;

use crate::helpers::{Backend, READ_AND_PUSH, TestApp, findings, spawn_app};

/// A client whose key holds one registered P-256 public key (`kid`
/// "erp-1"): its client ID and the private key's PKCS#8 PEM.
async fn client_with_private_key(app: &TestApp) -> (String, String) {
    let integration = app.integration("admin", READ_AND_PUSH).await;
    let (key, pem) = SigningKey::generate(SigningAlgorithm::Es256).expect("a key pair");
    let mut jwk = serde_json::to_value(&key.jwk).expect("a JWK");
    jwk["kid"] = json!("erp-1");
    public_keys::add_public_key(
        &app.service(),
        &Principal::operator(),
        integration.client_id(),
        &jwk,
    )
    .await
    .expect("registered");
    (integration.client_id().to_owned(), pem)
}

async fn authlib_private_key_jwt_gets_a_token_and_its_hour_long_default_is_refused(
    backend: Backend,
) {
    let python = crate::python_client::python_interpreter();
    let app = spawn_app(backend).await;
    let (client_id, pem) = client_with_private_key(&app).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/private_key_jwt_client.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(script)
            .args(["--base-url", &format!("http://127.0.0.1:{}", app.port)])
            .args(["--client-id", &client_id])
            .args(["--kid", "erp-1"])
            .args(["--alg", "ES256"])
            // The private key goes through the environment.
            .env("KEYPORT_CLIENT_PRIVATE_KEY", &pem)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the Authlib client finished within 120 s")
    .expect("run the Authlib client");
    let findings = findings(output, "the Authlib private_key_jwt client");
    assert_eq!(findings["ok"], true, "{findings:#}");
    for check in ["default_lifetime_refused", "token_1", "token_2", "whoami"] {
        assert!(
            findings["checks"]
                .as_array()
                .unwrap()
                .contains(&json!(check)),
            "{check}: {findings:#}"
        );
    }
    assert_eq!(findings["default_error"], "invalid_client", "{findings:#}");
    assert_eq!(findings["whoami_client_id"], client_id.as_str());
}

async fn openid_client_private_key_jwt_gets_introspects_and_revokes_a_token(backend: Backend) {
    let node = crate::openid_client::node();
    let app = spawn_app(backend).await;
    let (client_id, pem) = client_with_private_key(&app).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/private_key_jwt_openid_client.mjs");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&node)
            .arg(script)
            .arg(&app.settings.tokens.issuer)
            .arg(&client_id)
            .arg("erp-1")
            .env("KEYPORT_CLIENT_PRIVATE_KEY", &pem)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the openid-client script finished within 60 s")
    .expect("run node");
    let findings = findings(output, "the openid-client private_key_jwt script");
    assert!(
        findings["auth_methods"]
            .as_array()
            .unwrap()
            .contains(&json!("private_key_jwt")),
        "{findings:#}"
    );
    assert_eq!(findings["first"]["has_token"], true, "{findings:#}");
    assert_eq!(findings["first"]["token_type"], "bearer", "{findings:#}");
    assert_eq!(findings["second"]["scope"], "reports:read", "{findings:#}");
    assert_eq!(findings["introspection"]["active"], true, "{findings:#}");
    assert_eq!(findings["introspection"]["client_id"], client_id.as_str());
    assert_eq!(
        findings["after_revocation"]["active"], false,
        "{findings:#}"
    );
    assert_eq!(findings["unregistered"]["refused"], true, "{findings:#}");
    assert_eq!(
        findings["unregistered"]["error"], "invalid_client",
        "{findings:#}"
    );
}

crate::on_both_backends!(
    authlib_private_key_jwt_gets_a_token_and_its_hour_long_default_is_refused,
    openid_client_private_key_jwt_gets_introspects_and_revokes_a_token,
);
