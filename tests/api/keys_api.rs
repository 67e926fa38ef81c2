//! The key management API: who may do what to which key.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TestApp, json_body, spawn_acme, spawn_app};
use crate::helpers::{Cred, GRANTABLE, create_key_as, keys_of};

const PASSWORD: &str = "correct horse battery staple";

struct Company {
    admin_session: String,
    ana_session: String,
    bob_session: String,
    ana_email: String,
}

/// Acme: an admin, and members Ana (who may manage keys) and Bob.
async fn company(app: &TestApp, name: &str) -> Company {
    let tenant = app.tenant(name).await;
    let domain = name.to_lowercase();
    let admin = app
        .user(
            &tenant,
            &format!("admin@{domain}.io"),
            "admin",
            "reports:read webhooks:write keys:manage",
        )
        .await;
    let ana = app
        .user(
            &tenant,
            &format!("ana@{domain}.io"),
            "member",
            "reports:read webhooks:write keys:manage",
        )
        .await;
    let bob = app
        .user(
            &tenant,
            &format!("bob@{domain}.io"),
            "member",
            "reports:read",
        )
        .await;
    Company {
        admin_session: app.session_for(&admin.email, PASSWORD).await,
        ana_session: app.session_for(&ana.email, PASSWORD).await,
        bob_session: app.session_for(&bob.email, PASSWORD).await,
        ana_email: ana.email,
    }
}

async fn create_key(app: &TestApp, session: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, "/api/v1/keys", session)
        .json(&body)
        .sent()
        .await
}

async fn keys_are_created_with_the_secret_shown_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;

    let created = create_key(
        &app,
        &acme.ana_session,
        json!({"name": "ERP nightly sync", "scopes": ["reports:read"], "expires_in_seconds": 86400, "token_ttl_seconds": 300}),
    )
    .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let created = json_body(created).await;
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("kps_"));
    assert_eq!(created["scopes"], json!(["reports:read"]));
    assert_eq!(created["token_ttl_seconds"], 300);
    assert_eq!(
        created["signs_webhooks"], true,
        "the first key signs webhooks"
    );

    let listed = app.get_as("/api/v1/keys", &acme.ana_session).await;
    let listed_text = listed.text().await.unwrap();
    assert!(!listed_text.contains(&secret), "the list shows the secret");
    let listed: Value = serde_json::from_str(&listed_text).unwrap();
    let key = &listed["keys"][0];
    for field in [
        "name",
        "client_id",
        "owner_email",
        "scopes",
        "status",
        "created_at",
        "last_used_at",
        "expires_at",
        "signs_webhooks",
    ] {
        assert!(key.get(field).is_some(), "list lacks {field}");
    }
    assert!(key.get("secret_digest").is_none() && key.get("client_secret").is_none());
    assert_eq!(key["status"], "active");

    let token = app
        .request_token(created["client_id"].as_str().unwrap(), &secret)
        .await;
    assert_eq!(json_body(token).await["expires_in"], 300);
}

async fn creating_keys_needs_keys_manage(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;

    let response = create_key(&app, &acme.bob_session, json!({"name": "not allowed"})).await;

    assert_eq!(response.status(), 403);
    let body = json_body(response).await;
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["scope"], "keys:manage");
}

async fn bad_key_requests_are_clear_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    let cases = [
        (json!({}), 422, "invalid_input"),
        (json!({"name": ""}), 422, "invalid_input"),
        (
            json!({"name": "x", "scopes": ["admin:everything"]}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "scopes": ["bad scope\""]}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "token_ttl_seconds": 7200}),
            422,
            "invalid_input",
        ),
        (
            json!({"name": "x", "expires_in_seconds": -5}),
            422,
            "invalid_input",
        ),
        (json!({"name": "x", "colour": "blue"}), 422, "invalid_input"),
        (json!(["name"]), 422, "invalid_input"),
    ];
    for (body, status, code) in cases {
        let response = create_key(&app, &acme.ana_session, body.clone()).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        assert_eq!(json_body(response).await["error"], code, "{body}");
    }
    let not_json = app
        .api(Method::POST, "/api/v1/keys", &acme.ana_session)
        .header("Content-Type", "text/plain")
        .body("name=x")
        .sent()
        .await;
    assert_eq!(not_json.status(), 415);
}

