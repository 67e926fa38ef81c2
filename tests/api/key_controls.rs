//! Key controls: rolling with a grace period, disabling and enabling, the
//! source-address allow-list, labels and descriptions, and last-use detail,
//! through the API and the `keyport` binary, with the bad input each refuses.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{
    Backend, TestApp, claims_of, colleague, eventually, json_body, keyport, keyport_json, person,
    s, spawn_app, spawn_app_with, status_and_json, strings_in,
};

/// A roll's grace may last an hour at most; a user may hold five keys.
const HOUR_GRACE: &[(&str, &str)] = &[
    ("KEYPORT_MAX_ROLL_GRACE_SECONDS", "3600"),
    ("KEYPORT_MAX_ACTIVE_KEYS_PER_USER", "5"),
];

async fn roll(app: &TestApp, credential: &str, key: &str, body: Option<Value>) -> Response {
    let mut request = app.api(
        Method::POST,
        &format!("/api/v1/keys/{key}/roll"),
        credential,
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.sent().await
}

async fn show(app: &TestApp, credential: &str, key: &str) -> Value {
    let response = app.get_as(&format!("/api/v1/keys/{key}"), credential).await;
    assert_eq!(response.status(), 200);
    json_body(response).await
}

async fn post(app: &TestApp, credential: &str, path: &str) -> (u16, Value) {
    let response = app.post(path, credential).await;
    status_and_json(response).await
}

async fn patch(app: &TestApp, credential: &str, key: &str, body: Value) -> (u16, Value) {
    app.send_json(
        Method::PATCH,
        &format!("/api/v1/keys/{key}"),
        credential,
        &body,
    )
    .await
}

/// A token request with the key's credentials: (status, body).
async fn token_request(app: &TestApp, key: &Value, forwarded_for: Option<&str>) -> (u16, Value) {
    let mut request = client_credentials(
        &app.client,
        app.url("/oauth/token"),
        s(key, "client_id"),
        s(key, "client_secret"),
    );
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let response = request.sent().await;
    status_and_json(response).await
}

/// A request presenting the key's secret as `x-api-key`.
async fn with_api_key(app: &TestApp, secret: &str, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .header("x-api-key", secret)
        .sent()
        .await;
    status_and_json(response).await
}

/// GET `path` with `token` as the bearer, from `forwarded_for` when given.
async fn get_as(
    app: &TestApp,
    token: &str,
    path: &str,
    forwarded_for: Option<&str>,
) -> (u16, Value) {
    let mut request = app.api(Method::GET, path, token);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let response = request.sent().await;
    status_and_json(response).await
}

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .or_else(|| body["error_description"].as_str())
        .unwrap_or_default()
}

