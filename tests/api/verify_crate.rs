//! `keyport-verify`, the resource-server crate, against a real Keyport on
//! port 0 (in-process, or a `keyport serve` process where the test kills
//! or rotates it): it finds the keys from the metadata, accepts Keyport's
//! tokens, refuses every kind of wrong token with the RFC 6750 answer,
//! fetches the JWKS at most once per interval however many made-up kids
//! arrive (counted at the server), follows a signing-key rotation without a
//! restart, keeps its keys while the issuer is down, fails closed (503, no
//! hang) when it can never get the keys, and checks DPoP proofs.
//!
//! The crate's two example services (`examples/actix.rs`,
//! `examples/axum.rs`) are compiled into this binary with `#[path]` and
//! served in-process on port 0: the very code of the examples, without
//! depending on a `cargo build --examples` having run first, and with a
//! verifier whose refetch interval a test can shorten.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyport_verify::{DpopNonces, DpopSettings, KeySettings, Verifier, VerifyError};
use serde_json::{Value, json};

use crate::dpop::DpopKey;
use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, ServedBinary, header, master_key_env, spawn_app, spawn_app_with_integration,
};

#[allow(dead_code)]
#[path = "../../crates/keyport-verify/examples/actix.rs"]
mod actix_example;
#[allow(dead_code)]
#[path = "../../crates/keyport-verify/examples/axum.rs"]
mod axum_example;