async fn a_fourth_active_key_is_refused_by_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    for n in 0..3 {
        let response =
            create_key(&app, &acme.ana_session, json!({"name": format!("key {n}")})).await;
        assert_eq!(response.status(), 201);
    }

    let fourth = create_key(&app, &acme.ana_session, json!({"name": "key 4"})).await;

    assert_eq!(fourth.status(), 409);
    assert_eq!(json_body(fourth).await["error"], "key_limit_reached");
}

async fn admins_see_every_key_and_members_only_their_own(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    create_key(&app, &acme.ana_session, json!({"name": "ana's"})).await;
    create_key(&app, &acme.admin_session, json!({"name": "admin's"})).await;
    let globex = company(&app, "Globex").await;
    create_key(&app, &globex.ana_session, json!({"name": "globex"})).await;

    let admin_view = app.get_json("/api/v1/keys", &acme.admin_session).await;
    let ana_view = app.get_json("/api/v1/keys", &acme.ana_session).await;
    // Bob may not manage keys at all: listing them is a key operation too.
    let bob_view = app.get_as("/api/v1/keys", &acme.bob_session).await;

    assert_eq!(
        crate::helpers::key_names(&admin_view),
        vec!["admin's", "ana's"]
    );
    assert_eq!(crate::helpers::key_names(&ana_view), vec!["ana's"]);
    assert_eq!(bob_view.status(), 403);
}

