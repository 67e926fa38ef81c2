//! openid-client 6 (Node's most used OAuth client; `tests/clients/openid_client.mjs`)
//! against a real server: it discovers Keyport, takes a client-credentials
//! token, and with a wrong secret learns `invalid_client` from the
//! `WWW-Authenticate` challenge, which it reads before the body. Then the
//! challenge itself, and what `POST /oauth/revoke` answers for credentials
//! that are not access tokens.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, Integration, TestApp, findings, json_body, spawn_app_with_integration,
    spawn_app_with_token, verify_with_jwks,
};

const CHALLENGE: &str = r#"Basic realm="keyport", charset="UTF-8", error="invalid_client", error_description="client authentication failed""#;

/// Node: `KEYPORT_TEST_NODE`, else `node` on the PATH. openid-client comes
/// from `npm ci` (package.json pins it); missing is a failure, never a skip.
pub fn node() -> PathBuf {
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/openid-client");
    assert!(
        installed.exists(),
        "openid-client is not installed: {} does not exist. Run `scripts/test`, which runs \
         `npm ci --no-audit --no-fund` (package.json pins openid-client), or run that npm \
         command in the repository root yourself",
        installed.display()
    );
    std::env::var_os("KEYPORT_TEST_NODE")
        .filter(|n| !n.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// Runs the openid-client script for `client_id`, returning its findings.
async fn run_openid_client(app: &TestApp, client_id: &str, secret: &str, wrong: &str) -> Value {
    let node = node();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openid_client.mjs");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&node)
            .arg(script)
            .arg(&app.settings.tokens.issuer)
            .arg(client_id)
            // Secrets go through the environment, not the command line.
            .env("KEYPORT_CLIENT_SECRET", secret)
            .env("KEYPORT_WRONG_SECRET", wrong)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the openid-client script finished within 60 s")
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): openid-client 6 needs Node >= 20.19; set KEYPORT_TEST_NODE",
            node.display()
        )
    });
    findings(output, "the openid-client script")
}

/// Verifies `token` with only the published JWKS, as a resource server would.
async fn verified_claims(app: &TestApp, token: &str) -> Value {
    let jwks: JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("a JWK set");
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    verify_with_jwks(&jwks, token, app)
}

async fn openid_client_gets_a_token_and_learns_invalid_client_from_a_wrong_secret(
    backend: Backend,
) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    // A real, well-formed secret that is not this key's.
    let other_key = app.key(&integration.user.email, None).await;

    let findings = run_openid_client(
        &app,
        integration.client_id(),
        integration.secret(),
        other_key.secret.expose(),
    )
    .await;

    assert_eq!(
        findings["issuer"],
        app.settings.tokens.issuer.as_str(),
        "{findings:#}"
    );
    for method in ["token_post", "token_basic"] {
        let token = &findings[method];
        // oauth4webapi lowercases token_type.
        assert_eq!(token["token_type"], "bearer", "{method}: {findings:#}");
        assert_eq!(
            token["expires_in"],
            app.settings.tokens.default_ttl.as_secs(),
            "{method}: {findings:#}"
        );
        assert_eq!(token["scope"], "reports:read", "{method}: {findings:#}");
        let access_token = token["access_token"].as_str().expect("access_token");
        let claims = verified_claims(&app, access_token).await;
        assert_eq!(claims["client_id"], integration.client_id(), "{claims:#}");
        assert_eq!(claims["sub"], integration.user.id.as_str(), "{claims:#}");
        assert_eq!(
            claims["tenant_id"],
            integration.tenant.id.as_str(),
            "{claims:#}"
        );
        assert_eq!(claims["scope"], "reports:read", "{claims:#}");
        assert_eq!(
            app.get_as("/api/v1/whoami", access_token).await.status(),
            200,
            "{method}: the token works"
        );
    }
    assert_eq!(
        findings["introspection"],
        json!({ "active": true, "client_id": integration.client_id() }),
        "{findings:#}"
    );

    // openid-client reads the challenge before the body and throws
    // WWWAuthenticateChallengeError, whose only account of the failure is
    // the parsed challenge in `cause`: without `error` there, an integrator
    // sees "server responded with a challenge" and no reason.
    let errors = findings["wrong_secret_errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no wrong-secret findings: {findings:#}"));
    assert_eq!(errors.len(), 4, "{findings:#}");
    for (call, error) in errors {
        assert_eq!(error["refused"], true, "{call}: {findings:#}");
        assert_eq!(
            error["name"], "WWWAuthenticateChallengeError",
            "{call}: {findings:#}"
        );
        assert_eq!(
            error["code"], "OAUTH_WWW_AUTHENTICATE_CHALLENGE",
            "{call}: {findings:#}"
        );
        assert_eq!(error["status"], 401, "{call}: {findings:#}");
        assert_eq!(
            error["cause"],
            json!([{
                "scheme": "basic",
                "parameters": {
                    "realm": "keyport",
                    "charset": "UTF-8",
                    "error": "invalid_client",
                    "error_description": "client authentication failed",
                },
            }]),
            "{call}: {findings:#}"
        );
    }
    let printed = findings.to_string();
    assert!(
        !printed.contains(other_key.secret.expose()),
        "no secret in what openid-client reported"
    );
}

