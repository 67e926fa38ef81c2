//! DPoP (RFC 9449): bound tokens at `/oauth/token`, `Authorization: DPoP`
//! at Keyport's own endpoints, and every §4.3 check refused with its code
//! (never a 5xx). Proofs are made here by hand with aws-lc-rs, so a test can
//! break any one rule at a time.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{
    Backend, Integration, TestApp, claims_of, spawn_app, spawn_app_with,
    spawn_app_with_integration, spawn_sibling,
};
use crate::on_both_backends;

/// Every proof needs a server nonce, and a nonce lasts one second.
const SHORT_NONCES: &[(&str, &str)] = &[
    ("KEYPORT_DPOP_REQUIRE_NONCE", "true"),
    ("KEYPORT_DPOP_NONCE_SECONDS", "1"),
];

/// A client's DPoP key pair (P-256, ES256).
pub struct DpopKey {
    pair: EcdsaKeyPair,
    pub jwk: Value,
    pub jkt: String,
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// base64url(SHA-256(token)): the `ath` claim.
pub fn ath(token: &str) -> String {
    b64(Sha256::digest(token.as_bytes()))
}

impl DpopKey {
    pub fn new() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        });
        let jkt = keyport::tokens::PublicJwk::parse(&jwk)
            .expect("a valid jwk")
            .thumbprint()
            .to_owned();
        DpopKey { pair, jwk, jkt }
    }

    /// Signs any header and claims with this key (ES256).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", b64(signature.as_ref()))
    }

    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    /// The claims of a correct proof for `method` `url`, with `ath` for
    /// `token` when given.
    pub fn claims(&self, method: &str, url: &str, token: Option<&str>) -> Value {
        let mut claims = json!({
            "jti": uuid::Uuid::new_v4().to_string(),
            "htm": method,
            "htu": url,
            "iat": now(),
        });
        if let Some(token) = token {
            claims["ath"] = json!(ath(token));
        }
        claims
    }

    /// A correct proof.
    pub fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        self.sign(&self.header(), &self.claims(method, url, token))
    }
}

async fn token_request(app: &TestApp, integration: &Integration, proofs: &[String]) -> Response {
    let mut request = client_credentials(
        &app.client,
        app.url("/oauth/token"),
        integration.client_id(),
        integration.secret(),
    );
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.sent().await
}

/// A DPoP-bound token for `integration`, bound to `key`.
pub(crate) async fn bound_token(app: &TestApp, integration: &Integration, key: &DpopKey) -> String {
    let proof = key.proof("POST", &app.url("/oauth/token"), None);
    let response = token_request(app, integration, &[proof]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "DPoP");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: &str,
    proofs: &[String],
) -> Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("Authorization", authorization);
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    request.sent().await
}

/// A refusal at a resource: `status`, the JSON `error` `code`, and for a
/// 401 the RFC 9449 §7.1 challenge.
async fn assert_resource_refusal(case: &str, response: Response, status: u16, code: &str) {
    assert!(
        response.status().as_u16() < 500,
        "{case}: a 5xx ({})",
        response.status()
    );
    assert_eq!(response.status().as_u16(), status, "{case}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("json error");
    assert_eq!(body["error"], code, "{case}: {body}");
    if status == 401 {
        assert!(challenge.starts_with("DPoP "), "{case}: {challenge}");
        assert!(
            challenge.contains("algs=\"ES256 EdDSA RS256\""),
            "{case}: {challenge}"
        );
        assert!(
            challenge.contains(&format!("error=\"{code}\"")),
            "{case}: {challenge}"
        );
    }
}

/// A refusal at the token endpoint (RFC 6749 §5.2 body).
async fn assert_token_refusal(case: &str, response: Response, code: &str) {
    assert!(
        response.status().as_u16() < 500,
        "{case}: a 5xx ({})",
        response.status()
    );
    assert_eq!(response.status(), 400, "{case}");
    let body: Value = response.json().await.expect("json error");
    assert_eq!(body["error"], code, "{case}: {body}");
}

async fn a_token_requested_with_a_proof_is_bound_to_the_proof_key_rfc9449_section_5(
    backend: Backend,
) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = DpopKey::new();
    let token = bound_token(&app, &integration, &key).await;
    assert_eq!(claims_of(&token)["cnf"], json!({"jkt": key.jkt}));

    // Without a proof, as before: a bearer token without `cnf`.
    let response = token_request(&app, &integration, &[]).await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    let bearer = body["access_token"].as_str().expect("token");
    assert!(claims_of(bearer).get("cnf").is_none());

    // RFC 9449 §6.2: introspection says DPoP and gives `cnf`.
    let response = app
        .token_call("/oauth/introspect", &integration, &token)
        .await;
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["cnf"]["jkt"], key.jkt);

    // RFC 9449 §5.1: the metadata advertises the proof algorithms.
    let metadata: Value = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"))
        .sent_json()
        .await;
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256"])
    );
}