/// Audit events of `action` in the caller's company.
async fn audit(app: &TestApp, session: &str, action: &str) -> Vec<Value> {
    let (status, body) = get_as(
        app,
        session,
        &format!("/api/v1/audit?action={action}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().expect("events").clone()
}

/// A token request for `key` once the server shows a change the CLI made:
/// the CLI is another process, which the server hears of within a second
/// (its credential cache; README, "What Keyport promises").
async fn token_after_cli_change(
    app: &TestApp,
    key: &Value,
    shows: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let changed = Instant::now();
    loop {
        let (status, body) = token_request(app, key, None).await;
        if shows(status, &body) {
            return (status, body);
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the server does not show the CLI's change after {:?}: {status} {body}",
            changed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// --- roll -------------------------------------------------------------------

async fn a_rolled_key_works_until_its_grace_ends_and_its_successor_takes_over(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let old = app
        .create_key_over_http(
            &ana.session,
            json!({
                "name": "ERP nightly sync",
                "scopes": ["reports:read", "keys:manage"],
                "token_ttl_seconds": 300,
                "expires_in_seconds": 86400,
                "description": "pulls invoices at 02:00",
                "labels": {"env": "prod", "team": "finance"},
                "allowed_sources": ["127.0.0.1/32", "2001:db8::/32"],
            }),
        )
        .await;
    assert_eq!(old["signs_webhooks"], true, "the first key signs webhooks");
    let old_id = s(&old, "client_id");

    let rolled = roll(
        &app,
        &ana.session,
        old_id,
        Some(json!({"grace_seconds": 2})),
    )
    .await;
    assert_eq!(rolled.status(), 201);
    assert_eq!(rolled.headers()["cache-control"], "no-store");
    let new = json_body(rolled).await;
    let new_id = s(&new, "client_id");
    assert!(s(&new, "client_secret").starts_with("kps_"), "{new}");
    assert_ne!(new_id, old_id);
    for field in [
        "name",
        "scopes",
        "token_ttl_seconds",
        "description",
        "labels",
        "allowed_sources",
        "owner_id",
    ] {
        assert_eq!(new[field], old[field], "{field} is copied: {new}");
    }
    assert_eq!(new["signs_webhooks"], true, "the mark moved: {new}");
    assert_eq!(new["status"], "active");
    assert_eq!(new["rolled_to"], Value::Null);
    let lifetime = new["expires_at"].as_i64().unwrap() - new["created_at"].as_i64().unwrap();
    assert_eq!(lifetime, 86400, "the old key's lifetime, from now: {new}");

    let old_now = show(&app, &ana.session, old_id).await;
    assert_eq!(old_now["rolled_to"], new_id, "{old_now}");
    assert_eq!(old_now["signs_webhooks"], false, "{old_now}");
    assert_eq!(old_now["status"], "active", "during the grace: {old_now}");
    let old_expiry = old_now["expires_at"].as_i64().unwrap();
    assert!(
        old_expiry - new["created_at"].as_i64().unwrap() <= 2,
        "expires at the end of the grace: {old_now}"
    );

    // During the grace both keys work; the new one carries the same ranges.
    let (status, body) = token_request(&app, &old, None).await;
    assert_eq!(status, 200, "the old key works during the grace: {body}");
    let (status, body) = token_request(&app, &new, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 300, "token lifetime copied");
    assert_eq!(
        claims_of(s(&body, "access_token"))["kp_src"],
        json!(["127.0.0.1/32", "2001:db8::/32"])
    );

    // A key being rolled out is not rolled again.
    let again = roll(&app, &ana.session, old_id, None).await;
    assert_eq!(again.status(), 409);
    let again = json_body(again).await;
    assert_eq!(again["error"], "conflict");
    assert!(
        message(&again).contains("already being rolled out"),
        "{again}"
    );
    assert!(message(&again).contains(new_id), "{again}");

    let events = audit(&app, &ana.session, "key.roll").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["target"], old_id);
    assert!(s(&events[0], "detail").contains(new_id), "{events:?}");
    let marks = audit(&app, &ana.session, "key.mark_webhook_signing").await;
    assert!(
        marks.iter().any(|e| e["target"] == new_id),
        "the moved mark is audited: {marks:?}"
    );

    // After the grace the old key stops; the new one goes on.
    eventually(Duration::from_secs(8), "the old key expires", || async {
        token_request(&app, &old, None).await.0 == 401
    })
    .await;
    let (_, refused) = token_request(&app, &old, None).await;
    assert_eq!(refused["error"], "invalid_client");
    assert_eq!(refused["error_description"], "the key has expired");
    assert_eq!(token_request(&app, &new, None).await.0, 200);
    assert_eq!(show(&app, &ana.session, old_id).await["status"], "expired");
}

async fn rolling_replaces_the_key_against_the_limit_and_is_the_owners_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = person(&app, "admin").await;
    let ana = colleague(&app, &admin.tenant, "member").await;
    let first = app
        .create_key_over_http(&ana.session, json!({"name": "one"}))
        .await;
    app.create_key_over_http(&ana.session, json!({"name": "two"}))
        .await;

    // An admin may revoke or disable a member's key, but not take a new
    // secret that acts as the member.
    let by_admin = roll(&app, &admin.session, s(&first, "id"), None).await;
    assert_eq!(by_admin.status(), 403);
    let by_admin = json_body(by_admin).await;
    assert_eq!(by_admin["error"], "forbidden");
    assert!(message(&by_admin).contains("owner"), "{by_admin}");

    // Two of three: the successor replaces the rolled key, which stops
    // counting while it works out its grace.
    let rolled = roll(&app, &ana.session, s(&first, "id"), None).await;
    assert_eq!(rolled.status(), 201);
    let rolled = json_body(rolled).await;
    // Without a body, the old key keeps 24 hours.
    let old = show(&app, &ana.session, s(&first, "id")).await;
    let grace = old["expires_at"].as_i64().unwrap() - rolled["created_at"].as_i64().unwrap();
    assert!((86399..=86400).contains(&grace), "{old}");

    // So a third key fits, and a fourth does not.
    let third = create_key_status(&app, &ana.session, json!({"name": "three"})).await;
    assert_eq!(third, 201, "a key in its grace does not count");
    let fourth = create_key_status(&app, &ana.session, json!({"name": "four"})).await;
    assert_eq!(fourth, 409, "the limit holds");

    // Three of three: the owner who most needs a zero-downtime roll gets
    // one, and the limit still holds afterwards.
    let at_limit = roll(&app, &ana.session, s(&rolled, "id"), None).await;
    assert_eq!(at_limit.status(), 201);
    let rolled = json_body(at_limit).await;
    let fourth = create_key_status(&app, &ana.session, json!({"name": "four"})).await;
    assert_eq!(fourth, 409, "the limit holds after a roll at the limit");

    // Disabled, revoked or expired keys are not rolled.
    let (status, _) = post(
        &app,
        &ana.session,
        &format!("/api/v1/keys/{}/disable", s(&rolled, "id")),
    )
    .await;
    assert_eq!(status, 200);
    let disabled = roll(&app, &ana.session, s(&rolled, "id"), None).await;
    assert_eq!(disabled.status(), 409);
    assert!(
        message(&json_body(disabled).await).contains("disabled"),
        "a disabled key is not rolled"
    );
}

async fn a_key_cannot_roll_a_key_holding_more_than_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "member").await;
    let full = app
        .create_key_over_http(&ana.session, json!({"name": "full"}))
        .await;
    let narrow = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "narrow", "scopes": ["keys:manage"]}),
        )
        .await;
    let secret = s(&narrow, "client_secret");

    let escalate = app
        .request(
            Method::POST,
            &format!("/api/v1/keys/{}/roll", s(&full, "id")),
            &crate::helpers::Cred::ApiKey(secret.to_owned()),
        )
        .sent()
        .await;
    assert_eq!(escalate.status(), 403);
    let escalate = json_body(escalate).await;
    assert!(
        message(&escalate).contains("more than its own scopes"),
        "{escalate}"
    );
    assert_eq!(
        show(&app, &ana.session, s(&full, "id")).await["rolled_to"],
        Value::Null
    );

    let itself = app
        .request(
            Method::POST,
            &format!("/api/v1/keys/{}/roll", s(&narrow, "id")),
            &crate::helpers::Cred::ApiKey(secret.to_owned()),
        )
        .sent()
        .await;
    assert_eq!(itself.status(), 201, "a key may roll itself");
    assert_eq!(json_body(itself).await["scopes"], json!(["keys:manage"]));
}

