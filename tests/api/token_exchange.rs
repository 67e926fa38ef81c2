//! RFC 8693 token exchange: Keyport access tokens exchanged by a key that
//! may (narrowing only, `act` for actors), and trusted issuers' JWTs (made
//! and signed by PyJWT in `tests/clients/external_issuer.py`, their JWKS
//! served over real HTTP by this test) mapped to users by rules. Each MUST
//! of the RFC has a test naming its section.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, TestApp, json_answer, json_body, spawn_app_with, status_and_json,
};
use crate::python_client::python_interpreter;

pub(crate) const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const OTHER_API: &str = "https://billing.example.com";

pub(crate) fn overrides() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYPORT_EXCHANGE_AUDIENCES", OTHER_API),
        ("KEYPORT_EXCHANGE_ALLOW_HTTP", "true"),
        ("KEYPORT_EXCHANGE_ALLOW_PRIVATE_TARGETS", "true"),
        ("KEYPORT_EXCHANGE_JWKS_MIN_REFRESH_SECONDS", "0"),
    ]
}

pub(crate) async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, &overrides()).await
}

/// The claims of a JWT, unverified (the tests read what Keyport signed).
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// A company with an admin, a service key that may exchange and a user's
/// key whose token is exchanged.
pub(crate) struct Company {
    pub admin_session: String,
    pub exchanger: (String, String),
    pub user_key: (String, String),
    pub user_id: String,
    pub user_email: String,
}

pub(crate) async fn company(app: &TestApp) -> Company {
    let suffix = Uuid::new_v4().simple().to_string();
    let tenant = app.tenant(&format!("exchange-{suffix}")).await;
    let admin_email = format!("admin-{suffix}@example.com");
    app.user(&tenant, &admin_email, "admin", "keys:manage")
        .await;
    let service_email = format!("service-{suffix}@example.com");
    app.user(
        &tenant,
        &service_email,
        "member",
        "reports:read tokens:exchange",
    )
    .await;
    let user_email = format!("user-{suffix}@example.com");
    let user = app
        .user(&tenant, &user_email, "member", READ_AND_PUSH)
        .await;
    let exchanger = app.key(&service_email, None).await;
    let user_key = app.key(&user_email, None).await;
    Company {
        admin_session: app
            .session_for(&admin_email, "a long enough password 1")
            .await,
        exchanger: (
            exchanger.key.client_id.clone(),
            exchanger.secret.expose().to_owned(),
        ),
        user_key: (
            user_key.key.client_id.clone(),
            user_key.secret.expose().to_owned(),
        ),
        user_id: user.id.clone(),
        user_email,
    }
}

pub(crate) async fn exchange(
    app: &TestApp,
    client: Option<&(String, String)>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app.client.post(app.url("/oauth/token"));
    if let Some((id, secret)) = client {
        request = request.basic_auth(id, Some(secret));
    }
    let mut body = vec![("grant_type", EXCHANGE)];
    body.extend_from_slice(form);
    let response = request.form(&body).sent().await;
    status_and_json(response).await
}

/// An exchange of `token`, a JWT, as `client` (or nobody).
pub(crate) async fn exchange_jwt(
    app: &TestApp,
    client: Option<&(String, String)>,
    token: &str,
) -> (u16, Value) {
    exchange(
        app,
        client,
        &[("subject_token", token), ("subject_token_type", JWT)],
    )
    .await
}