async fn a_bound_token_reaches_whoami_and_records_with_a_proof_each_time_rfc9449_section_7(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let integration = app
        .integration("member", "reports:read,webhooks:write")
        .await;
    let key = DpopKey::new();
    let token = bound_token(&app, &integration, &key).await;
    let authorization = format!("DPoP {token}");

    let proof = key.proof("GET", &app.url("/api/v1/whoami"), Some(&token));
    let response = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        &authorization,
        &[proof],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["client_id"], integration.client_id());

    let proof = key.proof("POST", &app.url("/api/v1/webhooks/orders"), Some(&token));
    let response = app
        .client
        .post(app.url("/api/v1/webhooks/orders"))
        .header("Authorization", &authorization)
        .header("DPoP", proof)
        .json(&json!({"order": 1}))
        .sent()
        .await;
    assert_eq!(response.status(), 201);

    // `htu` has no query (RFC 9449 §4.2); the request has one.
    let proof = key.proof("GET", &app.url("/api/v1/reports/orders"), Some(&token));
    let response = call(
        &app,
        Method::GET,
        "/api/v1/reports/orders?limit=10",
        &authorization,
        &[proof],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["records"].as_array().map(Vec::len), Some(1));
}

async fn every_broken_proof_at_a_resource_is_refused_with_its_code_rfc9449_section_4_3(
    backend: Backend,
) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = DpopKey::new();
    let token = bound_token(&app, &integration, &key).await;
    let url = app.url("/api/v1/whoami");
    let dpop = format!("DPoP {token}");
    let other_key = DpopKey::new();

    // Replay (§11.1): the same proof twice.
    let proof = key.proof("GET", &url, Some(&token));
    let first = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        &dpop,
        std::slice::from_ref(&proof),
    )
    .await;
    assert_eq!(first.status(), 200);
    let again = call(&app, Method::GET, "/api/v1/whoami", &dpop, &[proof]).await;
    assert_resource_refusal("a replayed proof (§11.1)", again, 401, "invalid_dpop_proof").await;

    let with = |edit: &dyn Fn(&mut Value, &mut Value)| {
        let mut header = key.header();
        let mut claims = key.claims("GET", &url, Some(&token));
        edit(&mut header, &mut claims);
        key.sign(&header, &claims)
    };
    let unsigned = |header: Value| {
        let claims = key.claims("GET", &url, Some(&token));
        format!("{}.{}.", b64(header.to_string()), b64(claims.to_string()))
    };
    let mut private_jwk = key.jwk.clone();
    private_jwk["d"] = json!(b64([7u8; 32]));
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "§4.3 step 1: two DPoP headers",
            vec![
                key.proof("GET", &url, Some(&token)),
                key.proof("GET", &url, Some(&token)),
            ],
        ),
        ("§4.3 step 1: no DPoP header with the DPoP scheme", vec![]),
        ("§4.3 step 2: not a JWT", vec!["not-a-jwt".to_owned()]),
        (
            "§4.3 step 4: typ JWT instead of dpop+jwt",
            vec![with(&|h, _| h["typ"] = json!("JWT"))],
        ),
        (
            "§4.3 step 5: alg none, no signature",
            vec![unsigned(
                json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}),
            )],
        ),
        (
            "§4.3 step 5: HS256 (a symmetric algorithm)",
            vec![format!(
                "{}.{}",
                &unsigned(json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk}))
                    .trim_end_matches('.'),
                b64([1u8; 32])
            )],
        ),
        (
            "§4.3 step 6: a signature by another key than the jwk",
            vec![other_key.sign(&key.header(), &key.claims("GET", &url, Some(&token)))],
        ),
        (
            "§4.3 step 7: a jwk with its private part d",
            vec![with(&|h, _| h["jwk"] = private_jwk.clone())],
        ),
        (
            "§4.3 step 3: no jwk header",
            vec![with(&|h, _| {
                h.as_object_mut().map(|o| o.remove("jwk"));
            })],
        ),
        (
            "§4.3 step 8: htm POST on a GET",
            vec![with(&|_, c| c["htm"] = json!("POST"))],
        ),
        (
            "§4.3 step 9: htu of another endpoint",
            vec![with(&|_, c| c["htu"] = json!(app.url("/api/v1/keys")))],
        ),
        (
            "§4.3 step 9: htu of another host",
            vec![with(&|_, c| {
                c["htu"] = json!("https://evil.example.com/api/v1/whoami")
            })],
        ),
        (
            "§4.3 step 11: iat ten minutes old",
            vec![with(&|_, c| c["iat"] = json!(now() - 600))],
        ),
        (
            "§4.3 step 11: iat two minutes in the future",
            vec![with(&|_, c| c["iat"] = json!(now() + 120))],
        ),
        (
            "§4.2: no jti",
            vec![with(&|_, c| {
                c.as_object_mut().map(|o| o.remove("jti"));
            })],
        ),
        (
            "§4.3 step 12: no ath",
            vec![with(&|_, c| {
                c.as_object_mut().map(|o| o.remove("ath"));
            })],
        ),
        (
            "§4.3 step 12: ath of another token",
            vec![with(&|_, c| c["ath"] = json!(ath("another token")))],
        ),
        (
            "§4.3 step 12: a proof by another key than cnf.jkt",
            vec![other_key.proof("GET", &url, Some(&token))],
        ),
    ];
    for (case, proofs) in cases {
        let response = call(&app, Method::GET, "/api/v1/whoami", &dpop, &proofs).await;
        assert_resource_refusal(case, response, 401, "invalid_dpop_proof").await;
    }

    // §7.2: a bound token presented as Bearer, with or without a proof.
    let response = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        &format!("Bearer {token}"),
        &[key.proof("GET", &url, Some(&token))],
    )
    .await;
    assert_resource_refusal("a bound token as Bearer", response, 401, "invalid_token").await;
    let response = call(
        &app,
        Method::GET,
        "/api/v1/reports/orders",
        &format!("Bearer {token}"),
        &[],
    )
    .await;
    assert_resource_refusal(
        "a bound token as Bearer at records",
        response,
        401,
        "invalid_token",
    )
    .await;

    // An unbound token under the DPoP scheme.
    let bearer = app.token_for(&integration).await;
    let response = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        &format!("DPoP {bearer}"),
        &[key.proof("GET", &url, Some(&bearer))],
    )
    .await;
    assert_resource_refusal("a bearer token as DPoP", response, 401, "invalid_token").await;

    // A forged token under the DPoP scheme.
    let response = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        "DPoP not.a.token",
        &[key.proof("GET", &url, Some("not.a.token"))],
    )
    .await;
    assert_resource_refusal("a forged token as DPoP", response, 401, "invalid_token").await;

    // A refused proof did not use up anything: a correct one still works.
    let response = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        &dpop,
        &[key.proof("GET", &url, Some(&token))],
    )
    .await;
    assert_eq!(response.status(), 200);
}