async fn a_member_cannot_revoke_or_delete_a_colleagues_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    let admins_key =
        json_body(create_key(&app, &acme.admin_session, json!({"name": "admin's"})).await).await;
    let id = admins_key["id"].as_str().unwrap();

    let revoke = app
        .post(&format!("/api/v1/keys/{id}/revoke"), &acme.ana_session)
        .await;
    assert_eq!(revoke.status(), 403);
    let delete = app
        .delete_key(
            &acme.ana_session,
            id,
            admins_key["client_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(delete.status(), 403);
}

async fn another_tenants_key_does_not_exist_for_you(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    let globex = company(&app, "Globex").await;
    let globex_key =
        json_body(create_key(&app, &globex.ana_session, json!({"name": "globex"})).await).await;
    let id = globex_key["id"].as_str().unwrap();
    let client_id = globex_key["client_id"].as_str().unwrap();

    for path in [
        format!("/api/v1/keys/{id}"),
        format!("/api/v1/keys/{client_id}"),
    ] {
        let response = app.get_as(&path, &acme.admin_session).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let revoke = app
        .post(&format!("/api/v1/keys/{id}/revoke"), &acme.admin_session)
        .await;
    assert_eq!(revoke.status(), 404);
    let key_still_works = app
        .request_token(client_id, globex_key["client_secret"].as_str().unwrap())
        .await;
    assert_eq!(key_still_works.status(), 200);
}

async fn revoking_keeps_the_row_and_is_final(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    create_key(&app, &acme.ana_session, json!({"name": "signer"})).await;
    let key = json_body(create_key(&app, &acme.ana_session, json!({"name": "old"})).await).await;
    let id = key["id"].as_str().unwrap();

    let revoked = app
        .post(&format!("/api/v1/keys/{id}/revoke"), &acme.ana_session)
        .await;
    assert_eq!(revoked.status(), 200);
    let revoked = json_body(revoked).await;
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_i64());

    let again = app
        .post(&format!("/api/v1/keys/{id}/revoke"), &acme.ana_session)
        .await;
    assert_eq!(again.status(), 409);
    let mark = app
        .post(
            &format!("/api/v1/keys/{id}/webhook-signing"),
            &acme.ana_session,
        )
        .await;
    assert_eq!(
        mark.status(),
        409,
        "a revoked key can never become active again"
    );
    let shown = app
        .get_json(&format!("/api/v1/keys/{id}"), &acme.ana_session)
        .await;
    assert_eq!(shown["status"], "revoked");
    let token = app
        .request_token(
            key["client_id"].as_str().unwrap(),
            key["client_secret"].as_str().unwrap(),
        )
        .await;
    assert_eq!(token.status(), 401);
}

async fn deleting_needs_the_exact_confirmation_phrase(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    create_key(&app, &acme.ana_session, json!({"name": "signer"})).await;
    let key =
        json_body(create_key(&app, &acme.ana_session, json!({"name": "temporary"})).await).await;
    let id = key["id"].as_str().unwrap();
    let path = format!("/api/v1/keys/{id}");

    let asked = app.call(Method::DELETE, &path, &acme.ana_session).await;
    assert_eq!(asked.status(), 409);
    let asked = json_body(asked).await;
    assert_eq!(asked["error"], "confirmation_required");
    let phrase = asked["confirmation_phrase"].as_str().unwrap().to_owned();
    assert!(phrase.contains(key["client_id"].as_str().unwrap()));

    let wrong = app
        .api(Method::DELETE, &path, &acme.ana_session)
        .json(&json!({"confirm": "delete it"}))
        .sent()
        .await;
    assert_eq!(wrong.status(), 409);
    assert_eq!(app.get_as(&path, &acme.ana_session).await.status(), 200);

    let confirmed = app
        .api(Method::DELETE, &path, &acme.ana_session)
        .json(&json!({"confirm": phrase}))
        .sent()
        .await;
    assert_eq!(confirmed.status(), 204);
    assert_eq!(app.get_as(&path, &acme.ana_session).await.status(), 404);
}

async fn the_webhook_signing_key_moves_explicitly_and_is_protected(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    let first =
        json_body(create_key(&app, &acme.ana_session, json!({"name": "first"})).await).await;
    let second =
        json_body(create_key(&app, &acme.ana_session, json!({"name": "second"})).await).await;
    assert_eq!(first["signs_webhooks"], true);
    assert_eq!(
        second["signs_webhooks"], false,
        "only the first key is marked automatically"
    );
    let first_id = first["id"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();

    let delete_marked = app
        .delete_key(
            &acme.ana_session,
            first_id,
            first["client_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(delete_marked.status(), 409);
    assert!(
        json_body(delete_marked).await["message"]
            .as_str()
            .unwrap()
            .contains("signs webhooks")
    );
    // Revoking the marked key is always allowed (a leaked key must stop at
    // once): privilege_defects.rs checks where the mark goes then.

    let moved = app
        .post(
            &format!("/api/v1/keys/{second_id}/webhook-signing"),
            &acme.ana_session,
        )
        .await;
    assert_eq!(moved.status(), 200);
    let listed = app.get_json("/api/v1/keys", &acme.ana_session).await;
    let marked: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["signs_webhooks"] == true)
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(marked, vec![second_id], "exactly one key holds the mark");

    let revoke_first = app
        .post(
            &format!("/api/v1/keys/{first_id}/revoke"),
            &acme.ana_session,
        )
        .await;
    assert_eq!(revoke_first.status(), 200);
}

async fn an_access_token_with_keys_manage_can_manage_its_owners_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app, "Acme").await;
    let created =
        json_body(create_key(&app, &acme.ana_session, json!({"name": "automation"})).await).await;
    let token = app
        .request_token(
            created["client_id"].as_str().unwrap(),
            created["client_secret"].as_str().unwrap(),
        )
        .await;
    let token = json_body(token).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let by_token = create_key(&app, &token, json!({"name": "made by a token"})).await;
    assert_eq!(by_token.status(), 201);
    let listed = app.get_json("/api/v1/keys", &acme.ana_session).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["owner_email"] == acme.ana_email.as_str())
    );
}