/// The answer of an exchange refused as RFC 6749 §5.2 `invalid_grant`.
pub(crate) fn assert_invalid_grant(status: u16, body: &Value) {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

async fn user_token(app: &TestApp, company: &Company) -> String {
    app.narrowed_token(&company.user_key.0, &company.user_key.1, None)
        .await
}

/// RFC 8693 §2.1, §2.2.1: a Keyport token exchanged for another audience,
/// narrowed; the answer names `issued_token_type`.
async fn a_keyport_token_is_exchanged_for_a_narrower_token_for_another_audience(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let subject = user_token(&app, &company).await;
    let (status, body) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("scope", "reports:read"),
            ("resource", OTHER_API),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "reports:read");
    let issued = claims(body["access_token"].as_str().unwrap());
    let original = claims(&subject);
    assert_eq!(issued["aud"], OTHER_API);
    assert_eq!(issued["sub"], company.user_id);
    assert_eq!(issued["sub"], original["sub"]);
    assert_eq!(issued["tenant_id"], original["tenant_id"]);
    assert!(issued["exp"].as_i64() <= original["exp"].as_i64());
    assert!(issued.get("act").is_none(), "no actor, no act: {issued}");

    // Without a resource, the token is for Keyport itself and works here.
    let (status, body) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let whoami = app
        .get_as("/api/v1/whoami", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(whoami.status(), 200);
    let whoami = json_body(whoami).await;
    assert_eq!(whoami["sub"], company.user_id, "{whoami}");
}

/// RFC 8693 §2.2.2 and §5 (the new token may only narrow): wider scopes are
/// `invalid_scope`; the lifetime never passes the subject token's `exp`.
async fn an_exchange_never_widens_scope_or_lifetime(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let subject = app
        .narrowed_token(
            &company.user_key.0,
            &company.user_key.1,
            Some("reports:read"),
        )
        .await;
    for wider in [
        "webhooks:write",
        "reports:read keys:manage",
        "tenant:manage",
    ] {
        let (status, body) = exchange(
            &app,
            Some(&company.exchanger),
            &[
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
                ("scope", wider),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope")),
            "{wider}: {body}"
        );
    }
    // A subject token with 60 s left: the exchanged one ends no later.
    let short_key = app
        .key_with(
            &company.user_email,
            None,
            None,
            Some(std::time::Duration::from_secs(60)),
        )
        .await;
    let short = app.token_for_key(&short_key).await;
    let (status, body) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &short),
            ("subject_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_in"].as_i64().unwrap() <= 60, "{body}");
    assert!(
        claims(body["access_token"].as_str().unwrap())["exp"].as_i64()
            <= claims(&short)["exp"].as_i64()
    );
}

/// RFC 8693 §4.1: with an actor token the new token carries `act` naming
/// the actor; exchanged again, the earlier actor nests inside.
async fn an_actor_token_becomes_act_and_earlier_actors_nest(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let subject = user_token(&app, &company).await;
    let actor = app
        .narrowed_token(&company.exchanger.0, &company.exchanger.1, None)
        .await;
    let (status, first) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", &actor),
            ("actor_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let first_token = first["access_token"].as_str().unwrap().to_owned();
    let act = &claims(&first_token)["act"];
    assert_eq!(act["sub"], claims(&actor)["sub"], "{act}");
    assert_eq!(act["client_id"], company.exchanger.0);
    assert!(act.get("act").is_none());

    // The delegated token exchanged again, with the user's own token as the
    // next actor: the first actor nests.
    let second_actor = user_token(&app, &company).await;
    let (status, second) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &first_token),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", &second_actor),
            ("actor_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let act = &claims(second["access_token"].as_str().unwrap())["act"];
    assert_eq!(act["sub"], company.user_id, "{act}");
    assert_eq!(act["act"]["client_id"], company.exchanger.0, "{act}");
}

/// What was tried, by which client, with which parameters; the status and
/// error expected.
type RefusalCase<'a> = (
    &'a str,
    Option<&'a (String, String)>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
);