async fn every_broken_proof_at_the_token_endpoint_is_invalid_dpop_proof_rfc9449_section_5(
    backend: Backend,
) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = DpopKey::new();
    let url = app.url("/oauth/token");
    let with = |edit: &dyn Fn(&mut Value, &mut Value)| {
        let mut header = key.header();
        let mut claims = key.claims("POST", &url, None);
        edit(&mut header, &mut claims);
        key.sign(&header, &claims)
    };
    let used = key.proof("POST", &url, None);
    assert_eq!(
        token_request(&app, &integration, std::slice::from_ref(&used))
            .await
            .status(),
        200
    );
    let mut private_jwk = key.jwk.clone();
    private_jwk["d"] = json!(b64([7u8; 32]));
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("§11.1: a proof used before", vec![used]),
        (
            "§4.3 step 1: two DPoP headers",
            vec![key.proof("POST", &url, None), key.proof("POST", &url, None)],
        ),
        (
            "§4.3 step 4: typ at+jwt",
            vec![with(&|h, _| h["typ"] = json!("at+jwt"))],
        ),
        (
            "§4.3 step 5: alg none",
            vec![format!(
                "{}.{}.",
                b64(json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}).to_string()),
                b64(key.claims("POST", &url, None).to_string())
            )],
        ),
        (
            "§4.3 step 7: a private jwk",
            vec![with(&|h, _| h["jwk"] = private_jwk.clone())],
        ),
        (
            "§4.3 step 8: htm GET",
            vec![with(&|_, c| c["htm"] = json!("GET"))],
        ),
        (
            "§4.3 step 9: htu of the introspection endpoint",
            vec![with(&|_, c| c["htu"] = json!(app.url("/oauth/introspect")))],
        ),
        (
            "§4.3 step 11: iat ten minutes old",
            vec![with(&|_, c| c["iat"] = json!(now() - 600))],
        ),
        (
            "§4.3 step 11: iat two minutes ahead",
            vec![with(&|_, c| c["iat"] = json!(now() + 120))],
        ),
    ];
    for (case, proofs) in cases {
        let response = token_request(&app, &integration, &proofs).await;
        assert_token_refusal(case, response, "invalid_dpop_proof").await;
    }
}

