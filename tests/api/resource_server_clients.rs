//! Resource servers in Python (PyJWT) and Node (jose) validate Keyport's
//! tokens exactly as the book's guide shows: the scripts run here are the
//! ones the guide prints, and they accept a real token and refuse a
//! tampered one, one for another audience, and one from another issuer.

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::{Backend, spawn_app_with_integration};

fn client(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs `program script issuer audience token`: (exit code 0?, stdout, stderr).
fn validate(
    program: &PathBuf,
    script: &str,
    issuer: &str,
    audience: &str,
    token: &str,
) -> (bool, String, String) {
    let output = Command::new(program)
        .arg(client(script))
        .args([issuer, audience, token])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the validating script");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn python_and_node_resource_servers_accept_keyport_tokens_and_refuse_forgeries(
    backend: Backend,
) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let token = app
        .narrowed_token(integration.client_id(), integration.secret(), None)
        .await;
    let issuer = app.settings.tokens.issuer.clone();
    let audience = app.settings.tokens.audience.clone();
    // The last character of a signature carries padding bits in base64url:
    // change one in the middle instead.
    let mut tampered = token.clone().into_bytes();
    let at = token.rfind('.').unwrap() + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let python = crate::python_client::python_interpreter();
    let node = crate::openid_client::node();
    for (program, script) in [
        (&python, "validate_token.py"),
        (&node, "validate_token.mjs"),
    ] {
        let (ok, stdout, stderr) = validate(program, script, &issuer, &audience, &token);
        assert!(ok, "{script} refused a good token: {stderr}");
        let claims: serde_json::Value = serde_json::from_str(stdout.trim()).expect("claims");
        assert_eq!(claims["sub"], integration.user.id, "{script}: {claims}");
        for (what, issuer, audience, token) in [
            (
                "a tampered signature",
                issuer.as_str(),
                audience.as_str(),
                tampered.as_str(),
            ),
            (
                "another audience",
                issuer.as_str(),
                "another-api",
                token.as_str(),
            ),
        ] {
            let (ok, _, stderr) = validate(program, script, issuer, audience, token);
            assert!(!ok, "{script} accepted {what}");
            assert!(stderr.contains("refused"), "{script}, {what}: {stderr}");
        }
        // Another issuer's name for the same keys.
        let elsewhere = format!("{issuer}/elsewhere");
        let (ok, _, _) = validate(program, script, &elsewhere, &audience, &token);
        assert!(!ok, "{script} accepted a token from another issuer");
    }
}

/// The guide prints the scripts this test runs, byte for byte.
#[test]
fn the_resource_server_guide_prints_the_scripts_the_tests_run() {
    let guide = include_str!("../../docs/src/guides/resource-servers.md");
    for (script, text) in [
        (
            "validate_token.py",
            include_str!("../clients/validate_token.py"),
        ),
        (
            "validate_token.mjs",
            include_str!("../clients/validate_token.mjs"),
        ),
    ] {
        assert!(
            guide.contains(text.trim_end()),
            "docs/src/guides/resource-servers.md does not print tests/clients/{script} as it is"
        );
    }
}

crate::on_both_backends!(
    python_and_node_resource_servers_accept_keyport_tokens_and_refuse_forgeries
);