/// RFC 8693 §2.2.2: each refusal with its error code, never a 5xx. The
/// input tried is named in each case.
async fn refusals_carry_the_rfc_error_codes(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let other = company_in_new_tenant(&app).await;
    let subject = user_token(&app, &company).await;
    let foreign = user_token(&app, &other).await;
    let revoked = user_token(&app, &company).await;
    let response = app
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth(&company.user_key.0, Some(&company.user_key.1))
        .form(&[("token", revoked.as_str())])
        .sent()
        .await;
    assert_eq!(response.status(), 200);
    let not_allowed = (company.user_key.0.clone(), company.user_key.1.clone());
    let wrong_secret = (company.exchanger.0.clone(), "kps_wrong".to_owned());
    let cases: Vec<RefusalCase> = vec![
        (
            "no subject_token",
            Some(&company.exchanger),
            vec![("subject_token_type", ACCESS_TOKEN)],
            400,
            "invalid_request",
        ),
        (
            "no subject_token_type",
            Some(&company.exchanger),
            vec![("subject_token", &subject)],
            400,
            "invalid_request",
        ),
        (
            "an unknown subject_token_type",
            Some(&company.exchanger),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", "urn:x:saml2"),
            ],
            400,
            "invalid_request",
        ),
        (
            "actor_token without actor_token_type",
            Some(&company.exchanger),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
                ("actor_token", &subject),
            ],
            400,
            "invalid_request",
        ),
        (
            "actor_token_type without actor_token",
            Some(&company.exchanger),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
                ("actor_token_type", ACCESS_TOKEN),
            ],
            400,
            "invalid_request",
        ),
        (
            "requested_token_type refresh_token",
            Some(&company.exchanger),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:refresh_token",
                ),
            ],
            400,
            "invalid_request",
        ),
        (
            "a subject token that is not a JWT",
            Some(&company.exchanger),
            vec![
                ("subject_token", "not-a-token"),
                ("subject_token_type", ACCESS_TOKEN),
            ],
            400,
            "invalid_grant",
        ),
        (
            "a revoked subject token",
            Some(&company.exchanger),
            vec![
                ("subject_token", &revoked),
                ("subject_token_type", ACCESS_TOKEN),
            ],
            400,
            "invalid_grant",
        ),
        (
            "another company's subject token",
            Some(&company.exchanger),
            vec![
                ("subject_token", &foreign),
                ("subject_token_type", ACCESS_TOKEN),
            ],
            400,
            "invalid_grant",
        ),
        (
            "a garbage actor token",
            Some(&company.exchanger),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
                ("actor_token", "x.y.z"),
                ("actor_token_type", ACCESS_TOKEN),
            ],
            400,
            "invalid_grant",
        ),
        (
            "an audience not configured",
            Some(&company.exchanger),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
                ("audience", "https://evil.example.com"),
            ],
            400,
            "invalid_target",
        ),
        (
            "a key without tokens:exchange",
            Some(&not_allowed),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
            ],
            400,
            "unauthorized_client",
        ),
        (
            "a Keyport token and no client authentication",
            None,
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
            ],
            401,
            "invalid_client",
        ),
        (
            "a wrong client secret",
            Some(&wrong_secret),
            vec![
                ("subject_token", &subject),
                ("subject_token_type", ACCESS_TOKEN),
            ],
            401,
            "invalid_client",
        ),
    ];
    for (what, client, form, status, error) in cases {
        let (got, body) = exchange(&app, client, &form).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{what}: {body}"
        );
    }
    // A subject token whose key was revoked since it was issued.
    let live = user_token(&app, &company).await;
    keyport::service::keys::revoke_key(
        &app.service(),
        &keyport::domain::Principal::operator(),
        &company.user_key.0,
    )
    .await
    .expect("revoke the user's key");
    let (status, body) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &live),
            ("subject_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_invalid_grant(status, &body);
}

async fn company_in_new_tenant(app: &TestApp) -> Company {
    company(app).await
}

// ---------------------------------------------------------------------------
// Trusted issuers
// ---------------------------------------------------------------------------

/// A JWKS served over real HTTP, counting fetches; its document can change.
pub(crate) struct JwksServer {
    pub url: String,
    pub document: Arc<std::sync::Mutex<String>>,
    pub fetches: Arc<AtomicUsize>,
    /// Each request's `traceparent` header, in order (`None` without one).
    pub traceparents: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// While true, requests are read and counted but not answered (an
    /// issuer that hangs); set false to let them through.
    pub hold: tokio::sync::watch::Sender<bool>,
}