async fn a_key_that_requires_dpop_gets_no_token_without_a_proof_rfc9449_section_5(
    backend: Backend,
) {
    let (app, integration) =
        spawn_app_with_integration(backend, "member", "keys:manage,reports:read").await;
    let manager = app.token_for(&integration).await;
    let path = format!("/api/v1/keys/{}", integration.client_id());
    let change = |required: bool| {
        app.client
            .patch(app.url(&path))
            .bearer_auth(&manager)
            .json(&json!({"require_dpop": required}))
            .send()
    };
    let response = change(true).await.expect("patch");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["require_dpop"], true);

    // At once on this instance: the PATCH forgot the cached key.
    let response = token_request(&app, &integration, &[]).await;
    assert_token_refusal(
        "no proof for a key that requires DPoP",
        response,
        "invalid_request",
    )
    .await;
    let key = DpopKey::new();
    bound_token(&app, &integration, &key).await;

    let listed: Value = app
        .client
        .get(app.url("/api/v1/keys"))
        .bearer_auth(&manager)
        .sent_json()
        .await;
    let row = listed
        .as_array()
        .or_else(|| listed["keys"].as_array())
        .and_then(|keys| {
            keys.iter()
                .find(|k| k["client_id"] == integration.client_id())
                .cloned()
        })
        .expect("the key is listed");
    assert_eq!(row["require_dpop"], true);

    let response = change(false).await.expect("patch");
    assert_eq!(response.status(), 200);
    assert_eq!(token_request(&app, &integration, &[]).await.status(), 200);

    // Created with the requirement over HTTP.
    let response = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&manager)
        .json(&json!({"name": "bound from birth", "require_dpop": true}))
        .sent()
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["require_dpop"], true);
    let response = app
        .request_token(
            created["client_id"].as_str().expect("id"),
            created["client_secret"].as_str().expect("secret"),
        )
        .await;
    assert_token_refusal("a key created requiring DPoP", response, "invalid_request").await;
}