async fn create_key_status(app: &TestApp, credential: &str, body: Value) -> u16 {
    app.api(Method::POST, "/api/v1/keys", credential)
        .json(&body)
        .sent()
        .await
        .status()
        .as_u16()
}

async fn a_grace_of_zero_negative_or_above_the_maximum_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, HOUR_GRACE).await;
    let ana = person(&app, "member").await;
    let key = app
        .create_key_over_http(&ana.session, json!({"name": "to roll"}))
        .await;
    let id = s(&key, "id");
    for (grace, says) in [
        (json!(0), "between 1 and 3600"),
        (json!(-5), "between 1 and 3600"),
        (json!(3601), "between 1 and 3600"),
        (json!("1h"), "expected i64"),
    ] {
        let response = roll(
            &app,
            &ana.session,
            id,
            Some(json!({"grace_seconds": grace})),
        )
        .await;
        assert_eq!(response.status(), 422, "grace {grace}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_input", "{body}");
        assert!(message(&body).contains(says), "grace {grace}: {body}");
    }
    let unknown = roll(&app, &ana.session, id, Some(json!({"grace": 5}))).await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(
        show(&app, &ana.session, id).await["rolled_to"],
        Value::Null,
        "nothing was rolled"
    );
    // Without a body, the default is the configured maximum when that is
    // shorter than 24 hours.
    let rolled = json_body(roll(&app, &ana.session, id, None).await).await;
    let old = show(&app, &ana.session, id).await;
    assert_eq!(
        old["expires_at"].as_i64().unwrap() - rolled["created_at"].as_i64().unwrap(),
        3600,
        "{old}"
    );

    // A grace never extends an earlier expiry.
    let soon = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "short-lived", "expires_in_seconds": 60}),
        )
        .await;
    let response = roll(
        &app,
        &ana.session,
        s(&soon, "id"),
        Some(json!({"grace_seconds": 3600})),
    )
    .await;
    assert_eq!(response.status(), 201);
    let successor = json_body(response).await;
    let old = show(&app, &ana.session, s(&soon, "id")).await;
    assert_eq!(old["expires_at"], soon["expires_at"], "{old}");
    assert_eq!(
        successor["expires_at"].as_i64().unwrap() - successor["created_at"].as_i64().unwrap(),
        60,
        "the successor gets the same lifetime: {successor}"
    );
}