pub(crate) async fn serve_jwks(document: &Value) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let shared = Arc::new(std::sync::Mutex::new(document.to_string()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let traceparents = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (doc, count) = (Arc::clone(&shared), Arc::clone(&fetches));
    let seen = Arc::clone(&traceparents);
    let (hold, held) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let doc = Arc::clone(&doc);
            let seen = Arc::clone(&seen);
            let mut held = held.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let mut read = 0;
                while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buffer.len() {
                    match socket.read(&mut buffer[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let head = String::from_utf8_lossy(&buffer[..read]).to_ascii_lowercase();
                let traceparent = head
                    .lines()
                    .find_map(|line| line.strip_prefix("traceparent:"))
                    .map(|value| value.trim().to_owned());
                seen.lock().unwrap().push(traceparent);
                if held.wait_for(|hold| !*hold).await.is_err() {
                    return;
                }
                let body = doc.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    JwksServer {
        url,
        document: shared,
        fetches,
        traceparents,
        hold,
    }
}

/// Runs `external_issuer.py`: the JWKS and the tokens of `spec`.
pub(crate) fn issue(spec: &Value) -> (Value, Vec<String>) {
    let mut child = std::process::Command::new(python_interpreter())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/external_issuer.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run external_issuer.py");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "external_issuer.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("issuer output");
    let tokens = out["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (out["jwks"].clone(), tokens)
}

pub(crate) const CI_ISSUER: &str = "https://token.actions.example.com";
pub(crate) const CI_AUDIENCE: &str = "keyport-acme";
pub(crate) const MAIN_BRANCH: &str = "repo:acme/erp:ref:refs/heads/main";

pub(crate) async fn trust(app: &TestApp, admin: &str, jwks_url: &str) -> Value {
    let response = app
        .api(reqwest::Method::POST, "/api/v1/trusted-issuers", admin)
        .json(&json!({
            "issuer": CI_ISSUER,
            "jwks_url": jwks_url,
            "audience": CI_AUDIENCE,
            "description": "CI deploys"
        }))
        .sent()
        .await;
    json_answer(response, 201).await
}

pub(crate) async fn add_rule(
    app: &TestApp,
    admin: &str,
    issuer_id: &str,
    body: Value,
) -> (u16, Value) {
    app.send_json(
        reqwest::Method::POST,
        &format!("/api/v1/trusted-issuers/{issuer_id}/rules"),
        admin,
        &body,
    )
    .await
}

/// Trusts the CI issuer behind `jwks_url` with one rule: tokens of the
/// main branch act as the company's user with `reports:read`.
pub(crate) async fn trust_main_branch(app: &TestApp, company: &Company, jwks_url: &str) {
    let issuer = trust(app, &company.admin_session, jwks_url).await;
    admit_main_branch(app, company, &issuer).await;
}

/// A rule on the trusted `issuer` admitting the main branch's token as the
/// company's user, for `reports:read`.
pub(crate) async fn admit_main_branch(app: &TestApp, company: &Company, issuer: &Value) {
    let (status, rule) = add_rule(
        app,
        &company.admin_session,
        issuer["id"].as_str().unwrap(),
        json!({"conditions": [{"claim": "sub", "equals": MAIN_BRANCH}], "user": company.user_id, "scopes": "reports:read"}),
    )
    .await;
    assert_eq!(status, 201, "{rule}");
}

/// A CI job's token, with no stored secret anywhere, becomes a Keyport
/// token acting as the rule's user; deleting the rule ends it at re-checks.
async fn a_trusted_issuers_token_is_exchanged_without_any_stored_secret(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [{"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE, "repository_owner": "acme"}}]
    }));
    let server = serve_jwks(&jwks).await;
    let issuer = trust(&app, &company.admin_session, &server.url).await;
    let issuer_id = issuer["id"].as_str().unwrap();
    let (status, rule) = add_rule(
        &app,
        &company.admin_session,
        issuer_id,
        json!({
            "conditions": [
                {"claim": "sub", "matches": "repo:acme/erp:ref:refs/heads/*"},
                {"claim": "repository_owner", "equals": "acme"}
            ],
            "user": company.user_email,
            "scopes": "reports:read",
            "description": "deploys from main"
        }),
    )
    .await;
    assert_eq!(status, 201, "{rule}");

    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let issued = claims(&token);
    assert_eq!(issued["sub"], company.user_id);
    assert_eq!(issued["client_id"], rule["id"]);
    assert_eq!(issued["scope"], "reports:read");

    // It works at Keyport, and introspection says it is active.
    let pull = app.pull(&token, "invoices", "").await;
    assert_eq!(pull.status(), 200);
    let introspect = |token: String| {
        let app = &app;
        let admin_key = company.user_key.clone();
        async move {
            let response = app
                .client
                .post(app.url("/oauth/introspect"))
                .basic_auth(&admin_key.0, Some(&admin_key.1))
                .form(&[("token", token.as_str())])
                .sent()
                .await;
            json_body(response).await
        }
    };
    assert_eq!(introspect(token.clone()).await["active"], true);

    // The exchange is audited with the external subject, never the token.
    let audit = app
        .get_as(
            "/api/v1/audit?action=token.exchange",
            &company.admin_session,
        )
        .await;
    let audit = json_body(audit).await.to_string();
    assert!(audit.contains(MAIN_BRANCH), "{audit}");
    assert!(
        !audit.contains(&tokens[0]),
        "the subject token leaked into the audit trail"
    );

    // Deleting the rule ends the token at every re-check.
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!(
                "/api/v1/trusted-issuers/{issuer_id}/rules/{}",
                rule["id"].as_str().unwrap()
            ),
            &company.admin_session,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(introspect(token.clone()).await["active"], false);
    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_invalid_grant(status, &body);
}

/// Attacks on the external path, each `invalid_grant` (or the named code),
/// never a 5xx.
async fn untrusted_forged_or_unmatched_external_tokens_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let claims_ok = json!({"sub": MAIN_BRANCH, "aud": CI_AUDIENCE});
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [
            {"kid": "k1", "claims": claims_ok},
            {"kid": "k1", "claims": {"sub": "repo:acme/erp:ref:refs/heads/feature", "aud": CI_AUDIENCE}},
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": "someone-else"}},
            {"kid": "k1", "claims": claims_ok, "exp_in": -600},
            {"kid": "k1", "claims": claims_ok, "sign_with": "stranger"},
            {"kid": "k1", "claims": claims_ok, "alg": "HS256"},
            {"kid": "k1", "claims": claims_ok, "alg": "none"},
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE, "iss": "https://evil.example.com"}},
            {"kid": "k9", "claims": claims_ok, "sign_with": "stranger"},
            {"kid": "k1", "claims": {"aud": CI_AUDIENCE}},
            {"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE, "exp": null}},
        ]
    }));
    let server = serve_jwks(&jwks).await;
    trust_main_branch(&app, &company, &server.url).await;
    let (status, body) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(status, 200, "the good token must pass: {body}");

    let cases = [
        ("claims that match no rule (another branch)", &tokens[1]),
        ("a token for another audience", &tokens[2]),
        ("an expired token", &tokens[3]),
        (
            "a token signed by a key the issuer does not publish, under its kid",
            &tokens[4],
        ),
        ("HS256, signed with a guessable secret", &tokens[5]),
        ("alg none", &tokens[6]),
        ("an untrusted issuer", &tokens[7]),
        ("an unknown kid", &tokens[8]),
        ("no sub (no condition can hold)", &tokens[9]),
        ("no exp", &tokens[10]),
    ];
    for (what, token) in cases {
        let (status, body) = exchange_jwt(&app, None, token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}: {body}"
        );
    }
    let (status, body) = exchange(
        &app,
        None,
        &[
            ("subject_token", &tokens[0]),
            ("subject_token_type", JWT),
            ("scope", "webhooks:write"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "widening past the rule: {body}"
    );

    // A key of another company that authenticates only tries its own
    // company's rules.
    let other = company_in_new_tenant(&app).await;
    let (status, body) = exchange(
        &app,
        Some(&(other.exchanger.0.clone(), other.exchanger.1.clone())),
        &[("subject_token", &tokens[0]), ("subject_token_type", JWT)],
    )
    .await;
    assert_invalid_grant(status, &body);
}

/// The issuer rotates: a token with a new `kid` makes Keyport fetch the
/// JWKS again, but an unknown kid does not refetch more often than the
/// configured interval.
async fn a_new_kid_refetches_the_jwks_but_never_more_often_than_allowed(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("KEYPORT_EXCHANGE_ALLOW_HTTP", "true"),
            ("KEYPORT_EXCHANGE_ALLOW_PRIVATE_TARGETS", "true"),
            ("KEYPORT_EXCHANGE_JWKS_MIN_REFRESH_SECONDS", "3600"),
        ],
    )
    .await;
    let company = company(&app).await;
    let good = json!({"sub": MAIN_BRANCH, "aud": CI_AUDIENCE});
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1", "k2"],
        "tokens": [{"kid": "k1", "claims": good}, {"kid": "k2", "claims": good}, {"kid": "k3", "claims": good, "sign_with": "stranger"}]
    }));
    // At first the JWKS holds only k1.
    let only_k1 = json!({"keys": [jwks["keys"][0].clone()]});
    let server = serve_jwks(&only_k1).await;
    trust_main_branch(&app, &company, &server.url).await;
    let (status, _) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(status, 200);
    let after_first = server.fetches.load(Ordering::SeqCst);
    assert_eq!(after_first, 1);
    // Unknown kids, many times: no new fetch within the interval.
    for _ in 0..5 {
        let (status, _) = exchange_jwt(&app, None, &tokens[2]).await;
        assert_eq!(status, 400);
    }
    // The fetch above counted: the interval starts at the first fetch, so
    // k2 is not seen yet either, even once published.
    *server.document.lock().unwrap() = jwks.to_string();
    let (status, _) = exchange_jwt(&app, None, &tokens[1]).await;
    assert_eq!(status, 400);
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "fetched more often than allowed"
    );

    // With no minimum interval, the new kid is fetched at once.
    let app = spawn(backend).await;
    let company = company_in_new_tenant(&app).await;
    let server = serve_jwks(&only_k1).await;
    trust_main_branch(&app, &company, &server.url).await;
    let (status, _) = exchange_jwt(&app, None, &tokens[0]).await;
    assert_eq!(status, 200);
    *server.document.lock().unwrap() = jwks.to_string();
    let (status, body) = exchange_jwt(&app, None, &tokens[1]).await;
    assert_eq!(status, 200, "the rotated key was not fetched: {body}");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

