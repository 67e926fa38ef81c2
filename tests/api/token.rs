//! POST /oauth/token: RFC 6749 §4.4, §5.1, §5.2, §2.3.1.

use std::time::Duration;

use base64::Engine;
use keyport::domain::Principal;
use keyport::domain::UserStatus;
use keyport::service::ServiceError as AdminError;
use keyport::service::keys::{self as admin, NewKeyRequest};
use keyport::service::users;
use serde_json::Value;

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, header, json_body, spawn_app, spawn_app_with,
    spawn_app_with_integration,
};

async fn token_is_issued_for_basic_credentials(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;

    let response = app
        .request_token(integration.client_id(), integration.secret())
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body = json_body(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "reports:read webhooks:write");
    assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
}

async fn token_is_issued_for_credentials_in_the_form_body(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let response = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", integration.client_id()),
            ("client_secret", integration.secret()),
        ])
        .sent()
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["scope"], "reports:read");
}

async fn token_is_issued_for_a_json_body(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let response = app
        .client
        .post(app.url("/oauth/token"))
        .json(&serde_json::json!({
            "grant_type": "client_credentials",
            "client_id": integration.client_id(),
            "client_secret": integration.secret(),
        }))
        .sent()
        .await;

    assert_eq!(response.status(), 200);
}

async fn basic_credentials_are_form_url_decoded(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64. Encode
    // every character so a server that skips decoding would fail.
    let encode_all = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let pair = format!(
        "{}:{}",
        encode_all(integration.client_id()),
        encode_all(integration.secret())
    );
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );

    let response = app
        .client
        .post(app.url("/oauth/token"))
        .header("Authorization", header)
        .form(&[("grant_type", "client_credentials")])
        .sent()
        .await;

    assert_eq!(response.status(), 200);
}

async fn two_authentication_methods_at_once_are_invalid_request(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let response = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(integration.client_id(), Some(integration.secret()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", integration.client_id()),
            ("client_secret", integration.secret()),
        ])
        .sent()
        .await;

    assert_eq!(response.status(), 400);
    assert_eq!(json_body(response).await["error"], "invalid_request");
}

async fn assert_invalid_client(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 401);
    let challenge = header(&response, "www-authenticate").to_owned();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = json_body(response).await;
    assert_eq!(body["error"], "invalid_client");
    body
}

async fn a_wrong_secret_is_invalid_client_with_a_basic_challenge(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let other_secret = keyport::domain::ClientSecret::generate();

    let response = app
        .request_token(integration.client_id(), other_secret.expose())
        .await;

    let body = assert_invalid_client(response).await;
    assert!(
        !body.to_string().contains(other_secret.expose()),
        "the secret is echoed"
    );
}

async fn an_unknown_client_id_is_invalid_client(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let unknown = keyport::domain::ClientId::generate();

    let response = app
        .request_token(unknown.as_str(), integration.secret())
        .await;

    assert_invalid_client(response).await;
}

async fn a_malformed_secret_is_refused_before_any_database_work(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let well_formed_but_wrong = keyport::domain::ClientSecret::generate();
    let mut truncated = integration.secret().to_owned();
    truncated.pop();

    // With the database gone, anything that reaches it answers 503...
    app.store.close().await;
    let reaches_db = app
        .token_answer(
            integration.client_id(),
            well_formed_but_wrong.expose(),
            503,
            "a well-formed secret needs the database",
        )
        .await;
    assert_eq!(
        json_body(reaches_db).await["error"],
        "temporarily_unavailable"
    );

    // ...so a 401 here proves the malformed secrets never got that far.
    for malformed in [
        truncated.as_str(),
        "kps_short",
        "not-a-secret",
        "' OR 1=1 --",
    ] {
        let response = app.request_token(integration.client_id(), malformed).await;
        assert_invalid_client(response).await;
    }
}

async fn scope_may_narrow_what_the_key_holds(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;

    let response = app
        .request_scoped_token(
            integration.client_id(),
            integration.secret(),
            "reports:read",
        )
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["scope"], "reports:read");
}

async fn scope_may_never_widen_what_the_key_holds(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let response = app
        .request_scoped_token(
            integration.client_id(),
            integration.secret(),
            "reports:read keys:manage",
        )
        .await;

    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert_eq!(body["error"], "invalid_scope");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("keys:manage")
    );
}