async fn a_change_of_require_dpop_made_outside_the_server_reaches_its_credential_cache(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // Until its watcher has proved it hears every change, the cache is not
    // used at all and this would pass without the trigger.
    let started = std::time::Instant::now();
    loop {
        let ready = app.client.get(app.url("/readyz")).sent().await;
        let body: Value = ready.json().await.unwrap_or(Value::Null);
        if body["credential_cache"] == "trusted" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never trusted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let integration = app.integration("member", "reports:read").await;
    // Cached now.
    for _ in 0..2 {
        assert_eq!(token_request(&app, &integration, &[]).await.status(), 200);
    }
    // As psql or sqlite3 would: the migration-0010 trigger must announce it.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.db.url).await.expect("connect");
    sqlx::query("UPDATE api_keys SET require_dpop = 1 WHERE client_id = $1")
        .bind(integration.client_id())
        .execute(&pool)
        .await
        .expect("update");
    pool.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = token_request(&app, &integration, &[]).await.status();
        if status == 400 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cached key still gets tokens without a proof ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two servers on one database share their replay cache: the database on
/// SQLite (where `auto` would keep proofs in each server's memory: SQLite
/// serves one instance, and two need `dpop_replay_store = "database"`), the
/// database or Redis on PostgreSQL (`auto` without Redis: the database).
async fn a_proof_used_at_one_instance_is_refused_at_another_on_the_same_database(backend: Backend) {
    const SHARED: &[(&str, &str)] = &[("KEYPORT_DPOP_REPLAY_STORE", "database")];
    let overrides = if backend == Backend::Sqlite {
        SHARED
    } else {
        &[]
    };
    let first = spawn_app_with(backend, overrides).await;
    let second = spawn_sibling(&first, overrides).await;
    replayed_at_the_other_instance(&first, &second).await;
}

/// A proof used at `first` is refused at `second`, at a resource and at
/// the token endpoint.
async fn replayed_at_the_other_instance(first: &TestApp, second: &TestApp) {
    let integration = first.integration("member", "reports:read").await;
    let key = DpopKey::new();
    let token = bound_token(first, &integration, &key).await;
    // Both instances share the issuer, so one `htu` fits both.
    let proof = key.proof("GET", &first.url("/api/v1/whoami"), Some(&token));
    let dpop = format!("DPoP {token}");
    let response = call(
        first,
        Method::GET,
        "/api/v1/whoami",
        &dpop,
        std::slice::from_ref(&proof),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = call(second, Method::GET, "/api/v1/whoami", &dpop, &[proof]).await;
    assert_resource_refusal(
        "a proof replayed at another instance (§11.1)",
        response,
        401,
        "invalid_dpop_proof",
    )
    .await;
    // The token endpoint's proofs too.
    let proof = key.proof("POST", &first.url("/oauth/token"), None);
    assert_eq!(
        token_request(first, &integration, std::slice::from_ref(&proof))
            .await
            .status(),
        200
    );
    let response = token_request(second, &integration, &[proof]).await;
    assert_token_refusal(
        "a token proof replayed at another instance",
        response,
        "invalid_dpop_proof",
    )
    .await;
}

/// Rows in the database's replay cache.
async fn stored_proofs(app: &TestApp) -> i64 {
    use sqlx::Connection;
    match app.db.sqlite_dir() {
        Some(dir) => {
            let path = dir.join("keyport.db");
            tokio::task::spawn_blocking(move || {
                rusqlite::Connection::open(&path)
                    .and_then(|c| c.query_row("SELECT count(*) FROM dpop_proofs", [], |r| r.get(0)))
                    .expect("count")
            })
            .await
            .expect("read")
        }
        None => {
            let mut connection = sqlx::PgConnection::connect(&app.db.url)
                .await
                .expect("connect");
            sqlx::query_scalar("SELECT count(*) FROM dpop_proofs")
                .fetch_one(&mut connection)
                .await
                .expect("count")
        }
    }
}

/// Two instances on PostgreSQL with Redis: proofs are remembered in Redis
/// (`SET NX` with their expiry), shared by both, and the database is not
/// written.
#[tokio::test]
async fn postgres_with_redis_a_proof_used_at_one_instance_is_refused_at_another() {
    let prefix = format!("keyport-test-{}:", uuid::Uuid::new_v4());
    let redis: &[(&str, &str)] = &[
        ("KEYPORT_REDIS_URL", "redis://127.0.0.1:6379"),
        ("KEYPORT_REDIS_KEY_PREFIX", &prefix),
    ];
    let first = spawn_app_with(Backend::Postgres, redis).await;
    let second = spawn_sibling(&first, redis).await;
    replayed_at_the_other_instance(&first, &second).await;
    assert_eq!(stored_proofs(&first).await, 0, "no proof in the database");
}

/// One instance on SQLite keeps proofs in memory: no database write per
/// proof. Restarted within a proof's window, it refuses the proof used
/// before (it was made before the restart) and takes new ones.
#[tokio::test]
async fn sqlite_proofs_are_kept_in_memory_and_a_restart_lets_no_used_proof_through() {
    let first = spawn_app(Backend::Sqlite).await;
    let integration = first.integration("member", "reports:read").await;
    let key = DpopKey::new();
    let token = bound_token(&first, &integration, &key).await;
    // The restarted instance keeps the issuer, so one `htu` fits both.
    let htu = first.url("/api/v1/whoami");
    let proof = key.proof("GET", &htu, Some(&token));
    let dpop = format!("DPoP {token}");
    let whoami = async |app: &TestApp, proof: &str| {
        call(
            app,
            Method::GET,
            "/api/v1/whoami",
            &dpop,
            &[proof.to_owned()],
        )
        .await
    };
    assert_eq!(whoami(&first, &proof).await.status(), 200);
    assert_resource_refusal(
        "a proof replayed at the same instance",
        whoami(&first, &proof).await,
        401,
        "invalid_dpop_proof",
    )
    .await;
    assert_eq!(stored_proofs(&first).await, 0, "no proof in the database");

    // A restart on the same database: a new process's memory. (A restart
    // takes more than a second: the proof is dated before the new start.)
    let iat = claims_of(&proof)["iat"].as_i64().expect("iat");
    while now() <= iat {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = spawn_sibling(&first, &[]).await;
    drop(first);
    let response = whoami(&restarted, &proof).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    assert!(
        body.to_string().contains("before the server started"),
        "{body}"
    );
    // New proofs pass (from the second after the restart on).
    let started = std::time::Instant::now();
    loop {
        let fresh = key.proof("GET", &htu, Some(&token));
        if whoami(&restarted, &fresh).await.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "new proofs never passed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn with_nonces_on_a_proof_needs_the_server_nonce_rfc9449_section_8(backend: Backend) {
    let app = spawn_app_with(backend, SHORT_NONCES).await;
    let integration = app.integration("member", "reports:read").await;
    let key = DpopKey::new();
    let url = app.url("/oauth/token");
    let with_nonce = |nonce: Option<&str>| {
        let mut claims = key.claims("POST", &url, None);
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        key.sign(&key.header(), &claims)
    };
    let nonce_of = |response: &Response| {
        response
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    // Missing: 400 use_dpop_nonce with a DPoP-Nonce to retry with.
    let response = token_request(&app, &integration, &[with_nonce(None)]).await;
    let nonce = nonce_of(&response).expect("a DPoP-Nonce header");
    assert_token_refusal("§8: no nonce", response, "use_dpop_nonce").await;
    // Wrong: one the server never issued.
    let response = token_request(&app, &integration, &[with_nonce(Some("bm90LWEtbm9uY2U"))]).await;
    assert!(nonce_of(&response).is_some());
    assert_token_refusal("§8: a made-up nonce", response, "use_dpop_nonce").await;
    // Right.
    let response = token_request(&app, &integration, &[with_nonce(Some(&nonce))]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let token = body["access_token"].as_str().expect("token").to_owned();

    // At a resource: 401 use_dpop_nonce with DPoP-Nonce, then through.
    let whoami = app.url("/api/v1/whoami");
    let dpop = format!("DPoP {token}");
    let proof = key.proof("GET", &whoami, Some(&token));
    let response = call(&app, Method::GET, "/api/v1/whoami", &dpop, &[proof]).await;
    let resource_nonce = nonce_of(&response).expect("a DPoP-Nonce header");
    assert_resource_refusal(
        "§8: no nonce at a resource",
        response,
        401,
        "use_dpop_nonce",
    )
    .await;
    let mut claims = key.claims("GET", &whoami, Some(&token));
    claims["nonce"] = json!(resource_nonce);
    let response = call(
        &app,
        Method::GET,
        "/api/v1/whoami",
        &dpop,
        &[key.sign(&key.header(), &claims)],
    )
    .await;
    assert_eq!(response.status(), 200);

    // Stale: two nonce periods (of one second here) later.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = token_request(&app, &integration, &[with_nonce(Some(&nonce))]).await;
    let fresh = nonce_of(&response).expect("a fresh DPoP-Nonce");
    assert_ne!(fresh, nonce);
    assert_token_refusal("§8: a stale nonce", response, "use_dpop_nonce").await;
}

async fn a_rust_resource_server_checks_proofs_with_the_dpop_token_extractor(backend: Backend) {
    use actix_web::{App, HttpResponse, test, web};
    use keyport::routes::{BearerToken, DpopToken};
    use keyport::tokens::TokenVerifier;
    use keyport::tokens::dpop::{DpopVerifier, MemoryReplayStore};

    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = DpopKey::new();
    let token = bound_token(&app, &integration, &key).await;
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .sent_json()
        .await;
    let verifier = TokenVerifier::from_jwks(
        &jwks,
        &app.settings.tokens.issuer,
        &app.settings.tokens.audience,
        Duration::from_secs(30),
    );
    let dpop = DpopVerifier::new(
        Some("https://api.example.com"),
        Duration::from_secs(300),
        Duration::from_secs(10),
        std::sync::Arc::new(MemoryReplayStore::default()),
    );
    let service = test::init_service(
        App::new()
            .app_data(web::Data::new(verifier))
            .app_data(web::Data::new(dpop))
            .route(
                "/orders",
                web::get().to(|token: DpopToken| async move {
                    HttpResponse::Ok().body(token.token.claims.client_id)
                }),
            )
            .route(
                "/bearer-only",
                web::get().to(|token: BearerToken| async move {
                    HttpResponse::Ok().body(token.0.claims.client_id)
                }),
            ),
    )
    .await;
    let proof = key.proof("GET", "https://api.example.com/orders", Some(&token));
    let request = |authorization: String, proof: &str| {
        test::TestRequest::get()
            .uri("/orders")
            .insert_header(("Authorization", authorization))
            .insert_header(("DPoP", proof.to_owned()))
            .to_request()
    };
    let response = test::call_service(&service, request(format!("DPoP {token}"), &proof)).await;
    assert_eq!(response.status(), 200);
    let body = test::read_body(response).await;
    assert_eq!(body, integration.client_id().as_bytes());
    // The same proof again: the in-memory replay store remembers it.
    let response = test::call_service(&service, request(format!("DPoP {token}"), &proof)).await;
    assert_eq!(response.status(), 401);
    // The bound token as Bearer.
    let proof = key.proof("GET", "https://api.example.com/orders", Some(&token));
    let response = test::call_service(&service, request(format!("Bearer {token}"), &proof)).await;
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // RFC 9449 §7.2: BearerToken refuses a bound token too (no downgrade).
    let response = test::call_service(
        &service,
        test::TestRequest::get()
            .uri("/bearer-only")
            .insert_header(("Authorization", format!("Bearer {token}")))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 401);
}

on_both_backends!(
    a_token_requested_with_a_proof_is_bound_to_the_proof_key_rfc9449_section_5,
    a_bound_token_reaches_whoami_and_records_with_a_proof_each_time_rfc9449_section_7,
    every_broken_proof_at_a_resource_is_refused_with_its_code_rfc9449_section_4_3,
    every_broken_proof_at_the_token_endpoint_is_invalid_dpop_proof_rfc9449_section_5,
    a_key_that_requires_dpop_gets_no_token_without_a_proof_rfc9449_section_5,
    a_change_of_require_dpop_made_outside_the_server_reaches_its_credential_cache,
    a_proof_used_at_one_instance_is_refused_at_another_on_the_same_database,
    with_nonces_on_a_proof_needs_the_server_nonce_rfc9449_section_8,
    a_rust_resource_server_checks_proofs_with_the_dpop_token_extractor,
);

/// What the replay cache costs per proof: `first_dpop_use` (one INSERT … ON
/// CONFLICT DO NOTHING) timed over 2,000 distinct proofs and 2,000 replays,
/// one after another, as the README reports. Not a check: run with
/// `cargo test --release --test api dpop::replay_cost -- --ignored --nocapture`.
async fn measure_replay_cost(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = &app.store;
    let expires = now() + 300;
    let ids: Vec<String> = (0..2000)
        .map(|i| format!("{:064x}", u128::from(i as u32) << 64 | 0xd0))
        .collect();
    // Warm the pool and the statement.
    for id in ids.iter().take(50) {
        store
            .first_dpop_use(&format!("{id}w"), expires)
            .await
            .expect("insert");
    }
    let started = std::time::Instant::now();
    for id in &ids {
        assert!(store.first_dpop_use(id, expires).await.expect("insert"));
    }
    let fresh = started.elapsed() / ids.len() as u32;
    let started = std::time::Instant::now();
    for id in &ids {
        assert!(!store.first_dpop_use(id, expires).await.expect("replay"));
    }
    let replay = started.elapsed() / ids.len() as u32;
    // For scale: the cheapest round trip through the same pool.
    let started = std::time::Instant::now();
    for _ in 0..ids.len() {
        store.ping().await.expect("ping");
    }
    let ping = started.elapsed() / ids.len() as u32;
    let started = std::time::Instant::now();
    let swept = store.sweep_dpop_proofs(expires + 1).await.expect("sweep");
    println!(
        "{backend:?}: a new proof {fresh:?}, a replay {replay:?} per request (SELECT 1: {ping:?}); \
         sweeping {swept} rows {:?}",
        started.elapsed()
    );
}

mod replay_cost {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "prints the replay insert's cost (performance is not a test); run by hand: cargo test --test api dpop::replay_cost -- --ignored --nocapture"]
    async fn sqlite() {
        super::measure_replay_cost(crate::helpers::Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "prints the replay insert's cost (performance is not a test); run by hand: cargo test --test api dpop::replay_cost -- --ignored --nocapture"]
    async fn postgres() {
        super::measure_replay_cost(crate::helpers::Backend::Postgres).await
    }
}