/// Trust is managed by admins only, with bad input refused clearly and
/// every change audited.
async fn only_admins_manage_trust_and_bad_input_is_refused(backend: Backend) {
    let app = spawn(backend).await;
    let company = company(&app).await;
    let member_token = user_token(&app, &company).await;
    let response = app
        .api(
            reqwest::Method::POST,
            "/api/v1/trusted-issuers",
            &member_token,
        )
        .json(&json!({"issuer": CI_ISSUER, "jwks_url": "http://127.0.0.1:9/jwks", "audience": "a"}))
        .sent()
        .await;
    assert_eq!(response.status(), 403);
    let response = app.get_as("/api/v1/trusted-issuers", &member_token).await;
    assert_eq!(response.status(), 403);

    let bad_issuers = [
        (
            "an issuer that is not a URL",
            json!({"issuer": "github", "jwks_url": "http://127.0.0.1:9/j", "audience": "a"}),
        ),
        (
            "a jwks_url that is not a URL",
            json!({"issuer": CI_ISSUER, "jwks_url": "jwks", "audience": "a"}),
        ),
        (
            "an empty audience",
            json!({"issuer": CI_ISSUER, "jwks_url": "http://127.0.0.1:9/j", "audience": ""}),
        ),
        (
            "an unknown member",
            json!({"issuer": CI_ISSUER, "jwks_url": "http://127.0.0.1:9/j", "audience": "a", "secret": "x"}),
        ),
    ];
    for (what, body) in bad_issuers {
        let response = app
            .api(
                reqwest::Method::POST,
                "/api/v1/trusted-issuers",
                &company.admin_session,
            )
            .json(&body)
            .sent()
            .await;
        let status = response.status().as_u16();
        let body = json_body(response).await;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
    let issuer = trust(&app, &company.admin_session, "http://127.0.0.1:9/jwks.json").await;
    let issuer_id = issuer["id"].as_str().unwrap();
    let bad_rules = [
        (
            "no conditions",
            json!({"conditions": [], "user": company.user_id, "scopes": "reports:read"}),
        ),
        (
            "a condition matching anything",
            json!({"conditions": [{"claim": "sub", "matches": "*"}], "user": company.user_id, "scopes": "reports:read"}),
        ),
        (
            "scopes the user does not hold",
            json!({"conditions": [{"claim": "sub", "equals": "x"}], "user": company.user_id, "scopes": "keys:manage"}),
        ),
        (
            "a user of no company here",
            json!({"conditions": [{"claim": "sub", "equals": "x"}], "user": "nobody@example.com", "scopes": "reports:read"}),
        ),
    ];
    for (what, body) in bad_rules {
        let (status, body) = add_rule(&app, &company.admin_session, issuer_id, body).await;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
    }
    let listed = app
        .get_json("/api/v1/trusted-issuers", &company.admin_session)
        .await;
    assert_eq!(listed["issuers"][0]["id"], issuer["id"], "{listed}");
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/trusted-issuers/{issuer_id}"),
            &company.admin_session,
        )
        .await;
    assert_eq!(response.status(), 204);
    let audit = app
        .get_json("/api/v1/audit", &company.admin_session)
        .await
        .to_string();
    assert!(audit.contains("exchange.issuer.add"), "{audit}");
    assert!(audit.contains("exchange.issuer.remove"), "{audit}");
}