/// `token` with its header replaced by `header` (the signature no longer
/// matches, which the checks before the signature must not need).
fn with_header(token: &str, header: &Value) -> String {
    let rest = token.split_once('.').unwrap().1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn the_verifier_accepts_keyport_tokens_and_refuses_every_wrong_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let issuer = app.settings.tokens.issuer.clone();
    let audience = app.settings.tokens.audience.clone();
    let integration = app.integration("member", "reports:read").await;
    let token = app
        .narrowed_token(integration.client_id(), integration.secret(), None)
        .await;

    let verifier = Verifier::discover(&issuer, &audience)
        .await
        .expect("metadata");
    let claims = verifier.verify_bearer(&token).await.expect("a good token");
    assert_eq!(claims.sub, integration.user.id);
    assert_eq!(claims.client_id.as_deref(), Some(integration.client_id()));
    claims.require_scope("reports:read").unwrap();
    let missing = claims.require_scope("keys:manage").unwrap_err();
    assert_eq!(missing.status(), 403);
    assert!(
        missing
            .challenge("api")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
            && missing
                .challenge("api")
                .unwrap()
                .contains("scope=\"keys:manage\"")
    );

    // Tampered: one character in the middle of the signature.
    let mut tampered = token.clone().into_bytes();
    let at = token.rfind('.').unwrap() + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let header = header_of(&token);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let hs256 = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}).to_string()),
        token.split('.').nth(1).unwrap(),
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
        token.split('.').nth(1).unwrap(),
    );
    let cases: Vec<(&str, String, VerifyError)> = vec![
        ("a tampered signature", tampered, VerifyError::BadSignature),
        (
            "typ JWT (not an access token)",
            with_header(
                &token,
                &json!({"alg": header["alg"], "typ": "JWT", "kid": kid}),
            ),
            VerifyError::NotAnAccessToken,
        ),
        (
            "HS256 under the real kid",
            hs256,
            VerifyError::UnsupportedAlgorithm,
        ),
        ("alg none", none, VerifyError::Malformed),
        (
            "a kid the issuer does not publish",
            with_header(
                &token,
                &json!({"alg": header["alg"], "typ": "at+jwt", "kid": "made-up"}),
            ),
            VerifyError::UnknownKey,
        ),
        (
            "not a JWT",
            "eyJ.not.a-token".to_owned(),
            VerifyError::Malformed,
        ),
    ];
    for (what, bad, expected) in cases {
        let refused = verifier.verify(&bad).await.unwrap_err();
        assert_eq!(refused, expected, "{what}");
        assert_eq!(refused.status(), 401, "{what}");
        assert!(
            refused
                .challenge("api")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
    }

    let elsewhere = Verifier::builder(&issuer, "another-api")
        .jwks_uri(format!("{issuer}/.well-known/jwks.json"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.verify(&token).await.unwrap_err(),
        VerifyError::WrongAudience
    );
    let other_issuer = Verifier::builder("https://other.example.com", &audience)
        .jwks_uri(format!("{issuer}/.well-known/jwks.json"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        other_issuer.verify(&token).await.unwrap_err(),
        VerifyError::WrongIssuer
    );
}

/// A flood of tokens naming made-up kids costs at most one JWKS fetch per
/// interval: here one for the first token, then none for 1,000 made-up
/// kids within the interval.
async fn made_up_kids_cost_at_most_one_fetch_per_interval(backend: Backend) {
    let app = spawn_app(backend).await;
    let issuer = app.settings.tokens.issuer.clone();
    let integration = app.integration("member", "reports:read").await;
    let token = app
        .narrowed_token(integration.client_id(), integration.secret(), None)
        .await;
    let verifier = Verifier::builder(&issuer, &app.settings.tokens.audience)
        .key_settings(KeySettings {
            min_refresh: std::time::Duration::from_secs(3600),
            ..KeySettings::default()
        })
        .build()
        .await
        .unwrap();
    let served_before = jwks_requests_served(&app.client, &app.url("/metrics")).await;
    verifier.verify(&token).await.expect("a good token");
    assert_eq!(verifier.jwks_fetches(), 1);
    let alg = header_of(&token)["alg"].clone();
    for n in 0..1000 {
        let forged = with_header(
            &token,
            &json!({"alg": alg, "typ": "at+jwt", "kid": format!("kid-{n}")}),
        );
        assert_eq!(
            verifier.verify(&forged).await.unwrap_err(),
            VerifyError::UnknownKey
        );
    }
    assert_eq!(
        verifier.jwks_fetches(),
        1,
        "made-up kids fetched the JWKS again"
    );
    // Counted where it matters, at the issuer: one JWKS request in all.
    let served_after = jwks_requests_served(&app.client, &app.url("/metrics")).await;
    assert_eq!(
        served_after - served_before,
        1,
        "JWKS requests the server saw"
    );
    verifier
        .verify(&token)
        .await
        .expect("the real key still answers");
}

/// An issuer whose keys can never be fetched: refused with 503 and no
/// challenge, quickly, never accepted.
#[tokio::test]
async fn without_any_keys_the_verifier_fails_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let verifier = Verifier::builder("https://auth.example.com", "keyport-api")
        .jwks_uri(format!("http://127.0.0.1:{port}/jwks.json"))
        .build()
        .await
        .unwrap();
    let token = with_header(
        "e30.eyJzdWIiOiJ4In0.c2ln",
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}),
    );
    let refused = tokio::time::timeout(std::time::Duration::from_secs(30), verifier.verify(&token))
        .await
        .expect("the verifier hung")
        .unwrap_err();
    assert!(
        matches!(refused, VerifyError::KeysUnavailable(_)),
        "{refused:?}"
    );
    assert_eq!((refused.status(), refused.challenge("api")), (503, None));
}

/// A DPoP-bound token presented as a bearer token is refused: the bearer
/// proves nothing about the key.
async fn a_bound_token_is_refused_as_a_bearer_token(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = crate::dpop::DpopKey::new();
    let token = crate::dpop::bound_token(&app, &integration, &key).await;
    let verifier = Verifier::discover(&app.settings.tokens.issuer, &app.settings.tokens.audience)
        .await
        .unwrap();
    let claims = verifier.verify(&token).await.expect("a valid bound token");
    assert_eq!(claims.dpop_jkt(), Some(key.jkt.as_str()));
    assert_eq!(
        verifier.verify_bearer(&token).await.unwrap_err(),
        VerifyError::BoundToken
    );
}

