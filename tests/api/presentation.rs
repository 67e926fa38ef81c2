//! Other ways to present a key (x-api-key, Bearer <secret>, ?api_key=),
//! "last used", and throttling of failed client authentication.

use std::time::Duration;

use keyport::domain::Principal;
use keyport::service::keys as admin;
use serde_json::json;

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{
    Backend, READ_AND_PUSH, header, json_body, spawn_app_with, spawn_app_with_integration,
    spawn_app_with_token,
};
use reqwest::Method;

async fn the_api_key_itself_works_as_x_api_key_or_bearer(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;

    let pushed = app
        .client
        .post(app.url("/api/v1/webhooks/orders"))
        .header("x-api-key", integration.secret())
        .json(&json!({"via": "x-api-key"}))
        .sent()
        .await;
    assert_eq!(pushed.status(), 201);
    let pulled = app.pull(integration.secret(), "orders", "").await;
    assert_eq!(pulled.status(), 200, "Authorization: Bearer <secret>");
    let pulled = json_body(pulled).await;
    assert_eq!(pulled["records"][0]["data"]["via"], "x-api-key");
    assert_eq!(
        pulled["records"][0]["owner_id"],
        integration.user.id.as_str(),
        "the key acts as its owner"
    );
}

async fn a_presented_key_is_refused_once_revoked_or_malformed(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;
    let key = app.key(&integration.user.email, None).await;
    admin::revoke_key(&app.service(), &Principal::operator(), &key.key.id)
        .await
        .unwrap();

    for (secret, what) in [
        (key.secret.expose().to_owned(), "revoked"),
        (
            keyport::domain::ClientSecret::generate()
                .expose()
                .to_owned(),
            "unknown",
        ),
        (format!("{}x", integration.secret()), "malformed"),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/reports/orders"))
            .header("x-api-key", &secret)
            .sent()
            .await;
        assert_eq!(response.status(), 401, "{what}");
        assert!(header(&response, "www-authenticate").contains("invalid_token"));
    }
}

async fn a_presented_key_never_exceeds_its_owners_permissions(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let response = app
        .client
        .post(app.url("/api/v1/webhooks/orders"))
        .header("x-api-key", integration.secret())
        .json(&json!({}))
        .sent()
        .await;

    assert_eq!(response.status(), 403);
}

async fn the_api_key_query_parameter_is_refused_unless_enabled(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", READ_AND_PUSH).await;
    app.push(&token, "orders", &json!({"n": 1}), None).await;

    let refused = app
        .client
        .get(app.url(&format!(
            "/api/v1/reports/orders?api_key={}",
            integration.secret()
        )))
        .sent()
        .await;
    assert_eq!(refused.status(), 400);
    let body = json_body(refused).await;
    assert_eq!(body["error"], "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("disabled"));

    let enabled = spawn_app_with(backend, &[("KEYPORT_ALLOW_API_KEY_QUERY", "true")]).await;
    let other = enabled.integration("member", READ_AND_PUSH).await;
    let pushed = enabled
        .client
        .post(enabled.url(&format!(
            "/api/v1/webhooks/orders?api_key={}",
            other.secret()
        )))
        .json(&json!({"n": 1}))
        .sent()
        .await;
    assert_eq!(pushed.status(), 201);
    let pulled = enabled
        .client
        .get(enabled.url(&format!(
            "/api/v1/reports/orders?limit=1&api_key={}",
            other.secret()
        )))
        .sent()
        .await;
    assert_eq!(
        pulled.status(),
        200,
        "api_key sits beside the other query parameters"
    );
}

async fn two_credentials_at_once_are_refused(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "member", "reports:read").await;

    let response = app
        .client
        .get(app.url("/api/v1/reports/orders"))
        .bearer_auth(&token)
        .header("x-api-key", integration.secret())
        .sent()
        .await;

    assert_eq!(response.status(), 400);
}

async fn last_used_is_coalesced_and_lands_within_the_flush_interval(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_LAST_USED_FLUSH_SECONDS", "1")]).await;
    let integration = app.integration("member", "reports:read").await;
    let before = keyport::domain::now();

    app.token_for(&integration).await;
    let right_after = admin::find_key(
        &app.service(),
        &Principal::operator(),
        integration.client_id(),
    )
    .await
    .unwrap();
    assert!(
        right_after.last_used_at.is_none(),
        "the token request itself wrote to the database"
    );

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = admin::find_key(
        &app.service(),
        &Principal::operator(),
        integration.client_id(),
    )
    .await
    .unwrap();
    let used = later.last_used_at.expect("last used recorded");
    assert!(used >= before && used <= keyport::domain::now());
}