async fn management_needs_a_credential(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/api/v1/keys").await;
    assert_eq!(response.status(), 401);
    let forged = app.get_as("/api/v1/keys", "kpsess_forged").await;
    assert_eq!(forged.status(), 401);
}

/// Every place a scope is granted (a key's scopes, a user's permissions on
/// creation and change, an exchange rule's scopes) refuses scopes Keyport
/// does not define with a 422 naming them.
async fn unknown_or_mistyped_scopes_are_refused_wherever_scopes_are_granted(backend: Backend) {
    // Trusting an issuer on 127.0.0.1 needs the exchange overrides.
    let app = crate::token_exchange::spawn(backend).await;
    let acme = company(&app, "Acme").await;
    let send = |method: Method, path: String, body: Value| {
        let app = &app;
        let session = acme.admin_session.clone();
        async move { app.send_json(method, &path, &session, &body).await }
    };
    let (status, carol) = send(
        Method::POST,
        "/api/v1/users".to_owned(),
        json!({"email": "carol@acme.io", "role": "member", "permissions": ["reports:read"]}),
    )
    .await;
    assert_eq!(status, 201, "{carol}");
    let carol_id = carol["id"].as_str().unwrap().to_owned();
    let (status, issuer) = send(
        Method::POST,
        "/api/v1/trusted-issuers".to_owned(),
        json!({"issuer": "https://ci.example.com", "jwks_url": "http://127.0.0.1:9/jwks.json",
               "audience": "keyport-acme"}),
    )
    .await;
    assert_eq!(status, 201, "{issuer}");
    let rules = format!(
        "/api/v1/trusted-issuers/{}/rules",
        issuer["id"].as_str().unwrap()
    );

    // (what is sent, the scope the message must name)
    let cases = [
        (
            Method::POST,
            "/api/v1/keys".to_owned(),
            json!({"name": "x", "scopes": ["reports:read", "foo:bar"]}),
            "`foo:bar`",
        ),
        (
            Method::POST,
            "/api/v1/keys".to_owned(),
            json!({"name": "x", "scopes": ["Reports:Read"]}),
            "did you mean reports:read?",
        ),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            json!({"email": "dan@acme.io", "role": "member", "permissions": ["reports:read", "foo:bar"]}),
            "`foo:bar`",
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{carol_id}"),
            json!({"permissions": ["report:read"]}),
            "did you mean reports:read?",
        ),
        (
            Method::POST,
            rules.clone(),
            json!({"conditions": [{"claim": "sub", "equals": "x"}], "user": carol_id,
                "scopes": "reports:read orders:read"}),
            "`orders:read`",
        ),
    ];
    for (method, path, body, needle) in cases {
        let (status, answer) = send(method.clone(), path.clone(), body.clone()).await;
        assert_eq!(status, 422, "{method} {path} {body}: {answer}");
        assert_eq!(answer["error"], "invalid_input", "{body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {answer}");
        assert!(
            message.contains("reports:read, webhooks:write"),
            "lists the known scopes: {answer}"
        );
    }
    // Nothing was created or changed.
    let (_, carol) = send(
        Method::GET,
        format!("/api/v1/users/{carol_id}"),
        Value::Null,
    )
    .await;
    assert_eq!(carol["permissions"], json!(["reports:read"]), "{carol}");
}

/// A key holding only keys:manage (its owner holds all three grantable
/// scopes) mints child keys holding keys:manage only, never everything the
/// owner holds.
async fn a_key_holding_only_keys_manage_creates_keys_no_wider_than_itself(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let manager = app.key(&ana.email, Some("keys:manage")).await;
    let cred = Cred::ApiKey(manager.secret.expose().to_owned());

    let child = create_key_as(&app, &cred, json!({"name": "child"})).await;
    assert_eq!(child.status(), 201);
    assert_eq!(json_body(child).await["scopes"], json!(["keys:manage"]));

    let wider = create_key_as(
        &app,
        &cred,
        json!({"name": "wider", "scopes": ["reports:read"]}),
    )
    .await;
    assert_eq!(wider.status(), 422);
    assert_eq!(json_body(wider).await["error"], "invalid_input");
}