// --- disable and enable -----------------------------------------------------

async fn a_disabled_key_is_refused_everywhere_at_once_and_back_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let key = app
        .create_key_over_http(&ana.session, json!({"name": "paused"}))
        .await;
    let witness = app
        .create_key_over_http(&ana.session, json!({"name": "introspects"}))
        .await;
    let id = s(&key, "id");
    let secret = s(&key, "client_secret");
    let (_, issued) = token_request(&app, &key, None).await;
    let token = s(&issued, "access_token").to_owned();
    let introspect = |token: String| {
        let app = &app;
        let witness = &witness;
        async move {
            let response = app
                .client
                .post(app.url("/oauth/introspect"))
                .basic_auth(s(witness, "client_id"), Some(s(witness, "client_secret")))
                .form(&[("token", token.as_str())])
                .sent()
                .await;
            json_body(response).await["active"].clone()
        }
    };
    assert_eq!(introspect(token.clone()).await, true);

    let (status, disabled) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/disable")).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["status"], "disabled");
    assert!(disabled["disabled_at"].is_i64(), "{disabled}");
    assert_eq!(
        disabled["signs_webhooks"], true,
        "a disabled key keeps its mark"
    );

    let (status, body) = token_request(&app, &key, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "the key is disabled");
    let (status, body) = with_api_key(&app, secret, "/api/v1/whoami").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(message(&body), "the key is disabled");
    let (status, body) = get_as(&app, &token, "/api/v1/keys", None).await;
    assert_eq!(
        status, 401,
        "a token of a disabled key manages nothing: {body}"
    );
    assert!(message(&body).contains("disabled"), "{body}");
    assert_eq!(introspect(token.clone()).await, false);
    let (status, _) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/disable")).await;
    assert_eq!(status, 409, "disabled already");
    // Its mark protects it from deletion, as when it was active.
    let delete = app.delete_key(&ana.session, id, s(&key, "client_id")).await;
    assert_eq!(delete.status(), 409);

    let (status, enabled) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/enable")).await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["status"], "active");
    assert_eq!(enabled["disabled_at"], Value::Null);
    assert_eq!(token_request(&app, &key, None).await.0, 200);
    assert_eq!(with_api_key(&app, secret, "/api/v1/whoami").await.0, 200);
    assert_eq!(get_as(&app, &token, "/api/v1/keys", None).await.0, 200);
    assert_eq!(introspect(token.clone()).await, true);
    let (status, _) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/enable")).await;
    assert_eq!(status, 409, "enabled already");

    assert_eq!(audit(&app, &ana.session, "key.disable").await.len(), 1);
    assert_eq!(audit(&app, &ana.session, "key.enable").await.len(), 1);

    // A revoked key stays revoked.
    let (status, _) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/revoke")).await;
    assert_eq!(status, 200);
    let (status, body) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/enable")).await;
    assert_eq!(status, 409);
    assert!(message(&body).contains("never be enabled"), "{body}");
    let (status, _) = post(&app, &ana.session, &format!("/api/v1/keys/{id}/disable")).await;
    assert_eq!(status, 409);
    assert_eq!(show(&app, &ana.session, id).await["status"], "revoked");
}

// --- the allow-list ---------------------------------------------------------

