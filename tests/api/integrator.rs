//! What a new integrator or operator trips over: the issuer behind the
//! metadata, empty reports, records kept as pushed, caches, and the client
//! address behind a proxy.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, TestApp, header, json_body, spawn_app, spawn_app_with,
    spawn_app_with_integration, spawn_app_with_token,
};

/// With no issuer configured, the metadata names the port the server really
/// listens on (port 0 here), and a resource server that follows it finds the
/// keys that verify the tokens.
async fn the_metadata_follows_the_bound_port_when_no_issuer_is_set(backend: Backend) {
    let app = spawn_app(backend).await;
    let metadata = json_body(app.get("/.well-known/oauth-authorization-server").await).await;
    let issuer = format!("http://127.0.0.1:{}", app.port);
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(
        metadata["token_endpoint"],
        format!("{issuer}/oauth/token").as_str()
    );

    // Follow the metadata, as PyJWKClient or openid-client would.
    let jwks_uri = metadata["jwks_uri"].as_str().unwrap();
    let jwks: Value = app.client.get(jwks_uri).sent().await.json().await.unwrap();
    let integration = app.integration("member", "reports:read").await;
    let token = app.token_for(&integration).await;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[metadata["issuer"].as_str().unwrap()]);
    validation.set_audience(&[app.settings.tokens.audience.as_str()]);
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("the token verifies against what the metadata points to");

    // A configured issuer wins.
    let configured =
        spawn_app_with(backend, &[("KEYPORT_ISSUER", "https://auth.example.com/")]).await;
    let metadata = json_body(
        configured
            .get("/.well-known/oauth-authorization-server")
            .await,
    )
    .await;
    assert_eq!(metadata["issuer"], "https://auth.example.com");
}

/// Polling a collection nobody has pushed to yet is a normal, empty page;
/// 404 is for a record id that does not exist.
async fn an_empty_report_is_an_empty_page(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", "reports:read").await;

    let response = app.pull(&token, "never-pushed", "").await;
    assert_eq!(response.status(), 200);
    let page = json_body(response).await;
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["collection"], "never-pushed");

    let missing = app
        .pull(
            &token,
            "never-pushed",
            "/0190a0a0-0000-7000-8000-000000000000",
        )
        .await;
    assert_eq!(missing.status(), 404);
}