async fn a_key_never_holds_more_than_its_owner_currently_may(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", READ_AND_PUSH).await;
    let narrowed_key = app
        .key(&integration.user.email, Some("webhooks:write"))
        .await;

    users::change_user(
        &app.service(),
        &Principal::operator(),
        &integration.user.email,
        users::UserChange {
            role: None,
            permissions: Some("reports:read"),
        },
    )
    .await
    .unwrap();

    let inherited = json_body(
        app.request_token(integration.client_id(), integration.secret())
            .await,
    )
    .await;
    assert_eq!(inherited["scope"], "reports:read");
    let response = app
        .token_answer(
            &narrowed_key.key.client_id,
            narrowed_key.secret.expose(),
            400,
            "a key whose only scope was withdrawn gets nothing",
        )
        .await;
    assert_eq!(json_body(response).await["error"], "invalid_scope");
}

async fn a_key_cannot_be_created_with_scopes_its_owner_lacks(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let err = app
        .try_key(
            &integration.user.email,
            Some("reports:read,keys:manage"),
            None,
            None,
        )
        .await
        .unwrap_err();

    assert!(
        matches!(err, AdminError::Invalid(ref m) if m.contains("keys:manage")),
        "{err}"
    );
}

async fn a_revoked_key_gets_no_token(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = app.key(&integration.user.email, None).await;
    app.token_for_key(&key).await;

    admin::revoke_key(&app.service(), &Principal::operator(), &key.key.client_id)
        .await
        .unwrap();

    let body = assert_invalid_client(
        app.request_token(&key.key.client_id, key.secret.expose())
            .await,
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

async fn a_deleted_key_gets_no_token(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = app.key(&integration.user.email, None).await;

    admin::delete_key(&app.service(), &Principal::operator(), &key.key.id, None)
        .await
        .unwrap();

    assert_invalid_client(
        app.request_token(&key.key.client_id, key.secret.expose())
            .await,
    )
    .await;
}

async fn an_expired_key_gets_no_token_from_its_expiry_instant(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let short_lived = app
        .key_with(
            &integration.user.email,
            None,
            Some(Duration::from_secs(5)),
            None,
        )
        .await;
    // Five seconds leaves room for a busy machine to ask before the expiry;
    // the wait then runs to the stored instant rather than a guessed sleep.
    app.token_for_key(&short_lived).await;

    let expires_at = short_lived.key.expires_at.expect("the key expires");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let until_expiry = Duration::from_secs(expires_at as u64 + 1).saturating_sub(now);
    tokio::time::sleep(until_expiry).await;

    let body = assert_invalid_client(
        app.request_token(&short_lived.key.client_id, short_lived.secret.expose())
            .await,
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

async fn a_disabled_owner_gets_no_token(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    users::set_user_status(
        &app.service(),
        &Principal::operator(),
        &integration.user.email,
        UserStatus::Disabled,
    )
    .await
    .unwrap();

    assert_invalid_client(
        app.request_token(integration.client_id(), integration.secret())
            .await,
    )
    .await;
}

async fn a_key_may_carry_its_own_token_lifetime(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let key = app
        .key_with(
            &integration.user.email,
            None,
            None,
            Some(Duration::from_secs(120)),
        )
        .await;

    let body = json_body(
        app.request_token(&key.key.client_id, key.secret.expose())
            .await,
    )
    .await;

    assert_eq!(body["expires_in"], 120);
}

async fn a_token_lifetime_above_the_maximum_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_MAX_TOKEN_TTL_SECONDS", "900")]).await;
    let integration = app.integration("member", "reports:read").await;

    let err = app
        .try_key(
            &integration.user.email,
            None,
            None,
            Some(Duration::from_secs(901)),
        )
        .await
        .unwrap_err();

    assert!(
        matches!(err, AdminError::Invalid(ref m) if m.contains("900")),
        "{err}"
    );
}

async fn the_default_token_lifetime_is_configurable(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_TOKEN_TTL_SECONDS", "60")]).await;
    let integration = app.integration("member", "reports:read").await;

    let body = json_body(
        app.request_token(integration.client_id(), integration.secret())
            .await,
    )
    .await;

    assert_eq!(body["expires_in"], 60);
}

async fn a_fourth_active_key_is_refused(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let second = app.key(&integration.user.email, None).await;
    app.key(&integration.user.email, None).await;

    let err = app
        .try_key(&integration.user.email, None, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::KeyLimitReached { limit: 3 }),
        "{err}"
    );

    admin::revoke_key(&app.service(), &Principal::operator(), &second.key.id)
        .await
        .unwrap();
    app.key(&integration.user.email, None).await;
}

async fn concurrent_key_creations_never_exceed_the_limit(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let attempts = (0..12).map(|_| {
        let service = app.service();
        let email = integration.user.email.clone();
        tokio::spawn(async move {
            admin::create_key(
                &service,
                &Principal::operator(),
                NewKeyRequest {
                    owner_email: Some(&email),
                    name: "race",
                    scopes: None,
                    expires_in: None,
                    token_ttl: None,
                    sigv4: false,
                },
            )
            .await
        })
    });
    let results = futures_util::future::join_all(attempts).await;

    let created = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(AdminError::KeyLimitReached { .. }))))
        .count();
    assert_eq!(created, 2, "one key existed already; the limit is 3");
    assert_eq!(refused, 10);
}

