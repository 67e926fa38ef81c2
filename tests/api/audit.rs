//! GET /api/v1/audit: every create, revoke, delete, mark change, sign-in
//! success or failure, lock and unlock, for admins, never with a secret.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{Backend, json_body, spawn_acme, spawn_app_with};
use crate::helpers::{GRANTABLE, audit_events};

const PASSWORD: &str = "correct horse battery staple";

async fn the_audit_trail_records_key_and_sign_in_events_without_secrets(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_SIGN_IN_MAX_FAILURES", "2")]).await;
    let tenant = app.tenant("Acme").await;
    let admin = app
        .user(
            &tenant,
            "admin@acme.io",
            "admin",
            "reports:read keys:manage",
        )
        .await;
    let ana = app
        .user(&tenant, "ana@acme.io", "member", "reports:read")
        .await;
    let admin_session = app.session_for(&admin.email, PASSWORD).await;
    app.set_password(&ana.email, PASSWORD).await;

    let mut secrets = vec![PASSWORD.to_owned(), admin_session.clone()];
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let created = json_body(
            app.api(Method::POST, "/api/v1/keys", &admin_session)
                .json(&json!({"name": name}))
                .sent()
                .await,
        )
        .await;
        secrets.push(created["client_secret"].as_str().unwrap().to_owned());
        ids.push((
            created["id"].as_str().unwrap().to_owned(),
            created["client_id"].as_str().unwrap().to_owned(),
        ));
    }
    let (first_id, first_client) = &ids[0];
    let (second_id, _) = &ids[1];
    app.post(
        &format!("/api/v1/keys/{second_id}/webhook-signing"),
        &admin_session,
    )
    .await;
    app.post(&format!("/api/v1/keys/{first_id}/revoke"), &admin_session)
        .await;
    let deleted = app.delete_key(&admin_session, first_id, first_client).await;
    assert_eq!(deleted.status(), 204);
    for _ in 0..2 {
        app.sign_in(&ana.email, "wrong password!!").await;
    }
    app.post(&format!("/api/v1/users/{}/unlock", ana.id), &admin_session)
        .await;

    let response = app.get_as("/api/v1/audit?limit=500", &admin_session).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the audit trail"
        );
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    let events = body["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "key.create",
        "key.mark_webhook_signing",
        "key.revoke",
        "key.delete",
        "session.sign_in",
        "session.sign_in_failed",
        "user.lock",
        "user.unlock",
    ] {
        assert!(
            actions.contains(&expected),
            "no {expected} event in {actions:?}"
        );
    }
    let revoke = events.iter().find(|e| e["action"] == "key.revoke").unwrap();
    assert_eq!(revoke["actor"], admin.id.as_str());
    assert_eq!(revoke["target"], first_client.as_str());
    assert_eq!(revoke["source_address"], "127.0.0.1");
    assert!(revoke["created_at"].is_i64());

    let filtered = app
        .get_json("/api/v1/audit?action=key.create", &admin_session)
        .await;
    assert_eq!(filtered["events"].as_array().unwrap().len(), 2);

    let mut walked = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=2&cursor={c}"),
            None => "/api/v1/audit?limit=2".to_owned(),
        };
        let page = app.get_json(&path, &admin_session).await;
        walked += page["events"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(walked, events.len(), "pagination walks every event once");
}

async fn only_admins_read_the_audit_trail_and_only_their_tenants(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let acme = app.tenant("Acme").await;
    let member = app
        .user(&acme, "ana@acme.io", "member", "reports:read keys:manage")
        .await;
    let session = app.session_for(&member.email, PASSWORD).await;
    assert_eq!(app.get_as("/api/v1/audit", &session).await.status(), 403);

    let globex = app.tenant("Globex").await;
    let globex_admin = app
        .user(&globex, "boss@globex.io", "admin", "reports:read")
        .await;
    let globex_session = app.session_for(&globex_admin.email, PASSWORD).await;
    app.api(Method::POST, "/api/v1/keys", &session)
        .json(&json!({"name": "acme key"}))
        .sent()
        .await;
    let seen = app.get_json("/api/v1/audit", &globex_session).await;
    assert!(
        seen["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "key.create")
    );
    for bad in ["?limit=0", "?since=yesterday", "?cursor=zzz", "?colour=red"] {
        let response = app
            .get_as(&format!("/api/v1/audit{bad}"), &globex_session)
            .await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}

/// The audit trail names the credential that acted, not only the user:
/// revocations through x-api-key, through an access token and through a
/// session each carry their credential.
async fn audit_events_name_the_credential_that_acted(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let acting = app.key(&ana.email, None).await; // signs webhooks
    let first = app.key(&ana.email, None).await.key.client_id.clone();
    let second = app.key(&ana.email, None).await.key.client_id.clone();
    let acting_id = acting.key.client_id.clone();

    let by_key = app
        .request_with_key(
            Method::POST,
            &format!("/api/v1/keys/{first}/revoke"),
            acting.secret.expose(),
        )
        .sent()
        .await;
    assert_eq!(by_key.status(), 200);
    let t = app
        .narrowed_token(&acting_id, acting.secret.expose(), None)
        .await;
    let by_token = app.post(&format!("/api/v1/keys/{second}/revoke"), &t).await;
    assert_eq!(by_token.status(), 200);
    let third = app.key(&ana.email, None).await.key.client_id.clone();
    let by_session = app
        .post(&format!("/api/v1/keys/{third}/revoke"), &acme.admin_session)
        .await;
    assert_eq!(by_session.status(), 200);

    let event = |target: String| {
        let session = acme.admin_session.clone();
        let app = &app;
        async move {
            let events = audit_events(
                app,
                &session,
                &[("action", "key.revoke"), ("target", &target)],
            )
            .await;
            assert_eq!(events.len(), 1, "{target}: {events:?}");
            events[0].clone()
        }
    };
    let e = event(first).await;
    assert_eq!(e["credential_kind"], "api_key", "{e}");
    assert_eq!(e["credential_id"], acting_id.as_str(), "{e}");
    assert_eq!(e["actor"], ana.id.as_str(), "{e}");
    let e = event(second).await;
    assert_eq!(e["credential_kind"], "access_token", "{e}");
    assert_eq!(e["credential_id"], acting_id.as_str(), "{e}");
    let e = event(third).await;
    assert_eq!(e["credential_kind"], "session", "{e}");
    let session_id = e["credential_id"].as_str().expect("a session id");
    assert!(!session_id.is_empty());
    assert!(
        !acme.admin_session.contains(session_id) && !session_id.contains(&acme.admin_session),
        "the audit trail holds the session token"
    );
}

/// A failed sign-in is recorded as anonymous, not with the victim's user id
/// as the actor, as if the victim had acted.
async fn a_failed_sign_in_is_recorded_as_anonymous(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", "reports:read").await;
    app.set_password(&ana.email, PASSWORD).await;

    assert_eq!(
        app.sign_in(&ana.email, "not the password at all")
            .await
            .status(),
        401
    );

    let events = audit_events(
        &app,
        &acme.admin_session,
        &[("action", "session.sign_in_failed"), ("target", &ana.email)],
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "anonymous");
    assert_eq!(events[0]["credential_kind"], "none");
    assert!(events[0]["credential_id"].is_null());
}

crate::on_both_backends!(
    the_audit_trail_records_key_and_sign_in_events_without_secrets,
    only_admins_read_the_audit_trail_and_only_their_tenants,
    audit_events_name_the_credential_that_acted,
    a_failed_sign_in_is_recorded_as_anonymous,
);
