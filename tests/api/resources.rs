//! Report and webhook endpoints as resource servers: RFC 6750 errors, scopes,
//! and who sees which records.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyport::tokens::{SigningAlgorithm, SigningKey};
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, TestApp, header, json_body, spawn_app, spawn_app_with_integration,
    spawn_app_with_token,
};

/// The key the server signs with, read from its database, to forge tokens
/// that differ from real ones in exactly one way.
pub(crate) async fn server_signing_key(app: &TestApp) -> SigningKey {
    let row = app
        .store
        .publishable_signing_keys(0)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.state == "active")
        .expect("an active signing key");
    SigningKey::from_pem(
        Some(&row.kid),
        row.algorithm.parse().unwrap(),
        &row.private_key_pem,
    )
    .unwrap()
}

pub(crate) fn valid_claims(app: &TestApp, sub: &str, tenant: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": app.settings.tokens.issuer,
        "aud": app.settings.tokens.audience,
        "sub": sub,
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "client_id": "kpc_forged",
        "scope": "reports:read webhooks:write",
        "tenant_id": tenant,
        "roles": ["admin"],
    })
}

fn sign(key: &SigningKey, claims: &Value, typ: Option<&str>, kid: Option<&str>) -> String {
    let mut header = Header::new(key.algorithm.jwt_algorithm());
    header.typ = typ.map(str::to_owned);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

pub(crate) async fn assert_invalid_token(app: &TestApp, token: &str, what: &str) {
    let response = app.pull(token, "orders", "").await;
    assert_eq!(response.status(), 401, "{what}");
    let challenge = header(&response, "www-authenticate").to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"keyport\""),
        "{what}: {challenge}"
    );
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert_eq!(
        json_body(response).await["error"],
        "invalid_token",
        "{what}"
    );
}

async fn a_request_without_a_token_gets_a_bare_bearer_challenge(backend: Backend) {
    let app = spawn_app(backend).await;
    for (method, path) in [
        ("GET", "/api/v1/reports/orders"),
        ("POST", "/api/v1/webhooks/orders"),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .sent()
            .await;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"keyport\""
        );
    }
}

async fn invalid_tokens_are_refused_with_invalid_token(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "admin", READ_AND_PUSH).await;
    let real = app.token_for(&integration).await;
    let key = server_signing_key(&app).await;
    let kid = key.kid.clone();
    let sub = integration.user.id.as_str();
    let tenant = integration.tenant.id.as_str();
    let now = chrono::Utc::now().timestamp();
    let with = |field: &str, value: Value| {
        let mut claims = valid_claims(&app, sub, tenant);
        claims[field] = value;
        sign(&key, &claims, Some("at+jwt"), Some(&kid))
    };
    let (other_key, _) = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let parts: Vec<&str> = real.split('.').collect();
    let tampered_payload = {
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["scope"] = json!("reports:read webhooks:write keys:manage");
        URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let none_header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string());
    let hs256 = {
        // Algorithm confusion: HMAC keyed with the public key.
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.clone());
        let public = serde_json::to_vec(&key.jwk).unwrap();
        jsonwebtoken::encode(
            &header,
            &valid_claims(&app, sub, tenant),
            &EncodingKey::from_secret(&public),
        )
        .unwrap()
    };

    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-jwt".into()),
        ("expired", with("exp", json!(now - 3600))),
        ("not valid yet", with("nbf", json!(now + 3600))),
        ("issued in the future", with("iat", json!(now + 3600))),
        ("wrong issuer", with("iss", json!("https://evil.example"))),
        ("wrong audience", with("aud", json!("another-api"))),
        (
            "typ missing",
            sign(&key, &valid_claims(&app, sub, tenant), None, Some(&kid)),
        ),
        (
            "typ JWT",
            sign(
                &key,
                &valid_claims(&app, sub, tenant),
                Some("JWT"),
                Some(&kid),
            ),
        ),
        (
            "no kid",
            sign(&key, &valid_claims(&app, sub, tenant), Some("at+jwt"), None),
        ),
        (
            "unknown key",
            sign(
                &other_key,
                &valid_claims(&app, sub, tenant),
                Some("at+jwt"),
                Some(&other_key.kid),
            ),
        ),
        (
            "another key under our kid",
            sign(
                &other_key,
                &valid_claims(&app, sub, tenant),
                Some("at+jwt"),
                Some(&kid),
            ),
        ),
        ("alg none", format!("{none_header}.{}.", parts[1])),
        ("signature stripped", format!("{}.{}.", parts[0], parts[1])),
        (
            "payload tampered",
            format!("{}.{}.{}", parts[0], tampered_payload, parts[2]),
        ),
        ("HS256 with the public key", hs256),
        ("huge", "a".repeat(100_000)),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
    ];
    for (what, token) in cases {
        assert_invalid_token(&app, &token, what).await;
    }
    assert_eq!(
        app.pull(&real, "orders", "").await.status(),
        200,
        "the real token still works"
    );
}