/// A request to an OAuth endpoint authenticated with `client_id:secret`.
async fn oauth_call(
    app: &TestApp,
    path: &str,
    client_id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .basic_auth(client_id, Some(secret))
        .form(form)
        .sent()
        .await
}

fn www_authenticate(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("an ASCII challenge"))
        .unwrap_or_default()
}

async fn a_refused_client_authentication_names_its_error_in_the_basic_challenge(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let other_key = app.key(&integration.user.email, None).await;
    let token = app.token_for(&integration).await;

    for (path, form) in [
        ("/oauth/token", [("grant_type", "client_credentials")]),
        ("/oauth/introspect", [("token", token.as_str())]),
        ("/oauth/revoke", [("token", token.as_str())]),
    ] {
        let response = oauth_call(
            &app,
            path,
            integration.client_id(),
            other_key.secret.expose(),
            &form,
        )
        .await;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(www_authenticate(&response), CHALLENGE, "{path}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_client", "{path}: {body}");
        assert_eq!(
            body["error_description"], "client authentication failed",
            "{path}: {body}"
        );
    }

    // No credentials at all: the challenge says what is missing.
    let anonymous = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        www_authenticate(&anonymous),
        r#"Basic realm="keyport", charset="UTF-8", error="invalid_client", error_description="client authentication is required (HTTP Basic, client_id and client_secret, or a client assertion)""#
    );

    // The right secret still gets a token, with no challenge.
    let granted = app
        .request_token(integration.client_id(), integration.secret())
        .await;
    assert_eq!(granted.status(), 200);
    assert!(granted.headers().get("www-authenticate").is_none());
}

// --- POST /oauth/revoke with a credential that is not an access token -------

async fn revoke(app: &TestApp, caller: &Integration, token: &str) -> (u16, Value) {
    let response = oauth_call(
        app,
        "/oauth/revoke",
        caller.client_id(),
        caller.secret(),
        &[("token", token), ("token_type_hint", "access_token")],
    )
    .await;
    let status = response.status().as_u16();
    if status == 400 {
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

async fn revoking_a_key_secret_or_a_session_answers_unsupported_token_type_and_ends_neither(
    backend: Backend,
) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let session = app
        .session_for(&integration.user.email, "a long enough passphrase")
        .await;
    // Another tenant's key: refused the same way, so the answer tells
    // nothing about whose secret, or whether it is valid at all.
    let stranger = app.integration("admin", "reports:read").await;

    for secret in [
        integration.secret(),
        stranger.secret(),
        "kps_not_even_well_formed",
    ] {
        let (status, body) = revoke(&app, &integration, secret).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "unsupported_token_type", "{body}");
        let description = body["error_description"].as_str().expect("a description");
        assert!(
            description.contains("POST /api/v1/keys/{id}/revoke")
                && description.contains("keyport key revoke"),
            "says how to revoke a key: {description}"
        );
        assert!(
            !body.to_string().contains(secret),
            "the secret is not echoed"
        );
    }

    let (status, body) = revoke(&app, &integration, &session).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unsupported_token_type", "{body}");
    let description = body["error_description"].as_str().expect("a description");
    assert!(
        description.contains("DELETE /api/v1/session"),
        "says how to end a session: {description}"
    );
    assert!(
        !body.to_string().contains(&session),
        "the session is not echoed"
    );

    // Only an authenticated caller learns what a token is.
    let anonymous = app
        .anonymous_token_call("/oauth/revoke", integration.secret())
        .await;
    assert_eq!(anonymous.status(), 401);

    // Nothing was revoked: the key still gets tokens, the session still works.
    assert_eq!(
        app.token_status(integration.client_id(), integration.secret())
            .await,
        200,
        "the key still works"
    );
    assert_eq!(
        app.get_as("/api/v1/whoami", integration.secret())
            .await
            .status(),
        200,
        "the key, presented itself, still works"
    );
    assert_eq!(
        app.get_as("/api/v1/whoami", &session).await.status(),
        200,
        "the session still works"
    );
    assert_eq!(
        app.token_status(stranger.client_id(), stranger.secret())
            .await,
        200,
        "the other tenant's key still works"
    );
}