async fn an_allow_list_admits_its_ranges_and_refuses_every_other_address(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "3")]).await;
    let ana = person(&app, "admin").await;
    let here = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "here", "allowed_sources": ["127.0.0.1/32"]}),
        )
        .await;
    let private = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "private", "allowed_sources": ["10.0.0.0/8"]}),
        )
        .await;
    let v6 = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "v6", "allowed_sources": ["2001:db8::/32"]}),
        )
        .await;
    assert_eq!(here["allowed_sources"], json!(["127.0.0.1/32"]));

    let (status, body) = token_request(&app, &here, None).await;
    assert_eq!(status, 200, "{body}");
    let token = s(&body, "access_token").to_owned();
    assert_eq!(claims_of(&token)["kp_src"], json!(["127.0.0.1/32"]));
    assert_eq!(get_as(&app, &token, "/api/v1/keys", None).await.0, 200);
    assert_eq!(
        with_api_key(&app, s(&here, "client_secret"), "/api/v1/whoami")
            .await
            .0,
        200
    );

    for key in [&private, &v6] {
        let (status, body) = token_request(&app, key, None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(
            body["error_description"],
            "this key may not be used from this address"
        );
        let (status, body) = with_api_key(&app, s(key, "client_secret"), "/api/v1/whoami").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_token");
        assert!(message(&body).contains("address"), "{body}");
    }
    // Without trusted proxies, a forged X-Forwarded-For changes nothing.
    let (status, body) = token_request(&app, &private, Some("10.1.2.3")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["error_description"],
        "this key may not be used from this address"
    );
    // Refusals count as failed authentications: after the third, 429.
    let (status, _) = token_request(&app, &private, None).await;
    assert_eq!(status, 401, "the third refusal");
    let (status, body) = token_request(&app, &private, None).await;
    assert_eq!(status, 429, "throttled: {body}");
}