/// Numbers keep every digit, strings every byte, members their order; a
/// member named twice is refused instead of one of them being dropped.
async fn records_come_back_as_they_were_pushed(backend: Backend) {
    let (app, _, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    let pushed = r#"{"z_first": 1, "big": 123456789012345678901234567890, "price": 1.10, "text": "caf\u00e9 \"q\"", "nested": {"b": [1, 2.50e3], "a": null}}"#;
    let response = app
        .client
        .post(app.url("/api/v1/webhooks/fidelity"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(pushed)
        .sent()
        .await;
    assert_eq!(response.status(), 201);

    let page = app.pull(&token, "fidelity", "").await.text().await.unwrap();
    let compact = r#"{"z_first":1,"big":123456789012345678901234567890,"price":1.10,"text":"caf\u00e9 \"q\"","nested":{"b":[1,2.50e3],"a":null}}"#;
    assert!(
        page.contains(compact),
        "the record changed on the way:\n{page}"
    );

    for twice in [r#"{"a":1,"a":2}"#, r#"[{"ok":1},{"x":{"k":1,"k":1}}]"#] {
        let response = app
            .client
            .post(app.url("/api/v1/webhooks/fidelity"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(twice)
            .sent()
            .await;
        assert_eq!(response.status(), 400, "{twice}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_json");
        assert!(
            body["message"].as_str().unwrap().contains("more than once"),
            "{body}"
        );
    }
    let ids = app.pull_all_ids(&token, "fidelity", 50).await;
    assert_eq!(ids.len(), 1, "nothing of the refused pushes was stored");
}

/// An answer to a credential is for that caller only: `no-store`, and
/// `Vary` on the headers that carry credentials (x-api-key is not
/// `Authorization`, so caches would not know otherwise).
async fn answers_to_credentials_are_never_cached(backend: Backend) {
    let (app, integration) =
        spawn_app_with_integration(backend, "admin", "reports:read keys:manage").await;
    let token = app.token_for(&integration).await;
    let session = app
        .session_for(&integration.user.email, "a long enough passphrase")
        .await;
    let paths = [
        "/api/v1/keys",
        "/api/v1/users",
        "/api/v1/audit",
        "/api/v1/whoami",
        "/api/v1/reports/orders",
        &format!("/api/v1/users/{}", integration.user.id),
    ];
    for path in paths {
        for (how, request) in [
            (
                "x-api-key",
                app.client
                    .get(app.url(path))
                    .header("x-api-key", integration.secret()),
            ),
            ("token", app.api(Method::GET, path, &token)),
            ("session", app.api(Method::GET, path, &session)),
        ] {
            let response = request.sent().await;
            assert!(
                response.status().is_success(),
                "{how} {path}: {}",
                response.status()
            );
            assert_eq!(
                response.headers()["cache-control"],
                "no-store",
                "{how} {path}"
            );
            let vary = response.headers()["vary"].to_str().unwrap().to_lowercase();
            assert!(
                vary.contains("authorization") && vary.contains("x-api-key"),
                "{how} {path}: {vary}"
            );
        }
    }
    // Public documents stay cacheable.
    let jwks = app.get("/.well-known/jwks.json").await;
    assert!(header(&jwks, "cache-control").starts_with("public"));
}

async fn bad_token_request(app: &TestApp, client_id: &str, forwarded_for: &str) -> u16 {
    let wrong = keyport::domain::ClientSecret::generate();
    app.client
        .post(app.url("/oauth/token"))
        .basic_auth(client_id, Some(wrong.expose()))
        .header("x-forwarded-for", forwarded_for)
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await
        .status()
        .as_u16()
}

/// From a peer that is not a trusted proxy, `X-Forwarded-For` is ignored:
/// a guesser cannot hop to a fresh throttling bucket by forging it.
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    for n in 0..10 {
        let status =
            bad_token_request(&app, integration.client_id(), &format!("203.0.113.{n}")).await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        bad_token_request(&app, integration.client_id(), "198.51.100.77").await,
        429,
        "every failure counted against the real peer"
    );
}

/// Behind a trusted proxy, each client has its own bucket and the audit
/// trail names the client, not the proxy.
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_source(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_TRUSTED_PROXIES", "127.0.0.1/32, ::1")]).await;
    let integration = app.integration("admin", "reports:read").await;
    for _ in 0..10 {
        assert_eq!(
            bad_token_request(&app, integration.client_id(), "203.0.113.5").await,
            401
        );
    }
    assert_eq!(
        bad_token_request(&app, integration.client_id(), "203.0.113.5").await,
        429,
        "the forwarded client is throttled"
    );
    assert_eq!(
        bad_token_request(&app, integration.client_id(), "203.0.113.6").await,
        401,
        "another client behind the same proxy is not"
    );

    // The audit trail records the client's address for a failed sign-in.
    app.client
        .post(app.url("/api/v1/session"))
        .header("forwarded", "for=\"[2001:db8::9]:4711\";proto=https")
        .json(&json!({"email": integration.user.email, "password": "not the password"}))
        .sent()
        .await;
    let session = app
        .session_for(&integration.user.email, "a long enough passphrase")
        .await;
    let events = app
        .get_json("/api/v1/audit?action=session.sign_in_failed", &session)
        .await;
    assert_eq!(
        events["events"][0]["source_address"], "2001:db8::9",
        "{events}"
    );
}

crate::on_both_backends!(
    the_metadata_follows_the_bound_port_when_no_issuer_is_set,
    an_empty_report_is_an_empty_page,
    records_come_back_as_they_were_pushed,
    answers_to_credentials_are_never_cached,
    a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing,
    behind_a_trusted_proxy_the_forwarded_client_is_the_source,
);