/// The crate's actix-web extractor in a real resource server on port 0, as
/// its example is written: a token with the scope gets the subject; one
/// without it 403 `insufficient_scope` naming the scope; no token a bare
/// `Bearer` challenge; a bad token 401 `invalid_token`.
async fn the_actix_extractor_answers_as_rfc_6750_says(backend: Backend) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use keyport_verify::actix::BearerClaims;

    async fn protected(token: BearerClaims) -> actix_web::Result<HttpResponse> {
        token.require_scope("reports:read")?;
        Ok(HttpResponse::Ok().json(json!({ "sub": token.sub })))
    }

    let (app, reader) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let writer = app.integration("member", "webhooks:write").await;
    let verifier = Verifier::discover(&app.settings.tokens.issuer, &app.settings.tokens.audience)
        .await
        .unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(verifier.clone()))
            .route("/protected", web::get().to(protected))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let address = server.addrs()[0];
    tokio::spawn(server.run());
    let url = format!("http://{address}/protected");
    let call = |token: Option<String>| {
        let request = app.client.get(&url);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.sent().await }
    };

    let token = app
        .narrowed_token(reader.client_id(), reader.secret(), None)
        .await;
    let answer = call(Some(token)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap()["sub"], reader.user.id);

    let token = app
        .narrowed_token(writer.client_id(), writer.secret(), None)
        .await;
    let answer = call(Some(token)).await;
    assert_eq!(answer.status(), 403);
    let challenge = header(&answer, "www-authenticate").to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"reports:read\""),
        "{challenge}"
    );

    let answer = call(None).await;
    assert_eq!(answer.status(), 401);
    assert_eq!(
        answer.headers()["www-authenticate"],
        "Bearer realm=\"keyport\""
    );

    let answer = call(Some("not-a-token".to_owned())).await;
    assert_eq!(answer.status(), 401);
    assert!(header(&answer, "www-authenticate").contains("error=\"invalid_token\""));
}

/// How many `GET /.well-known/jwks.json` the server has answered, from its
/// own `/metrics` (the request histogram's count for that route).
async fn jwks_requests_served(http: &reqwest::Client, metrics_url: &str) -> u64 {
    let text = http
        .get(metrics_url)
        .sent()
        .await
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| {
            line.starts_with("keyport_http_request_duration_seconds_count")
                && line.contains("route=\"/.well-known/jwks.json\"")
        })
        .map(|line| {
            line.rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count")
        })
        .sum()
}

/// The actix example's service on port 0; its base URL.
fn serve_actix_example(verifier: Verifier) -> String {
    let service = actix_example::configure(verifier);
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(service.clone()))
            .workers(1)
            .bind("127.0.0.1:0")
            .expect("bind");
    let address = server.addrs()[0];
    tokio::spawn(server.run());
    format!("http://{address}")
}

/// A listener on port 0 for an axum service, and its base URL.
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    (listener, base)
}

fn serve_axum(listener: tokio::net::TcpListener, router: axum::Router) {
    tokio::spawn(async move { axum::serve(listener, router).await });
}

/// What a resource server answered: status, `WWW-Authenticate` values,
/// JSON body (or null).
struct Answer {
    status: u16,
    challenges: Vec<String>,
    nonce: Option<String>,
    body: Value,
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .expect("the resource server answers without hanging")
        .expect("the resource server answers");
    let status = response.status().as_u16();
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let nonce = response
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        challenges,
        nonce,
        body,
    }
}

async fn get_protected(http: &reqwest::Client, base: &str, token: &str) -> Answer {
    answer(http.get(format!("{base}/protected")).bearer_auth(token)).await
}