async fn a_token_without_the_needed_scope_gets_insufficient_scope(backend: Backend) {
    let (app, reader) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let token = app.token_for(&reader).await;

    let response = app.push(&token, "orders", &json!({"n": 1}), None).await;

    assert_eq!(response.status(), 403);
    let challenge = header(&response, "www-authenticate").to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"webhooks:write\""),
        "{challenge}"
    );
    assert_eq!(json_body(response).await["error"], "insufficient_scope");

    let writer = app.integration("member", "webhooks:write").await;
    let response = app.pull(&app.token_for(&writer).await, "orders", "").await;
    assert_eq!(response.status(), 403);
}

async fn a_malformed_authorization_header_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    for value in ["Basic abc", "Bearer", "Bearer    ", "Token xyz"] {
        let response = app
            .client
            .get(app.url("/api/v1/reports/orders"))
            .header("Authorization", value)
            .sent()
            .await;
        assert_eq!(response.status(), 400, "{value}");
        assert_eq!(
            json_body(response).await["error"],
            "invalid_request",
            "{value}"
        );
    }
}

async fn members_see_their_own_records_and_admins_their_whole_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("Acme").await;
    let admin = app
        .user(&tenant, "admin@acme.io", "admin", READ_AND_PUSH)
        .await;
    let ana = app
        .user(&tenant, "ana@acme.io", "member", READ_AND_PUSH)
        .await;
    let bob = app
        .user(&tenant, "bob@acme.io", "member", READ_AND_PUSH)
        .await;
    let admin_token = app.token_for_key(&app.key(&admin.email, None).await).await;
    let ana_token = app.token_for_key(&app.key(&ana.email, None).await).await;
    let bob_token = app.token_for_key(&app.key(&bob.email, None).await).await;

    for (token, who) in [
        (&ana_token, "ana"),
        (&bob_token, "bob"),
        (&admin_token, "admin"),
    ] {
        let response = app.push(token, "orders", &json!({"by": who}), None).await;
        assert_eq!(response.status(), 201);
    }

    let seen_by = |token: &str| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let body = json_body(app.pull(&token, "orders", "").await).await;
            let mut who: Vec<String> = body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["data"]["by"].as_str().unwrap().to_owned())
                .collect();
            who.sort();
            who
        }
    };
    assert_eq!(seen_by(&ana_token).await, vec!["ana"]);
    assert_eq!(seen_by(&bob_token).await, vec!["bob"]);
    assert_eq!(seen_by(&admin_token).await, vec!["admin", "ana", "bob"]);
}

async fn no_token_ever_sees_another_tenants_records(backend: Backend) {
    let (app, acme) = spawn_app_with_integration(backend, "admin", READ_AND_PUSH).await;
    let globex = app.integration("admin", READ_AND_PUSH).await;
    let acme_token = app.token_for(&acme).await;
    let globex_token = app.token_for(&globex).await;
    let pushed = json_body(
        app.push(&acme_token, "orders", &json!({"secret": "acme only"}), None)
            .await,
    )
    .await;
    let record_id = pushed["ids"][0].as_str().unwrap().to_owned();

    // The same collection name in another tenant is another collection:
    // empty for Globex.
    let globex_view = app.pull(&globex_token, "orders", "").await;
    assert_eq!(globex_view.status(), 200);
    assert_eq!(json_body(globex_view).await["records"], json!([]));
    // Guessing the record's id does not help.
    let by_id = app
        .client
        .get(app.url(&format!("/api/v1/reports/orders/{record_id}")))
        .bearer_auth(&globex_token)
        .sent()
        .await;
    assert_eq!(by_id.status(), 404);
    let own = app
        .client
        .get(app.url(&format!("/api/v1/reports/orders/{record_id}")))
        .bearer_auth(&acme_token)
        .sent()
        .await;
    assert_eq!(own.status(), 200);
    assert_eq!(json_body(own).await["data"]["secret"], "acme only");
}

async fn a_member_cannot_read_a_colleagues_record_by_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("Initech").await;
    let ana = app
        .user(&tenant, "ana@initech.io", "member", READ_AND_PUSH)
        .await;
    let bob = app
        .user(&tenant, "bob@initech.io", "member", READ_AND_PUSH)
        .await;
    let ana_token = app.token_for_key(&app.key(&ana.email, None).await).await;
    let bob_token = app.token_for_key(&app.key(&bob.email, None).await).await;
    let pushed = json_body(app.push(&ana_token, "orders", &json!({"n": 1}), None).await).await;
    let id = pushed["ids"][0].as_str().unwrap();

    let response = app
        .client
        .get(app.url(&format!("/api/v1/reports/orders/{id}")))
        .bearer_auth(&bob_token)
        .sent()
        .await;

    assert_eq!(response.status(), 404);
}