/// `{"name":"a","name":"b"}`: which member wins depends on the parser, so
/// the body is refused rather than guessed at (no key "b" is created).
async fn a_management_body_with_a_duplicate_member_is_refused(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let session = app.session_for(&ana.email, PASSWORD).await;

    for (method, path, body, session) in [
        (
            Method::POST,
            "/api/v1/keys",
            r#"{"name":"a","name":"b"}"#,
            &session,
        ),
        (
            Method::PUT,
            "/api/v1/tenant/policy",
            r#"{"api_only_users":false,"api_only_users":true}"#,
            &acme.admin_session,
        ),
    ] {
        let response = app
            .api(method, path, session)
            .header("Content-Type", "application/json")
            .body(body)
            .sent()
            .await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(json_body(response).await["error"], "invalid_json", "{body}");
    }
    assert!(
        keys_of(&app, &acme.admin_session, &ana.email)
            .await
            .is_empty()
    );
}

/// `expires_in_seconds` of u64::MAX is refused (not saturated), as is
/// anything past ten years; ten years exactly is fine.
async fn an_expiry_beyond_ten_years_is_refused(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);

    let huge = create_key_as(
        &app,
        &session,
        json!({"name": "forever", "expires_in_seconds": u64::MAX}),
    )
    .await;
    let status = huge.status().as_u16();
    assert!(
        status == 422 || status == 400,
        "u64::MAX expiry got {status}"
    );
    let just_over = create_key_as(
        &app,
        &session,
        json!({"name": "too long", "expires_in_seconds": 315_360_001u64}),
    )
    .await;
    assert_eq!(just_over.status(), 422);
    assert_eq!(json_body(just_over).await["error"], "invalid_input");
    assert!(
        keys_of(&app, &acme.admin_session, &ana.email)
            .await
            .is_empty()
    );

    let ten_years = create_key_as(
        &app,
        &session,
        json!({"name": "ten years", "expires_in_seconds": 315_360_000u64}),
    )
    .await;
    assert_eq!(ten_years.status(), 201);
}

/// Control characters and bidi overrides in a key name can disguise it in
/// consoles and lists ("evil" U+202E "exe.txt" shows as "eviltxt.exe").
async fn key_names_with_control_or_bidi_characters_are_refused(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);

    for name in ["a\u{0007}b", "evil\u{202E}exe.txt", "\u{2066}x"] {
        let response = create_key_as(&app, &session, json!({"name": name})).await;
        assert_eq!(response.status(), 422, "{name:?}");
        assert_eq!(
            json_body(response).await["error"],
            "invalid_input",
            "{name:?}"
        );
    }
    assert!(
        keys_of(&app, &acme.admin_session, &ana.email)
            .await
            .is_empty()
    );
}

crate::on_both_backends!(
    unknown_or_mistyped_scopes_are_refused_wherever_scopes_are_granted,
    keys_are_created_with_the_secret_shown_exactly_once,
    creating_keys_needs_keys_manage,
    bad_key_requests_are_clear_errors,
    a_fourth_active_key_is_refused_by_the_api,
    admins_see_every_key_and_members_only_their_own,
    a_member_cannot_revoke_or_delete_a_colleagues_key,
    another_tenants_key_does_not_exist_for_you,
    revoking_keeps_the_row_and_is_final,
    deleting_needs_the_exact_confirmation_phrase,
    the_webhook_signing_key_moves_explicitly_and_is_protected,
    an_access_token_with_keys_manage_can_manage_its_owners_keys,
    management_needs_a_credential,
    a_key_holding_only_keys_manage_creates_keys_no_wider_than_itself,
    a_management_body_with_a_duplicate_member_is_refused,
    an_expiry_beyond_ten_years_is_refused,
    key_names_with_control_or_bidi_characters_are_refused,
);