async fn revoking_an_access_token_still_works_and_garbage_still_answers_200(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", "reports:read").await;
    assert_eq!(app.get_as("/api/v1/whoami", &token).await.status(), 200);

    assert_eq!(revoke(&app, &integration, &token).await, (200, Value::Null));
    assert_eq!(
        app.get_as("/api/v1/whoami", &token).await.status(),
        401,
        "the revoked token is refused"
    );

    // RFC 7009 §2.2: an invalid token answers 200, as before.
    for garbage in ["garbage", "kpc_not_a_token", "eyJhbGciOi.not.a.jwt"] {
        assert_eq!(
            revoke(&app, &integration, garbage).await,
            (200, Value::Null),
            "{garbage}"
        );
    }
}

/// Runs `tests/clients/openid_client_dpop.mjs` (openid-client with DPoP)
/// for `client_id`, returning its findings.
async fn run_openid_client_dpop(app: &TestApp, client_id: &str, secret: &str) -> Value {
    let node = node();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openid_client_dpop.mjs");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&node)
            .arg(script)
            .arg(&app.settings.tokens.issuer)
            .arg(client_id)
            .env("KEYPORT_CLIENT_SECRET", secret)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the openid-client DPoP script finished within 60 s")
    .unwrap_or_else(|e| panic!("cannot run {} ({e})", node.display()));
    findings(output, "the openid-client DPoP script")
}

/// What openid-client found with DPoP: a bound token (`cnf.jkt` its own
/// key's thumbprint), whoami twice through it, the token refused as Bearer.
fn assert_dpop_findings(findings: &Value, integration: &Integration) {
    // openid-client hands `token_type` over in lower case.
    assert_eq!(findings["token_type"], "dpop", "{findings:#}");
    assert_eq!(
        findings["cnf_jkt"], findings["client_thumbprint"],
        "{findings:#}"
    );
    assert_eq!(findings["whoami_status"], 200, "{findings:#}");
    assert_eq!(
        findings["whoami_client_id"],
        integration.client_id(),
        "{findings:#}"
    );
    assert_eq!(findings["second_whoami_status"], 200, "{findings:#}");
    assert_eq!(findings["bearer"]["refused"], true, "{findings:#}");
    assert_eq!(findings["bearer"]["status"], 401, "{findings:#}");
}

async fn openid_client_gets_a_dpop_bound_token_and_calls_whoami_with_it(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let findings =
        run_openid_client_dpop(&app, integration.client_id(), integration.secret()).await;
    assert_dpop_findings(&findings, &integration);
}

async fn openid_client_retries_with_the_server_dpop_nonce_by_itself(backend: Backend) {
    let app =
        crate::helpers::spawn_app_with(backend, &[("KEYPORT_DPOP_REQUIRE_NONCE", "true")]).await;
    let integration = app.integration("member", "reports:read").await;
    // No proof without the nonce passes: success means it retried with it.
    let findings =
        run_openid_client_dpop(&app, integration.client_id(), integration.secret()).await;
    assert_dpop_findings(&findings, &integration);
}

crate::on_both_backends!(
    openid_client_gets_a_dpop_bound_token_and_calls_whoami_with_it,
    openid_client_retries_with_the_server_dpop_nonce_by_itself,
    openid_client_gets_a_token_and_learns_invalid_client_from_a_wrong_secret,
    a_refused_client_authentication_names_its_error_in_the_basic_challenge,
    revoking_a_key_secret_or_a_session_answers_unsupported_token_type_and_ends_neither,
    revoking_an_access_token_still_works_and_garbage_still_answers_200,
);