async fn cursor_pagination_walks_every_record_once_in_order(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "admin", READ_AND_PUSH).await;
    let batch: Vec<Value> = (0..23).map(|n| json!({"n": n})).collect();
    let pushed = json_body(app.push(&token, "events", &Value::Array(batch), None).await).await;
    let pushed_ids: Vec<String> = pushed["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();

    let walked = app.pull_all_ids(&token, "events", 5).await;

    assert_eq!(walked, pushed_ids);
    let first_page = json_body(app.pull(&token, "events", "?limit=5").await).await;
    assert_eq!(first_page["records"].as_array().unwrap().len(), 5);
    assert_eq!(first_page["records"][0]["data"]["n"], 0);
    let last_page = json_body(app.pull(&token, "events", "?limit=50").await).await;
    assert!(last_page["next_cursor"].is_null());
}

async fn bad_report_queries_are_clear_400s(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "admin", READ_AND_PUSH).await;
    app.push(&token, "orders", &json!({"n": 1}), None).await;

    for (query, code) in [
        ("?limit=0", "invalid_query"),
        ("?limit=501", "invalid_query"),
        ("?limit=ten", "invalid_query"),
        ("?limit=-1", "invalid_query"),
        ("?colour=blue", "invalid_query"),
        ("?cursor=%%%", "invalid_cursor"),
        ("?cursor=bm90LWEtdXVpZA", "invalid_cursor"),
        ("?cursor='%20OR%201=1--", "invalid_cursor"),
    ] {
        let response = app.pull(&token, "orders", query).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(json_body(response).await["error"], code, "{query}");
    }
    for collection in [
        "orders;DROP%20TABLE%20records",
        "'%20OR%20'1'='1",
        "a%20b",
        "-x",
        "%C3%BC",
    ] {
        let response = app.pull(&token, collection, "").await;
        assert_eq!(response.status(), 400, "{collection}");
        assert_eq!(
            json_body(response).await["error"],
            "invalid_collection",
            "{collection}"
        );
    }
    let response = app.pull(&token, "orders/not-a-uuid", "").await;
    assert_eq!(response.status(), 404);

    // A secret pasted where the collection goes is refused, on pulls and
    // pushes, without being repeated in the answer.
    let secret = integration.secret();
    for response in [
        app.pull(&token, secret, "").await,
        app.push(&token, secret, &json!({"n": 1}), None).await,
    ] {
        assert_eq!(response.status(), 400);
        let body = response.text().await.unwrap();
        assert!(!body.contains(secret), "the secret is echoed: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_collection", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("looks like a Keyport secret"),
            "{body}"
        );
    }
}

async fn unknown_paths_and_methods_answer_in_the_documented_format(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app.get("/api/v2/nothing").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(json_body(missing).await["error"], "not_found");
    let wrong_method = app.get("/oauth/token").await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(json_body(wrong_method).await["error"], "method_not_allowed");
}

async fn token_validation_needs_no_database_round_trip(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "admin", READ_AND_PUSH).await;

    app.store.close().await;

    // Past authentication, the report query itself needs the database: 503.
    let valid = app.pull(&token, "orders", "").await;
    assert_eq!(
        valid.status(),
        503,
        "a valid token got past validation with no database"
    );
    assert!(valid.headers().contains_key("retry-after"));
    assert_eq!(json_body(valid).await["error"], "unavailable");
    // An invalid token is refused by validation alone.
    assert_invalid_token(
        &app,
        &format!("{token}x"),
        "tampered signature, no database",
    )
    .await;
}

async fn a_one_megabyte_token_is_refused_before_it_is_read(backend: Backend) {
    let app = spawn_app(backend).await;
    // The server closes the connection after refusing the head: use a
    // client that keeps no pooled connection.
    let once = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let response = once
        .get(app.url("/api/v1/reports/orders"))
        .bearer_auth("a".repeat(1024 * 1024))
        .sent()
        .await;

    // A head this large never reaches token parsing: 431, not 401 or 5xx.
    assert_eq!(response.status(), 431);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

crate::on_both_backends!(
    a_one_megabyte_token_is_refused_before_it_is_read,
    token_validation_needs_no_database_round_trip,
    a_request_without_a_token_gets_a_bare_bearer_challenge,
    invalid_tokens_are_refused_with_invalid_token,
    a_token_without_the_needed_scope_gets_insufficient_scope,
    a_malformed_authorization_header_is_invalid_request,
    members_see_their_own_records_and_admins_their_whole_tenant,
    no_token_ever_sees_another_tenants_records,
    a_member_cannot_read_a_colleagues_record_by_id,
    cursor_pagination_walks_every_record_once_in_order,
    bad_report_queries_are_clear_400s,
    unknown_paths_and_methods_answer_in_the_documented_format,
);