async fn token_request_errors_use_the_rfc_6749_codes(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let id = integration.client_id();
    let secret = integration.secret();
    let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
        (
            "no grant_type",
            Some("application/x-www-form-urlencoded"),
            format!("client_id={id}&client_secret={secret}"),
            400,
            "invalid_request",
        ),
        (
            "password grant",
            Some("application/x-www-form-urlencoded"),
            format!("grant_type=password&client_id={id}&client_secret={secret}"),
            400,
            "unsupported_grant_type",
        ),
        (
            "repeated grant_type",
            Some("application/x-www-form-urlencoded"),
            format!(
                "grant_type=client_credentials&grant_type=client_credentials&client_id={id}&client_secret={secret}"
            ),
            400,
            "invalid_request",
        ),
        (
            "text/plain body",
            Some("text/plain"),
            "grant_type=client_credentials".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "no credentials",
            Some("application/x-www-form-urlencoded"),
            "grant_type=client_credentials".to_owned(),
            401,
            "invalid_client",
        ),
        (
            "id without secret",
            Some("application/x-www-form-urlencoded"),
            format!("grant_type=client_credentials&client_id={id}"),
            401,
            "invalid_client",
        ),
        (
            "invalid JSON",
            Some("application/json"),
            "{\"grant_type\":".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "JSON array",
            Some("application/json"),
            "[1,2]".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "malformed scope",
            Some("application/x-www-form-urlencoded"),
            format!(
                "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=%22%3B"
            ),
            400,
            "invalid_scope",
        ),
        (
            "foreign resource",
            Some("application/x-www-form-urlencoded"),
            format!(
                "grant_type=client_credentials&client_id={id}&client_secret={secret}&resource=https://evil.example"
            ),
            400,
            "invalid_target",
        ),
        (
            "bad percent-encoding",
            Some("application/x-www-form-urlencoded"),
            "grant_type=client_credentials&client_id=%FF%FE".to_owned(),
            401,
            "invalid_client",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let mut request = app.client.post(app.url("/oauth/token")).body(body);
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        let response = request.sent().await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body = json_body(response).await;
        assert_eq!(body["error"], code, "{what}: {body}");
        assert!(body["error_description"].is_string(), "{what}");
    }
}

async fn the_configured_audience_may_be_named_as_the_resource(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;

    let response = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(integration.client_id(), Some(integration.secret()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", app.settings.tokens.audience.as_str()),
        ])
        .sent()
        .await;

    assert_eq!(response.status(), 200);
}

async fn oversized_token_requests_are_refused_cleanly(backend: Backend) {
    let app = spawn_app(backend).await;
    let huge = format!(
        "grant_type=client_credentials&padding={}",
        "a".repeat(64 * 1024)
    );

    let response = app
        .client
        .post(app.url("/oauth/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(huge)
        .sent()
        .await;

    assert_eq!(response.status(), 413);
    assert_eq!(json_body(response).await["error"], "invalid_request");
}

crate::on_both_backends!(
    token_is_issued_for_basic_credentials,
    token_is_issued_for_credentials_in_the_form_body,
    token_is_issued_for_a_json_body,
    basic_credentials_are_form_url_decoded,
    two_authentication_methods_at_once_are_invalid_request,
    a_wrong_secret_is_invalid_client_with_a_basic_challenge,
    an_unknown_client_id_is_invalid_client,
    a_malformed_secret_is_refused_before_any_database_work,
    scope_may_narrow_what_the_key_holds,
    scope_may_never_widen_what_the_key_holds,
    a_key_never_holds_more_than_its_owner_currently_may,
    a_key_cannot_be_created_with_scopes_its_owner_lacks,
    a_revoked_key_gets_no_token,
    a_deleted_key_gets_no_token,
    an_expired_key_gets_no_token_from_its_expiry_instant,
    a_disabled_owner_gets_no_token,
    a_key_may_carry_its_own_token_lifetime,
    a_token_lifetime_above_the_maximum_is_refused,
    the_default_token_lifetime_is_configurable,
    a_fourth_active_key_is_refused,
    concurrent_key_creations_never_exceed_the_limit,
    token_request_errors_use_the_rfc_6749_codes,
    the_configured_audience_may_be_named_as_the_resource,
    oversized_token_requests_are_refused_cleanly,
);