/// RFC 9449 with RFC 8693: a DPoP-bound subject token is exchanged only
/// with a proof signed by the key it is bound to (else a stolen bound token
/// would come out as a bearer token), and the new token is bound to it
/// too; a bound actor token is refused; a proof on an ordinary exchange
/// binds the new token.
async fn a_dpop_bound_subject_token_is_exchanged_only_by_the_holder_of_its_key(backend: Backend) {
    use crate::dpop::DpopKey;
    let app = spawn(backend).await;
    let company = company(&app).await;
    let holder = DpopKey::new();
    let thief = DpopKey::new();
    let token_url = app.url("/oauth/token");
    let bound = {
        let response = app
            .client
            .post(&token_url)
            .basic_auth(&company.user_key.0, Some(&company.user_key.1))
            .header("DPoP", holder.proof("POST", &token_url, None))
            .form(&[("grant_type", "client_credentials")])
            .sent()
            .await;
        let body = json_body(response).await;
        assert_eq!(body["token_type"], "DPoP", "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    let exchange_with = |proof: Option<String>, extra: Vec<(&'static str, String)>| {
        let app = &app;
        let company = &company;
        let bound = bound.clone();
        async move {
            let mut form = vec![
                ("grant_type", EXCHANGE.to_owned()),
                ("subject_token", bound),
                ("subject_token_type", ACCESS_TOKEN.to_owned()),
            ];
            form.extend(extra);
            let mut request = app
                .client
                .post(app.url("/oauth/token"))
                .basic_auth(&company.exchanger.0, Some(&company.exchanger.1))
                .form(&form);
            if let Some(proof) = proof {
                request = request.header("DPoP", proof);
            }
            let response = request.sent().await;
            status_and_json(response).await
        }
    };
    // Without a proof, or with a proof by another key: refused.
    let (status, body) = exchange_with(None, vec![]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "no proof: {body}"
    );
    let (status, body) = exchange_with(Some(thief.proof("POST", &token_url, None)), vec![]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "another key: {body}"
    );
    // With the holder's proof: a token bound to the same key.
    let (status, body) = exchange_with(Some(holder.proof("POST", &token_url, None)), vec![]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let issued = claims(body["access_token"].as_str().unwrap());
    assert_eq!(issued["cnf"]["jkt"], holder.jkt, "{issued}");

    // A bound token as the actor: refused.
    let plain_subject = user_token(&app, &company).await;
    let (status, body) = exchange(
        &app,
        Some(&company.exchanger),
        &[
            ("subject_token", &plain_subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", &bound),
            ("actor_token_type", ACCESS_TOKEN),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "bound actor: {body}"
    );

    // A proof on an exchange of a bearer token binds the new one.
    let response = app
        .client
        .post(&token_url)
        .basic_auth(&company.exchanger.0, Some(&company.exchanger.1))
        .header("DPoP", thief.proof("POST", &token_url, None))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", plain_subject.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
        ])
        .sent()
        .await;
    let body = json_body(response).await;
    assert_eq!(body["token_type"], "DPoP", "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        thief.jkt
    );
}

/// The metadata advertises the grant once it works (RFC 8414 §2).
async fn the_metadata_advertises_token_exchange(backend: Backend) {
    let app = spawn(backend).await;
    let metadata = json_body(app.get("/.well-known/oauth-authorization-server").await).await;
    let grants = metadata["grant_types_supported"].as_array().unwrap();
    assert!(grants.iter().any(|g| g == EXCHANGE), "{metadata}");
    assert!(
        metadata["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "tokens:exchange"),
        "{metadata}"
    );
}

crate::on_both_backends!(
    a_keyport_token_is_exchanged_for_a_narrower_token_for_another_audience,
    an_exchange_never_widens_scope_or_lifetime,
    an_actor_token_becomes_act_and_earlier_actors_nest,
    refusals_carry_the_rfc_error_codes,
    a_trusted_issuers_token_is_exchanged_without_any_stored_secret,
    untrusted_forged_or_unmatched_external_tokens_are_refused,
    a_new_kid_refetches_the_jwks_but_never_more_often_than_allowed,
    only_admins_manage_trust_and_bad_input_is_refused,
    the_metadata_advertises_token_exchange,
    a_dpop_bound_subject_token_is_exchanged_only_by_the_holder_of_its_key,
);