/// `keyport signing-key rotate` on `url`'s database, as an operator would.
async fn rotate_signing_key(url: &str) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyport"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYPORT_") {
            command.env_remove(name);
        }
    }
    let output = command
        .env("KEYPORT_DATABASE_URL", url)
        .envs(master_key_env(url))
        .args(["signing-key", "rotate"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the CLI finishes")
        .expect("run the CLI");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls `check` every 100 ms until it is true or `within` has passed.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both example services in front of a real `keyport serve`: its tokens
/// are accepted; after `keyport signing-key rotate` new tokens (new kid)
/// are accepted without restarting the services and old ones still are;
/// with the issuer killed, the cached keys keep answering and a token with
/// a kid never seen is refused promptly.
async fn the_example_services_follow_a_rotation_and_outlive_the_issuer(backend: Backend) {
    let app = spawn_app(backend).await;
    let reader = app.integration("member", "reports:read").await;
    let mut command = ServedBinary::command(&app.db.url, 1);
    command.env("KEYPORT_SIGNING_KEY_REFRESH_SECONDS", "1");
    let mut server = ServedBinary::start(command, Arc::default());
    let issuer = server.url("");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    // Each service its own verifier, as two processes would have; a
    // short refetch interval so the new kid is fetched without waiting.
    let keys = KeySettings {
        min_refresh: Duration::from_secs(1),
        ..KeySettings::default()
    };
    let verifier = || async {
        Verifier::builder(&issuer, &app.settings.tokens.audience)
            .key_settings(keys)
            .build()
            .await
            .expect("the served issuer's metadata")
    };
    let actix = serve_actix_example(verifier().await);
    let (listener, axum) = bind().await;
    serve_axum(listener, axum_example::router(verifier().await));
    let services = [actix, axum];

    let old = server
        .token(&http, reader.client_id(), reader.secret())
        .await;
    for service in &services {
        let answer = get_protected(&http, service, &old).await;
        assert_eq!(answer.status, 200, "{service}: {}", answer.body);
        assert_eq!(answer.body, json!({"sub": reader.user.id}));
    }

    let old_kid = header_of(&old)["kid"].clone();
    rotate_signing_key(&app.db.url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let new = loop {
        let token = server
            .token(&http, reader.client_id(), reader.secret())
            .await;
        if header_of(&token)["kid"] != old_kid {
            break token;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the served issuer never signed with the rotated key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for service in &services {
        assert!(
            eventually(Duration::from_secs(30), || {
                let (http, new) = (&http, &new);
                async move { get_protected(http, service, new).await.status == 200 }
            })
            .await,
            "{service} never accepted a token of the new key"
        );
        assert_eq!(
            get_protected(&http, service, &old).await.status,
            200,
            "{service}: old token"
        );
    }

    server.kill_9();
    let forged = with_header(
        &new,
        &json!({"alg": header_of(&new)["alg"], "typ": "at+jwt", "kid": "never-published"}),
    );
    for service in &services {
        for token in [&old, &new] {
            assert_eq!(
                get_protected(&http, service, token).await.status,
                200,
                "{service}: cached key"
            );
        }
        let refused = get_protected(&http, service, &forged).await;
        assert_eq!(refused.status, 401, "{service}");
        assert!(
            refused.challenges[0].contains("error=\"invalid_token\""),
            "{:?}",
            refused.challenges
        );
    }
}

/// An issuer made here, so tokens can be signed with any claims: its key
/// (P-256), its JWKS served on port 0, and tokens it signs.
struct TestIssuer {
    key: DpopKey,
    jwks_uri: String,
}

const TEST_ISSUER: &str = "https://issuer.test";

impl TestIssuer {
    async fn start() -> Self {
        let key = DpopKey::new();
        let mut jwk = key.jwk.clone();
        jwk["kid"] = json!("test-key");
        jwk["alg"] = json!("ES256");
        jwk["use"] = json!("sig");
        let jwks = json!({"keys": [jwk]});
        let (listener, base) = bind().await;
        serve_axum(
            listener,
            axum::Router::new().route(
                "/jwks.json",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            ),
        );
        TestIssuer {
            key,
            jwks_uri: format!("{base}/jwks.json"),
        }
    }

    fn claims(&self, scope: &str) -> Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        json!({
            "iss": TEST_ISSUER, "sub": "user-1", "aud": "keyport-api",
            "iat": now, "exp": now + 300, "scope": scope, "client_id": "kp_test",
        })
    }

    fn sign(&self, claims: &Value) -> String {
        self.key.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-key"}),
            claims,
        )
    }

    async fn verifier(&self) -> Verifier {
        Verifier::builder(TEST_ISSUER, "keyport-api")
            .jwks_uri(&self.jwks_uri)
            .build()
            .await
            .expect("verifier")
    }
}

/// Through both example services: a good token of the issuer answers its
/// subject; every wrong one 401 with a `Bearer` `invalid_token` challenge
/// saying why; a token without `reports:read` 403 `insufficient_scope`
/// naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_services_refuse_wrong_tokens_with_the_right_challenge() {
    let issuer = TestIssuer::start().await;
    let actix = serve_actix_example(issuer.verifier().await);
    let (listener, axum) = bind().await;
    serve_axum(listener, axum_example::router(issuer.verifier().await));
    let http = reqwest::Client::new();
    let good = issuer.claims("reports:read");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        issuer.sign(&claims)
    };
    let token = issuer.sign(&good);
    let payload = token.split('.').nth(1).expect("payload").to_owned();
    // HS256 keyed with the issuer's public key, the classic confusion.
    let hs256 = {
        let input = format!(
            "{}.{payload}",
            URL_SAFE_NO_PAD
                .encode(json!({"alg": "HS256", "typ": "at+jwt", "kid": "test-key"}).to_string())
        );
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            issuer.key.jwk.to_string().as_bytes(),
        );
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(c["iat"].as_i64().unwrap() - 3600);
                c["iat"] = json!(c["iat"].as_i64().unwrap() - 7200);
            }),
            "the token has expired",
        ),
        (
            "not yet valid (nbf)",
            with(&|c| c["nbf"] = json!(c["iat"].as_i64().unwrap() + 3600)),
            "the token is not valid yet",
        ),
        (
            "issued in the future (iat)",
            with(&|c| c["iat"] = json!(c["iat"].as_i64().unwrap() + 3600)),
            "the token was issued in the future",
        ),
        (
            "another audience",
            with(&|c| c["aud"] = json!("another-api")),
            "the token is meant for another audience",
        ),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("https://other.test")),
            "the token was issued by another issuer",
        ),
        (
            "no subject",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "the token lacks the claim `sub`",
        ),
        (
            "no iat",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            "the token lacks the claim `iat`",
        ),
        (
            "typ JWT",
            issuer.key.sign(
                &json!({"alg": "ES256", "typ": "JWT", "kid": "test-key"}),
                &good,
            ),
            "the token is not an access token (typ must be at+jwt)",
        ),
        (
            "alg none",
            format!(
                "{}.{payload}.",
                URL_SAFE_NO_PAD
                    .encode(json!({"alg": "none", "typ": "at+jwt", "kid": "test-key"}).to_string())
            ),
            "the token is not a well-formed JWT",
        ),
        (
            "HS256 with the public key",
            hs256,
            "the token's algorithm is not one the issuer signs with",
        ),
        (
            "signed by another key",
            DpopKey::new().sign(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-key"}),
                &good,
            ),
            "the token's signature does not verify",
        ),
    ];
    for base in [&actix, &axum] {
        let ok = get_protected(&http, base, &token).await;
        assert_eq!(
            (ok.status, &ok.body),
            (200, &json!({"sub": "user-1"})),
            "{base}"
        );
        for (what, bad, description) in &cases {
            let refused = get_protected(&http, base, bad).await;
            assert_eq!(refused.status, 401, "{base} {what}");
            assert_eq!(
                refused.challenges,
                [format!(
                    "Bearer realm=\"keyport\", error=\"invalid_token\", error_description=\"{}\"",
                    description
                )],
                "{base} {what}"
            );
            assert_eq!(refused.body["error"], "invalid_token", "{base} {what}");
        }
        let writer = issuer.sign(&issuer.claims("webhooks:write"));
        let refused = get_protected(&http, base, &writer).await;
        assert_eq!(refused.status, 403, "{base}");
        assert!(
            refused.challenges[0]
                .starts_with("Bearer realm=\"keyport\", error=\"insufficient_scope\"")
                && refused.challenges[0].ends_with("scope=\"reports:read\""),
            "{base}: {:?}",
            refused.challenges
        );
        let none = answer(http.get(format!("{base}/protected"))).await;
        assert_eq!(
            (none.status, none.challenges),
            (401, vec!["Bearer realm=\"keyport\"".to_owned()]),
            "{base}"
        );
    }
}