async fn behind_a_trusted_proxy_the_forwarded_address_is_checked(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let ana = person(&app, "admin").await;
    let key = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "office", "allowed_sources": ["10.0.0.0/8"]}),
        )
        .await;
    let inside = Some("10.1.2.3");

    let (status, body) = token_request(&app, &key, inside).await;
    assert_eq!(status, 200, "{body}");
    let token = s(&body, "access_token").to_owned();
    assert_eq!(claims_of(&token)["kp_src"], json!(["10.0.0.0/8"]));
    assert_eq!(token_request(&app, &key, Some("192.0.2.1")).await.0, 401);

    // Keyport's own endpoints refuse the token from outside its ranges.
    assert_eq!(get_as(&app, &token, "/api/v1/whoami", inside).await.0, 200);
    assert_eq!(get_as(&app, &token, "/api/v1/keys", inside).await.0, 200);
    assert_eq!(
        get_as(&app, &token, "/api/v1/reports/orders", inside)
            .await
            .0,
        200
    );
    for path in ["/api/v1/whoami", "/api/v1/keys", "/api/v1/reports/orders"] {
        for outside in [None, Some("192.0.2.1")] {
            let (status, body) = get_as(&app, &token, path, outside).await;
            assert_eq!(status, 401, "{path} from {outside:?}: {body}");
            assert_eq!(body["error"], "invalid_token");
            assert!(message(&body).contains("address"), "{body}");
        }
    }

    // A new allow-list binds the key's tokens at the management endpoints at
    // once; offline checks go by the ranges the token carries.
    let (status, changed) = patch(
        &app,
        &ana.session,
        s(&key, "id"),
        json!({"allowed_sources": ["192.0.2.0/24"]}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["allowed_sources"], json!(["192.0.2.0/24"]));
    let (status, body) = get_as(&app, &token, "/api/v1/keys", inside).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(get_as(&app, &token, "/api/v1/whoami", inside).await.0, 200);
    assert_eq!(token_request(&app, &key, inside).await.0, 401);
    assert_eq!(token_request(&app, &key, Some("192.0.2.9")).await.0, 200);
    let updates = audit(&app, &ana.session, "key.update").await;
    assert!(
        s(&updates[0], "detail").contains("192.0.2.0/24"),
        "{updates:?}"
    );
    // An empty list: anywhere again.
    let (status, changed) = patch(
        &app,
        &ana.session,
        s(&key, "id"),
        json!({"allowed_sources": []}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(changed["allowed_sources"], json!([]));
    let (_, body) = token_request(&app, &key, None).await;
    assert_eq!(claims_of(s(&body, "access_token")).get("kp_src"), None);
}

// --- labels, descriptions, last use -----------------------------------------

async fn labels_and_descriptions_are_listed_and_filter_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let finance = app.create_key_over_http(&ana.session,
        json!({"name": "finance", "labels": {"env": "prod", "team": "finance"}, "description": "month-end close"}),
    )
    .await;
    let ops = app
        .create_key_over_http(
            &ana.session,
            json!({"name": "ops", "labels": {"env": "prod", "team": "ops"}}),
        )
        .await;
    app.create_key_over_http(
        &ana.session,
        json!({"name": "dev", "labels": {"env": "dev"}}),
    )
    .await;
    assert_eq!(finance["labels"], json!({"env": "prod", "team": "finance"}));
    assert_eq!(finance["description"], "month-end close");
    assert_eq!(ops["description"], Value::Null);

    let names = |query: &'static str| {
        let app = &app;
        let session = ana.session.clone();
        async move {
            let (status, body) = get_as(app, &session, &format!("/api/v1/keys{query}"), None).await;
            assert_eq!(status, 200, "{query}: {body}");
            let mut names: Vec<String> = body["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| s(k, "name").to_owned())
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(names("").await, ["dev", "finance", "ops"]);
    assert_eq!(names("?label=env=prod").await, ["finance", "ops"]);
    assert_eq!(names("?label=env=prod&label=team=ops").await, ["ops"]);
    assert_eq!(
        names("?label=env%3Dprod&label=team%3Dfinance").await,
        ["finance"]
    );
    assert!(names("?label=env=staging").await.is_empty());
    assert!(names("?label=env=dev&label=team=ops").await.is_empty());

    let (status, body) = get_as(&app, &ana.session, "/api/v1/keys?label=env", None).await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains("name=value"), "{body}");
    let (status, body) = get_as(&app, &ana.session, "/api/v1/keys?colour=blue", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_query");

    // PATCH replaces the labels, and "" removes the description.
    let (status, changed) = patch(
        &app,
        &ana.session,
        s(&finance, "id"),
        json!({"name": "finance close", "description": "", "labels": {"env": "dev"}}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "finance close");
    assert_eq!(changed["description"], Value::Null);
    assert_eq!(changed["labels"], json!({"env": "dev"}));
    assert_eq!(names("?label=env=dev").await, ["dev", "finance close"]);
    let (status, changed) = patch(&app, &ana.session, s(&ops, "id"), json!({"labels": {}})).await;
    assert_eq!(status, 200);
    assert_eq!(changed["labels"], json!({}));
    assert_eq!(changed["name"], "ops", "what is not sent stays");
}

async fn bad_key_controls_are_answered_4xx_with_a_clear_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "member").await;
    let many_ranges: Vec<String> = (0..21).map(|n| format!("10.{n}.0.0/16")).collect();
    let many_labels: serde_json::Map<String, Value> =
        (0..11).map(|n| (format!("l{n}"), json!("v"))).collect();
    let cases = [
        (
            json!({"allowed_sources": ["10.0.0.0/8", "10.1.0.0/16"]}),
            "overlap",
        ),
        (
            json!({"allowed_sources": ["2001:db8::/32", "2001:db8:1::/48"]}),
            "overlap",
        ),
        (
            json!({"allowed_sources": ["10.0.0.0/8", "10.0.0.0/8"]}),
            "twice",
        ),
        (
            json!({"allowed_sources": ["10.0.0.0/33"]}),
            "not a CIDR range",
        ),
        (json!({"allowed_sources": ["office"]}), "not a CIDR range"),
        (json!({"allowed_sources": ["10.1.2.3/8"]}), "host bits"),
        (json!({"allowed_sources": many_ranges}), "at most 20"),
        (
            json!({"labels": {"env": "pr\u{7}od"}}),
            "control characters",
        ),
        (
            json!({"labels": {"env": "line\nbreak"}}),
            "control characters",
        ),
        (json!({"labels": {"env": "x\u{202E}y"}}), "bidirectional"),
        (json!({"labels": {"Env": "prod"}}), "label name"),
        (json!({"labels": {"env": ""}}), "must not be empty"),
        (json!({"labels": {"env": "x".repeat(65)}}), "longer than 64"),
        (json!({"labels": many_labels}), "at most 10"),
        (json!({"description": "d".repeat(501)}), "longer than 500"),
        (json!({"description": "tab\there"}), "control characters"),
    ];
    for (extra, says) in cases {
        let mut body = json!({"name": "bad"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let response = app
            .api(Method::POST, "/api/v1/keys", &ana.session)
            .json(&body)
            .sent()
            .await;
        let (status, answer) = status_and_json(response).await;
        assert_eq!(status, 422, "{extra}: {answer}");
        assert_eq!(answer["error"], "invalid_input", "{extra}: {answer}");
        assert!(message(&answer).contains(says), "{extra}: {answer}");
    }
    let listed = get_as(&app, &ana.session, "/api/v1/keys", None).await.1;
    assert_eq!(listed["keys"], json!([]), "nothing was created");

    let key = app
        .create_key_over_http(&ana.session, json!({"name": "fine"}))
        .await;
    let id = s(&key, "id");
    for (body, status, says) in [
        (json!({}), 422, "nothing to change"),
        (
            json!({"allowed_sources": ["10.0.0.0/8", "10.0.0.1/32"]}),
            422,
            "overlap",
        ),
        (
            json!({"labels": {"team": "a\u{0}b"}}),
            422,
            "control characters",
        ),
        (json!({"name": ""}), 422, "must not be empty"),
        (json!({"colour": "blue"}), 422, "colour"),
    ] {
        let (got, answer) = patch(&app, &ana.session, id, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(message(&answer).contains(says), "{body}: {answer}");
    }
}

async fn last_use_records_the_address_and_the_kind(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_LAST_USED_FLUSH_SECONDS", "1")]).await;
    let ana = person(&app, "admin").await;
    let key = app
        .create_key_over_http(&ana.session, json!({"name": "watched"}))
        .await;
    let id = s(&key, "id");
    assert_eq!(key["last_used_kind"], Value::Null);

    assert_eq!(token_request(&app, &key, None).await.0, 200);
    eventually(
        Duration::from_secs(10),
        "a token use is recorded",
        || async { show(&app, &ana.session, id).await["last_used_kind"] == "token" },
    )
    .await;
    let used = show(&app, &ana.session, id).await;
    assert_eq!(used["last_used_from"], "127.0.0.1", "{used}");
    assert!(used["last_used_at"].is_i64());

    // Wait for the next second, so the direct use is the later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        with_api_key(&app, s(&key, "client_secret"), "/api/v1/whoami")
            .await
            .0,
        200
    );
    eventually(
        Duration::from_secs(10),
        "a direct use is recorded",
        || async { show(&app, &ana.session, id).await["last_used_kind"] == "direct" },
    )
    .await;
    assert_eq!(
        show(&app, &ana.session, id).await["last_used_from"],
        "127.0.0.1"
    );
}

// --- the CLI ----------------------------------------------------------------

async fn the_cli_rolls_disables_enables_labels_and_pins_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let old = keyport_json(
        &app,
        &[
            "key",
            "create",
            "--user",
            &ana.email,
            "--name",
            "ERP",
            "--label",
            "env=prod",
            "--label",
            "team=finance",
            "--description",
            "nightly",
            "--allow",
            "127.0.0.1/32,2001:db8::/32",
        ],
    )
    .await;
    assert_eq!(old["labels"], json!({"env": "prod", "team": "finance"}));
    assert_eq!(
        old["allowed_sources"],
        json!(["127.0.0.1/32", "2001:db8::/32"])
    );
    assert_eq!(old["signs_webhooks"], true);
    let other = keyport_json(
        &app,
        &[
            "key", "create", "--user", &ana.email, "--name", "other", "--label", "env=dev",
        ],
    )
    .await;

    // A grace long enough for the commands below to run within it on a
    // loaded machine, short enough for the test to wait it out at the end.
    let new = keyport_json(
        &app,
        &["key", "roll", s(&old, "client_id"), "--grace", "20s"],
    )
    .await;
    assert!(s(&new, "client_secret").starts_with("kps_"), "{new}");
    assert_eq!(new["labels"], old["labels"]);
    assert_eq!(new["allowed_sources"], old["allowed_sources"]);
    assert_eq!(new["description"], "nightly");
    assert_eq!(new["signs_webhooks"], true, "the mark moved");
    assert_eq!(
        token_request(&app, &old, None).await.0,
        200,
        "during the grace"
    );
    assert_eq!(token_request(&app, &new, None).await.0, 200);

    let (code, _, stderr) = keyport(&app, &["key", "roll", s(&old, "client_id")]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("already being rolled out"), "{stderr}");
    let (code, _, stderr) = keyport(
        &app,
        &["key", "roll", s(&new, "client_id"), "--grace", "0s"],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("between 1 and 604800"), "{stderr}");
    let (code, _, stderr) = keyport(
        &app,
        &["key", "roll", s(&new, "client_id"), "--grace", "8d"],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("max_roll_grace_seconds"), "{stderr}");
    let (code, _, stderr) = keyport(
        &app,
        &["key", "roll", s(&new, "client_id"), "--grace", "soon"],
    )
    .await;
    assert_eq!(code, Some(2), "a usage error: {stderr}");

    let listed = keyport_json(
        &app,
        &["key", "list", "--user", &ana.email, "--label", "env=prod"],
    )
    .await;
    let listed = strings_in(&listed, "keys", "client_id");
    assert_eq!(listed, [s(&old, "client_id"), s(&new, "client_id")]);
    let (_, human, _) = keyport(&app, &["key", "list", "--label", "env=dev"]).await;
    assert!(human.contains(s(&other, "client_id")), "{human}");
    assert!(human.contains("labels=env=dev"), "{human}");
    assert!(!human.contains(s(&old, "client_id")), "{human}");

    let disabled = keyport_json(&app, &["key", "disable", s(&new, "client_id")]).await;
    assert_eq!(disabled["status"], "disabled");
    let (_, refused) = token_after_cli_change(&app, &new, |status, _| status != 200).await;
    assert_eq!(refused["error_description"], "the key is disabled");
    let enabled = keyport_json(&app, &["key", "enable", s(&new, "client_id")]).await;
    assert_eq!(enabled["status"], "active");
    token_after_cli_change(&app, &new, |status, _| status == 200).await;

    let pinned = keyport_json(
        &app,
        &[
            "key",
            "update",
            s(&new, "client_id"),
            "--allow",
            "10.0.0.0/8",
            "--no-labels",
        ],
    )
    .await;
    assert_eq!(pinned["allowed_sources"], json!(["10.0.0.0/8"]));
    assert_eq!(pinned["labels"], json!({}));
    let (_, refused) = token_after_cli_change(&app, &new, |status, _| status != 200).await;
    assert_eq!(
        refused["error_description"],
        "this key may not be used from this address"
    );
    let (code, _, stderr) = keyport(
        &app,
        &[
            "key",
            "update",
            s(&new, "client_id"),
            "--allow",
            "10.0.0.0/8,10.2.0.0/16",
        ],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("overlap"), "{stderr}");
    let (code, _, stderr) = keyport(
        &app,
        &[
            "key",
            "update",
            s(&new, "client_id"),
            "--label",
            "bad\u{7}=x",
        ],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("label name"), "{stderr}");

    eventually(Duration::from_secs(60), "the old key expires", || async {
        token_request(&app, &old, None).await.0 == 401
    })
    .await;
    let revoked = keyport_json(&app, &["key", "revoke", s(&new, "client_id")]).await;
    assert_eq!(revoked["status"], "revoked");
    let (code, _, stderr) = keyport(&app, &["key", "enable", s(&new, "client_id")]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("never be enabled"), "{stderr}");
}

crate::on_both_backends!(
    a_rolled_key_works_until_its_grace_ends_and_its_successor_takes_over,
    rolling_replaces_the_key_against_the_limit_and_is_the_owners_alone,
    a_key_cannot_roll_a_key_holding_more_than_itself,
    a_grace_of_zero_negative_or_above_the_maximum_is_refused,
    a_disabled_key_is_refused_everywhere_at_once_and_back_at_once,
    an_allow_list_admits_its_ranges_and_refuses_every_other_address,
    behind_a_trusted_proxy_the_forwarded_address_is_checked,
    labels_and_descriptions_are_listed_and_filter_keys,
    bad_key_controls_are_answered_4xx_with_a_clear_message,
    last_use_records_the_address_and_the_kind,
    the_cli_rolls_disables_enables_labels_and_pins_keys,
);