async fn a_guessing_address_is_throttled_while_the_integration_elsewhere_works(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "3")]).await;
    let integration = app.integration("member", "reports:read").await;
    let wrong = keyport::domain::ClientSecret::generate();

    for _ in 0..3 {
        let response = app
            .request_token(integration.client_id(), wrong.expose())
            .await;
        assert_eq!(response.status(), 401);
    }
    let throttled = app
        .token_answer(
            integration.client_id(),
            integration.secret(),
            429,
            "the guessing address is slowed down",
        )
        .await;
    assert!(throttled.headers().contains_key("retry-after"));

    // The real integration calls from another address.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let response = client_credentials(
        &elsewhere,
        app.url("/oauth/token"),
        integration.client_id(),
        integration.secret(),
    )
    .sent()
    .await;
    assert_eq!(response.status(), 200);
}

async fn whoami_tells_who_each_credential_acts_as(backend: Backend) {
    let (app, integration, token) = spawn_app_with_token(backend, "admin", "reports:read").await;
    let session = app
        .session_for(&integration.user.email, "correct horse battery staple")
        .await;

    for (credential, kind, client_id) in [
        (
            token.as_str(),
            "access_token",
            Some(integration.client_id()),
        ),
        (
            integration.secret(),
            "api_key",
            Some(integration.client_id()),
        ),
        (session.as_str(), "session", None),
    ] {
        let response = app.get_as("/api/v1/whoami", credential).await;
        assert_eq!(response.status(), 200, "{kind}");
        let body = json_body(response).await;
        assert_eq!(body["credential"], kind);
        assert_eq!(body["sub"], integration.user.id.as_str(), "{kind}");
        assert_eq!(body["tenant_id"], integration.tenant.id.as_str(), "{kind}");
        assert_eq!(body["role"], "admin", "{kind}");
        assert_eq!(body["client_id"].as_str(), client_id, "{kind}");
    }
    app.store.close().await;
    let offline = app.get_as("/api/v1/whoami", &token).await;
    assert_eq!(offline.status(), 200, "an access token needs no database");
}

/// `kps_` and 49 random base62 characters: shaped like a secret, matching none.
fn garbage_secret() -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let body: String = (0..4)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .take(49)
        .map(|b| BASE62[usize::from(b) % 62] as char)
        .collect();
    format!("kps_{body}")
}

/// Eleven different bad x-api-key values from one address do not lock the
/// other x-api-key callers at that address out: the real integration works.
async fn bad_api_keys_do_not_lock_a_good_key_out_of_the_same_address(backend: Backend) {
    let (app, good) = spawn_app_with_integration(backend, "member", "reports:read").await;

    for _ in 0..11 {
        let bad = garbage_secret();
        let response = app
            .request_with_key(Method::GET, "/api/v1/whoami", &bad)
            .sent()
            .await;
        assert_eq!(response.status(), 401, "{bad}");
    }

    let response = app
        .request_with_key(Method::GET, "/api/v1/whoami", good.secret())
        .sent()
        .await;
    assert_eq!(response.status(), 200, "the good key is locked out");
}

/// One bad key repeated: throttled with 429 and Retry-After (not 401
/// forever, with no hint to back off), while a good key still works.
async fn a_repeated_bad_api_key_is_throttled_with_retry_after(backend: Backend) {
    let (app, good) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let bad = garbage_secret();

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..12 {
        let response = app
            .request_with_key(Method::GET, "/api/v1/whoami", &bad)
            .sent()
            .await;
        statuses.push(response.status().as_u16());
        last = Some(response);
    }
    let last = last.unwrap();
    assert_eq!(last.status(), 429, "{statuses:?}");
    assert!(last.headers().contains_key("retry-after"));
    assert!(
        statuses[..10].iter().all(|s| *s == 401),
        "the first ten are plain refusals: {statuses:?}"
    );

    let response = app
        .request_with_key(Method::GET, "/api/v1/whoami", good.secret())
        .sent()
        .await;
    assert_eq!(response.status(), 200, "the good key is throttled too");
}

crate::on_both_backends!(
    whoami_tells_who_each_credential_acts_as,
    the_api_key_itself_works_as_x_api_key_or_bearer,
    a_presented_key_is_refused_once_revoked_or_malformed,
    a_presented_key_never_exceeds_its_owners_permissions,
    the_api_key_query_parameter_is_refused_unless_enabled,
    two_credentials_at_once_are_refused,
    last_used_is_coalesced_and_lands_within_the_flush_interval,
    a_guessing_address_is_throttled_while_the_integration_elsewhere_works,
    bad_api_keys_do_not_lock_a_good_key_out_of_the_same_address,
    a_repeated_bad_api_key_is_throttled_with_retry_after,
);