/// DPoP at a resource built with the crate (axum, DPoP on, RFC 9728
/// metadata published), with a token Keyport bound to a key: accepted with
/// a proof by that key for this request; refused without one, as Bearer,
/// with a replayed proof, a proof for another URL or by another key; 403
/// naming the scope under the DPoP scheme; nonces when the resource asks.
async fn dpop_bound_tokens_need_a_fresh_proof_for_the_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let integration = app.integration("member", "reports:read").await;
    let key = DpopKey::new();
    let token = crate::dpop::bound_token(&app, &integration, &key).await;
    let bearer = app
        .narrowed_token(integration.client_id(), integration.secret(), None)
        .await;
    let issuer = app.settings.tokens.issuer.clone();
    let audience = app.settings.tokens.audience.clone();
    let base = dpop_resource(&issuer, &audience, None).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/protected");
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource");
    let dpop = |proofs: &[String], path: &str| {
        let mut request = http
            .get(format!("{base}{path}"))
            .header("Authorization", format!("DPoP {token}"));
        for proof in proofs {
            request = request.header("DPoP", proof);
        }
        answer(request)
    };
    let refused = |answer: &Answer, code: &str| {
        assert_eq!(answer.status, 401, "{code}: {}", answer.body);
        assert_eq!(answer.body["error"], code);
        let challenge = &answer.challenges[0];
        assert!(
            challenge.starts_with("DPoP realm=\"keyport\", algs=\"ES256 EdDSA RS256\", ")
                && challenge.contains(&format!("error=\"{code}\""))
                && challenge.ends_with(&format!("resource_metadata=\"{metadata_url}\"")),
            "{challenge}"
        );
    };

    let proof = key.proof("GET", &url, Some(&token));
    let accepted = dpop(std::slice::from_ref(&proof), "/protected").await;
    assert_eq!(
        (accepted.status, &accepted.body),
        (200, &json!({"sub": integration.user.id}))
    );
    refused(&dpop(&[proof], "/protected").await, "invalid_dpop_proof");
    refused(&dpop(&[], "/protected").await, "invalid_dpop_proof");
    refused(
        &dpop(
            &[key.proof("GET", &format!("{base}/elsewhere"), Some(&token))],
            "/protected",
        )
        .await,
        "invalid_dpop_proof",
    );
    refused(
        &dpop(&[key.proof("POST", &url, Some(&token))], "/protected").await,
        "invalid_dpop_proof",
    );
    refused(
        &dpop(
            &[DpopKey::new().proof("GET", &url, Some(&token))],
            "/protected",
        )
        .await,
        "invalid_dpop_proof",
    );
    refused(
        &dpop(&[key.proof("GET", &url, None)], "/protected").await,
        "invalid_dpop_proof",
    );
    // Headers a proof must not have: another typ, a critical extension, a
    // private key in its jwk.
    let claims = key.claims("GET", &url, Some(&token));
    let mut header = key.header();
    header["typ"] = json!("JWT");
    let mut critical = key.header();
    critical["crit"] = json!(["exp"]);
    let mut private = key.header();
    private["jwk"]["d"] = json!("AAAA");
    for header in [header, critical, private] {
        refused(
            &dpop(&[key.sign(&header, &claims)], "/protected").await,
            "invalid_dpop_proof",
        );
    }
    let two = [
        key.proof("GET", &url, Some(&token)),
        key.proof("GET", &url, Some(&token)),
    ];
    refused(&dpop(&two, "/protected").await, "invalid_dpop_proof");
    let as_bearer = answer(http.get(&url).bearer_auth(&token)).await;
    refused(&as_bearer, "invalid_token");
    let unbound = answer(
        http.get(&url)
            .header("Authorization", format!("DPoP {bearer}"))
            .header("DPoP", key.proof("GET", &url, Some(&bearer))),
    )
    .await;
    refused(&unbound, "invalid_token");

    // A bearer token is still a bearer token here.
    assert_eq!(
        answer(http.get(&url).bearer_auth(&bearer)).await.status,
        200
    );

    let admin = dpop(
        &[key.proof("GET", &format!("{base}/admin"), Some(&token))],
        "/admin",
    )
    .await;
    assert_eq!(admin.status, 403);
    assert!(
        admin.challenges[0].starts_with(
            "DPoP realm=\"keyport\", algs=\"ES256 EdDSA RS256\", error=\"insufficient_scope\""
        ) && admin.challenges[0].contains("scope=\"keys:manage\""),
        "{:?}",
        admin.challenges
    );

    let none = answer(http.get(&url)).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.challenges,
        [
            format!("Bearer realm=\"keyport\", resource_metadata=\"{metadata_url}\""),
            format!(
                "DPoP realm=\"keyport\", algs=\"ES256 EdDSA RS256\", resource_metadata=\"{metadata_url}\""
            ),
        ]
    );
    let document: Value = http.get(&metadata_url).sent_json().await;
    assert_eq!(
        document,
        json!({
            "resource": base,
            "authorization_servers": [issuer],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["reports:read", "keys:manage"],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
        })
    );

    // Nonces: the first proof is answered with one, the retry carrying it
    // is accepted.
    let base = dpop_resource(
        &issuer,
        &audience,
        Some(DpopNonces::new(Duration::from_secs(300))),
    )
    .await;
    let url = format!("{base}/protected");
    let first = answer(
        http.get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", key.proof("GET", &url, Some(&token))),
    )
    .await;
    assert_eq!(
        (first.status, &first.body["error"]),
        (401, &json!("use_dpop_nonce"))
    );
    let nonce = first.nonce.expect("a DPoP-Nonce header");
    let mut claims = key.claims("GET", &url, Some(&token));
    claims["nonce"] = json!(nonce);
    let retry = answer(
        http.get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", key.sign(&key.header(), &claims)),
    )
    .await;
    assert_eq!(retry.status, 200, "{}", retry.body);
}

/// A resource server on port 0 built with the crate's axum adapter, DPoP
/// on (with `nonces` if given), its RFC 9728 metadata published;
/// `/protected` needs `reports:read`, `/admin` `keys:manage`. Its base URL.
async fn dpop_resource(issuer: &str, audience: &str, nonces: Option<DpopNonces>) -> String {
    use keyport_verify::axum::{RequireToken, resource_metadata};

    async fn sub(token: keyport_verify::Authenticated) -> axum::Json<Value> {
        axum::Json(json!({"sub": token.sub}))
    }
    let (listener, base) = bind().await;
    let mut dpop = DpopSettings::default();
    if let Some(nonces) = nonces {
        dpop = dpop.nonces(nonces);
    }
    let verifier = Verifier::builder(issuer, audience)
        .resource(&base)
        .scopes_supported(["reports:read", "keys:manage"])
        .dpop(dpop)
        .build()
        .await
        .expect("verifier");
    let metadata = verifier.resource_metadata_path().expect("a resource");
    let needs = |scope: &str| RequireToken::new(verifier.clone()).scope(scope);
    let router = axum::Router::new()
        .route(
            "/protected",
            axum::routing::get(sub).layer(needs("reports:read")),
        )
        .route(
            "/admin",
            axum::routing::get(sub).layer(needs("keys:manage")),
        )
        .route(&metadata, axum::routing::get(resource_metadata))
        .layer(axum::Extension(verifier));
    serve_axum(listener, router);
    base
}

crate::on_both_backends!(
    the_verifier_accepts_keyport_tokens_and_refuses_every_wrong_one,
    made_up_kids_cost_at_most_one_fetch_per_interval,
    a_bound_token_is_refused_as_a_bearer_token,
    the_actix_extractor_answers_as_rfc_6750_says,
    the_example_services_follow_a_rotation_and_outlive_the_issuer,
    dpop_bound_tokens_need_a_fresh_proof_for_the_request,
);
