//! One test per privilege defect found in review: each failed against the
//! server before the service-layer rewrite.

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, Cred, Integration, TestApp, json_body, spawn_app, spawn_app_with_integration,
    without_request_id,
};

const PASSWORD: &str = "correct horse battery staple";
const GRANTABLE: &str = "reports:read webhooks:write keys:manage";

fn with_key(app: &TestApp, method: Method, path: &str, secret: &str) -> RequestBuilder {
    app.request(method, path, &Cred::ApiKey(secret.to_owned()))
}

struct Person {
    id: String,
    email: String,
}

/// A company: the integration's member ("robot") holds a key; the admin holds
/// none, so the API-only policy never ends the admin's session.
struct Company {
    base: Integration,
    admin: Person,
    admin_session: String,
}

async fn company(app: &TestApp) -> Company {
    let base = app.integration("member", "reports:read").await;
    let admin = person(app, &base, "admin", "admin", GRANTABLE).await;
    let admin_session = app.session_for(&admin.email, PASSWORD).await;
    Company {
        base,
        admin,
        admin_session,
    }
}

async fn person(
    app: &TestApp,
    company: &Integration,
    name: &str,
    role: &str,
    perms: &str,
) -> Person {
    let user = app
        .user(&company.tenant, &format!("{name}@acme.io"), role, perms)
        .await;
    Person {
        id: user.id.clone(),
        email: user.email.clone(),
    }
}

async fn create_key(app: &TestApp, cred: &Cred, body: Value) -> Response {
    app.request(Method::POST, "/api/v1/keys", cred)
        .json(&body)
        .sent()
        .await
}

/// Every audit event matching `filters`, following `next_cursor`.
async fn audit(app: &TestApp, session: &str, filters: &[(&str, &str)]) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("limit", "500"));
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let path = format!(
            "/api/v1/audit?{}",
            serde_urlencoded::to_string(&query).unwrap()
        );
        let response = app.call(Method::GET, &path, session).await;
        assert_eq!(response.status(), 200, "audit read refused");
        let page = json_body(response).await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// The row of `email` in GET /api/v1/users.
async fn user_row(app: &TestApp, session: &str, email: &str) -> Value {
    let users = app.get_json("/api/v1/users", session).await;
    users["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("{email} not listed"))
        .clone()
}

/// The keys of `email` in GET /api/v1/keys, as `session` sees them.
async fn keys_of(app: &TestApp, session: &str, email: &str) -> Vec<Value> {
    let keys = app.get_json("/api/v1/keys", session).await;
    keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["owner_email"] == email)
        .cloned()
        .collect()
}

async fn whoami(app: &TestApp, cred: &Cred) -> u16 {
    app.request(Method::GET, "/api/v1/whoami", cred)
        .sent()
        .await
        .status()
        .as_u16()
}

async fn status_and_body(response: Response) -> (u16, String) {
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
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

// 1 ─────────────────────────────────────────────────────────────────────────

/// 300 wrong passwords, 32 in flight at a time, used to race past the lock
/// (each request read the failure count before any wrote it). At most
/// `sign_in_max_failures` (5) may be checked, and the lock lands once.
async fn a_burst_of_wrong_passwords_checks_at_most_the_lockout_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let victim = person(&app, &acme.base, "victim", "member", "reports:read").await;
    app.set_password(&victim.email, PASSWORD).await;

    let mut wrong_statuses = Vec::new();
    let mut right_status = None;
    let mut sent = 0;
    let mut wave = 0;
    while sent < 300 {
        let mut wave_set = tokio::task::JoinSet::new();
        let mut attempts: Vec<(bool, String)> = (sent..(sent + 32).min(300))
            .map(|n| (false, format!("wrong password number {n}")))
            .collect();
        sent += attempts.len();
        // The right password rides in the 5th wave, after 128 wrong ones were
        // answered: it must not sign in.
        if wave == 4 {
            attempts.insert(16, (true, PASSWORD.to_owned()));
        }
        for (right, password) in attempts {
            let client = app.client.clone();
            let url = app.url("/api/v1/session");
            let email = victim.email.clone();
            wave_set.spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"email": email, "password": password}))
                    .sent()
                    .await;
                (right, response.status().as_u16())
            });
        }
        while let Some(joined) = wave_set.join_next().await {
            let (right, status) = joined.unwrap();
            if right {
                right_status = Some(status);
            } else {
                wrong_statuses.push(status);
            }
        }
        wave += 1;
    }

    let failed = audit(
        &app,
        &acme.admin_session,
        &[
            ("action", "session.sign_in_failed"),
            ("target", &victim.email),
        ],
    )
    .await;
    assert!(
        failed.len() <= 5,
        "{} wrong passwords were checked; at most 5 may be",
        failed.len()
    );
    let locks = audit(
        &app,
        &acme.admin_session,
        &[("action", "user.lock"), ("target", &victim.email)],
    )
    .await;
    assert_eq!(
        locks.len(),
        1,
        "the account was locked {} times",
        locks.len()
    );
    assert_eq!(
        right_status,
        Some(401),
        "the right password in mid-burst must not sign in"
    );
    assert!(
        wrong_statuses.iter().all(|s| *s == 401),
        "every refusal is 401: {wrong_statuses:?}"
    );
    assert_eq!(
        user_row(&app, &acme.admin_session, &victim.email).await["locked"],
        true
    );
}

// 2 ─────────────────────────────────────────────────────────────────────────

/// An admin's key scoped reports:read (x-api-key), and a token narrowed to
/// reports:read from the admin's full key, used to pass every admin check
/// because only the owner's role was looked at.
async fn a_reports_read_key_or_token_of_an_admin_gets_no_management_rights(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let full = app.key(&acme.admin.email, None).await;
    let reader = app.key(&acme.admin.email, Some("reports:read")).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    app.key(&ana.email, None).await;
    let other = app.key(&ana.email, None).await.key.client_id.clone();
    let narrowed = app
        .narrowed_token(
            &full.key.client_id,
            full.secret.expose(),
            Some("reports:read"),
        )
        .await;

    let operations = [
        (Method::GET, "/api/v1/users".to_owned(), None),
        (Method::GET, "/api/v1/audit".to_owned(), None),
        (
            Method::POST,
            format!("/api/v1/users/{}/unlock", ana.id),
            None,
        ),
        (
            Method::PUT,
            "/api/v1/tenant/policy".to_owned(),
            Some(json!({"api_only_users": true})),
        ),
        (Method::POST, format!("/api/v1/keys/{other}/revoke"), None),
        (
            Method::DELETE,
            format!("/api/v1/keys/{other}"),
            Some(json!({"confirm": format!("delete {other}")})),
        ),
        (
            Method::POST,
            format!("/api/v1/keys/{other}/webhook-signing"),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (label, cred) in [
        (
            "x-api-key scoped reports:read",
            Cred::ApiKey(reader.secret.expose().to_owned()),
        ),
        ("token narrowed to reports:read", Cred::Bearer(narrowed)),
    ] {
        assert_eq!(whoami(&app, &cred).await, 200, "{label} is live");
        for (method, path, body) in &operations {
            let mut builder = app.request(method.clone(), path, &cred);
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let (status, text) = status_and_body(builder.sent().await).await;
            let error = serde_json::from_str::<Value>(&text).unwrap_or_default()["error"].clone();
            if status != 403 || error != "insufficient_scope" {
                failures.push(format!("{label}: {method} {path} → {status} {text}"));
            }
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    let target = app
        .get_json(&format!("/api/v1/keys/{other}"), &acme.admin_session)
        .await;
    assert_eq!(target["status"], "active");
    assert_eq!(target["signs_webhooks"], false);
}

// 3 ─────────────────────────────────────────────────────────────────────────

/// A token of key L, L revoked afterwards: the token used to keep managing
/// keys until it expired.
async fn a_token_of_a_revoked_key_cannot_create_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    app.key(&ana.email, None).await; // signs webhooks, so L may be revoked
    let l = app.key(&ana.email, None).await;
    let t = app
        .narrowed_token(&l.key.client_id, l.secret.expose(), None)
        .await;
    let revoked = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{}/revoke", l.key.client_id),
            &acme.admin_session,
        )
        .await;
    assert_eq!(revoked.status(), 200);

    let created = create_key(&app, &Cred::Bearer(t), json!({"name": "after revoke"})).await;

    assert_eq!(created.status(), 401);
    assert_eq!(
        keys_of(&app, &acme.admin_session, &ana.email).await.len(),
        2,
        "a key was created"
    );
}

/// A disabled admin's token, issued before the disable, tried to change the
/// tenant policy.
async fn a_disabled_admins_earlier_token_cannot_change_the_policy(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let bea = person(&app, &acme.base, "bea", "admin", GRANTABLE).await;
    let key = app.key(&bea.email, None).await;
    let t = app
        .narrowed_token(&key.key.client_id, key.secret.expose(), None)
        .await;
    let disabled = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/disable", bea.id),
            &acme.admin_session,
        )
        .await;
    assert_eq!(disabled.status(), 200, "disable");

    let policy = app
        .api(Method::PUT, "/api/v1/tenant/policy", &t)
        .json(&json!({"api_only_users": true}))
        .sent()
        .await;

    assert_eq!(policy.status(), 401);
    let changes = audit(
        &app,
        &acme.admin_session,
        &[("action", "tenant.set_policy")],
    )
    .await;
    assert!(changes.is_empty(), "the policy changed: {changes:?}");
}

/// A token issued while its owner held keys:manage, used after an admin
/// withdrew it (PATCH permissions to reports:read only).
async fn a_token_issued_before_keys_manage_was_withdrawn_cannot_create_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let key = app.key(&ana.email, None).await;
    let t = app
        .narrowed_token(&key.key.client_id, key.secret.expose(), None)
        .await;
    let patched = app
        .api(
            Method::PATCH,
            &format!("/api/v1/users/{}", ana.id),
            &acme.admin_session,
        )
        .json(&json!({"permissions": ["reports:read"]}))
        .sent()
        .await;
    assert_eq!(patched.status(), 200, "withdraw keys:manage");

    let created = create_key(&app, &Cred::Bearer(t), json!({"name": "stale grant"})).await;

    let status = created.status().as_u16();
    assert!(status == 403 || status == 401, "got {status}");
    assert_eq!(
        keys_of(&app, &acme.admin_session, &ana.email).await.len(),
        1,
        "a key was created"
    );
}

// 4 ─────────────────────────────────────────────────────────────────────────

/// Introspection by an admin's key of the same company: a live token is
/// active; a revoked key's token and a disabled owner's token used to be too.
async fn introspection_reports_tokens_of_revoked_keys_and_disabled_owners_inactive(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let inspector = app.key(&acme.admin.email, None).await;
    let introspect = |token: String| {
        let request = app
            .client
            .post(app.url("/oauth/introspect"))
            .basic_auth(&inspector.key.client_id, Some(inspector.secret.expose()))
            .form(&[("token", token)]);
        async move { json_body(request.sent().await).await }
    };
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    app.key(&ana.email, None).await;
    let l = app.key(&ana.email, None).await;
    let of_revoked = app
        .narrowed_token(&l.key.client_id, l.secret.expose(), None)
        .await;
    let bob = person(&app, &acme.base, "bob", "member", GRANTABLE).await;
    let bobs = app.key(&bob.email, None).await;
    let of_disabled = app
        .narrowed_token(&bobs.key.client_id, bobs.secret.expose(), None)
        .await;
    let cyd = person(&app, &acme.base, "cyd", "member", GRANTABLE).await;
    let cyds = app.key(&cyd.email, None).await;
    let live = app
        .narrowed_token(&cyds.key.client_id, cyds.secret.expose(), None)
        .await;

    assert_eq!(introspect(live.clone()).await["active"], true, "live token");

    let revoked = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{}/revoke", l.key.client_id),
            &acme.admin_session,
        )
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(
        introspect(of_revoked).await,
        json!({"active": false}),
        "token of a revoked key"
    );

    let disabled = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{}/disable", bob.id),
            &acme.admin_session,
        )
        .await;
    assert_eq!(disabled.status(), 200, "disable");
    assert_eq!(
        introspect(of_disabled).await,
        json!({"active": false}),
        "token of a disabled owner"
    );
    assert_eq!(introspect(live).await["active"], true, "live token, again");
}

// 5 ─────────────────────────────────────────────────────────────────────────

/// The operator's password reset (`keyport user set-password`, which
/// TestApp::set_password calls) used to leave the old sessions signed in.
async fn a_password_reset_ends_the_users_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", "reports:read").await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);
    assert_eq!(whoami(&app, &session).await, 200);

    app.set_password(&ana.email, "a brand new passphrase").await;

    assert_eq!(whoami(&app, &session).await, 401, "old session after reset");
    assert_eq!(
        app.sign_in(&ana.email, "a brand new passphrase")
            .await
            .status(),
        201
    );
}

/// Disable then enable: the session from before the disable must stay dead.
async fn disabling_a_user_ends_their_sessions_for_good(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", "reports:read").await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);

    for action in ["disable", "enable"] {
        let response = app
            .call(
                Method::POST,
                &format!("/api/v1/users/{}/{action}", ana.id),
                &acme.admin_session,
            )
            .await;
        assert_eq!(response.status(), 200, "{action}");
        assert_eq!(
            whoami(&app, &session).await,
            401,
            "old session after {action}"
        );
    }
    assert_eq!(app.sign_in(&ana.email, PASSWORD).await.status(), 201);
}

/// Turning "API-only users" on used to leave the sessions of users holding a
/// key alive; users holding none keep theirs.
async fn turning_on_api_only_users_ends_the_sessions_of_users_holding_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let robot = person(&app, &acme.base, "robot", "member", "reports:read").await;
    app.key(&robot.email, None).await;
    let robot_session = Cred::Bearer(app.session_for(&robot.email, PASSWORD).await);
    let human = person(&app, &acme.base, "human", "member", "reports:read").await;
    let human_session = Cred::Bearer(app.session_for(&human.email, PASSWORD).await);

    let policy = app
        .api(Method::PUT, "/api/v1/tenant/policy", &acme.admin_session)
        .json(&json!({"api_only_users": true}))
        .sent()
        .await;
    assert_eq!(policy.status(), 200);

    assert_eq!(
        whoami(&app, &robot_session).await,
        401,
        "key holder's session"
    );
    assert_eq!(
        whoami(&app, &human_session).await,
        200,
        "keyless user's session"
    );
}

// 6 ─────────────────────────────────────────────────────────────────────────

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A locked account used to answer 423 (telling a guesser the email exists)
/// and to skip the password hash (3 ms against 40 ms for an unknown email).
async fn a_locked_account_answers_exactly_like_an_unknown_email_and_as_slowly(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let victim = person(&app, &acme.base, "victim", "member", "reports:read").await;
    app.set_password(&victim.email, PASSWORD).await;
    for n in 0..5 {
        app.sign_in(&victim.email, &format!("wrong password {n}"))
            .await;
    }
    assert_eq!(
        user_row(&app, &acme.admin_session, &victim.email).await["locked"],
        true
    );

    let (locked_status, locked) = status_and_body(app.sign_in(&victim.email, PASSWORD).await).await;
    let (unknown_status, unknown) =
        status_and_body(app.sign_in("nobody@acme.io", PASSWORD).await).await;
    let locked = without_request_id(serde_json::from_str(&locked).unwrap());
    let unknown = without_request_id(serde_json::from_str(&unknown).unwrap());
    assert_eq!(
        (locked_status, &locked),
        (unknown_status, &unknown),
        "locked vs unknown email"
    );
    assert_eq!(locked_status, 401);
    assert_eq!(
        locked,
        json!({"error": "invalid_credentials", "message": "the email or password is wrong"})
    );

    let mut locked_times = Vec::new();
    let mut unknown_times = Vec::new();
    for n in 0..5 {
        let started = Instant::now();
        app.sign_in(&victim.email, PASSWORD).await;
        locked_times.push(started.elapsed());
        let started = Instant::now();
        app.sign_in(&format!("nobody-{n}@acme.io"), PASSWORD).await;
        unknown_times.push(started.elapsed());
    }
    let (locked_median, unknown_median) = (median(locked_times), median(unknown_times));
    assert!(
        locked_median * 2 >= unknown_median,
        "locked answers in {locked_median:?}, unknown emails in {unknown_median:?}"
    );
}

// 7 ─────────────────────────────────────────────────────────────────────────

/// A key holding only keys:manage (its owner holds all three grantable
/// scopes) used to mint a child key inheriting everything the owner holds.
async fn a_key_holding_only_keys_manage_creates_keys_no_wider_than_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let manager = app.key(&ana.email, Some("keys:manage")).await;
    let cred = Cred::ApiKey(manager.secret.expose().to_owned());

    let child = create_key(&app, &cred, json!({"name": "child"})).await;
    assert_eq!(child.status(), 201);
    assert_eq!(json_body(child).await["scopes"], json!(["keys:manage"]));

    let wider = create_key(
        &app,
        &cred,
        json!({"name": "wider", "scopes": ["reports:read"]}),
    )
    .await;
    assert_eq!(wider.status(), 422);
    assert_eq!(json_body(wider).await["error"], "invalid_input");
}

// 8 ─────────────────────────────────────────────────────────────────────────

/// Eleven different bad x-api-key values from one address used to lock every
/// x-api-key caller at that address out, the real integration included.
async fn bad_api_keys_do_not_lock_a_good_key_out_of_the_same_address(backend: Backend) {
    let (app, good) = spawn_app_with_integration(backend, "member", "reports:read").await;

    for _ in 0..11 {
        let bad = garbage_secret();
        let response = with_key(&app, Method::GET, "/api/v1/whoami", &bad)
            .sent()
            .await;
        assert_eq!(response.status(), 401, "{bad}");
    }

    let response = with_key(&app, Method::GET, "/api/v1/whoami", good.secret())
        .sent()
        .await;
    assert_eq!(response.status(), 200, "the good key is locked out");
}

/// One bad key repeated: throttled with 429 and Retry-After (it used to get
/// 401 forever, with no hint to back off), while a good key still works.
async fn a_repeated_bad_api_key_is_throttled_with_retry_after(backend: Backend) {
    let (app, good) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let bad = garbage_secret();

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..12 {
        let response = with_key(&app, Method::GET, "/api/v1/whoami", &bad)
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

    let response = with_key(&app, Method::GET, "/api/v1/whoami", good.secret())
        .sent()
        .await;
    assert_eq!(response.status(), 200, "the good key is throttled too");
}

// 9 ─────────────────────────────────────────────────────────────────────────

/// A wrong current password on POST /api/v1/session/password is a password
/// guess too; it used not to count toward the lock.
async fn wrong_current_passwords_on_a_password_change_count_toward_the_lock(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", "reports:read").await;
    let session = app.session_for(&ana.email, PASSWORD).await;

    for n in 0..5 {
        let response = app
            .api(Method::POST, "/api/v1/session/password", &session)
            .json(&json!({
                "current_password": format!("guess number {n} here"),
                "new_password": "an even longer passphrase",
            }))
            .sent()
            .await;
        assert_eq!(response.status(), 401, "guess {n}");
    }

    assert_eq!(
        user_row(&app, &acme.admin_session, &ana.email).await["locked"],
        true
    );
}

/// `{"name":"a","name":"b"}`: which member wins depends on the parser, so
/// the body is refused rather than guessed at (it used to create key "b").
async fn a_management_body_with_a_duplicate_member_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
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

/// `expires_in_seconds` of u64::MAX used to be accepted (and saturate); past
/// ten years is refused, ten years exactly is fine.
async fn an_expiry_beyond_ten_years_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);

    let huge = create_key(
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
    let just_over = create_key(
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

    let ten_years = create_key(
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
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);

    for name in ["a\u{0007}b", "evil\u{202E}exe.txt", "\u{2066}x"] {
        let response = create_key(&app, &session, json!({"name": name})).await;
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

/// The audit trail used to name only the user: which key (or session) acted
/// was lost. Revocations through x-api-key, through an access token and
/// through a session each carry their credential.
async fn audit_events_name_the_credential_that_acted(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let acting = app.key(&ana.email, None).await; // signs webhooks
    let first = app.key(&ana.email, None).await.key.client_id.clone();
    let second = app.key(&ana.email, None).await.key.client_id.clone();
    let acting_id = acting.key.client_id.clone();

    let by_key = with_key(
        &app,
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
    let by_token = app
        .call(Method::POST, &format!("/api/v1/keys/{second}/revoke"), &t)
        .await;
    assert_eq!(by_token.status(), 200);
    let third = app.key(&ana.email, None).await.key.client_id.clone();
    let by_session = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{third}/revoke"),
            &acme.admin_session,
        )
        .await;
    assert_eq!(by_session.status(), 200);

    let event = |target: String| {
        let session = acme.admin_session.clone();
        let app = &app;
        async move {
            let events = audit(
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

/// A failed sign-in used to be recorded with the victim's user id as the
/// actor, as if the victim had acted.
async fn a_failed_sign_in_is_recorded_as_anonymous(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", "reports:read").await;
    app.set_password(&ana.email, PASSWORD).await;

    assert_eq!(
        app.sign_in(&ana.email, "not the password at all")
            .await
            .status(),
        401
    );

    let events = audit(
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

// 10 ────────────────────────────────────────────────────────────────────────

/// A leaked key that signs webhooks used to be unrevocable (409) until
/// someone moved the mark by hand: now the revocation moves the mark to
/// another active key of the owner, and says so in the audit trail.
async fn revoking_the_webhook_signing_key_moves_the_mark_to_another_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);
    let first = json_body(create_key(&app, &session, json!({"name": "leaked"})).await).await;
    let second = json_body(create_key(&app, &session, json!({"name": "spare"})).await).await;
    assert_eq!(first["signs_webhooks"], true);
    assert_eq!(second["signs_webhooks"], false);
    let first_id = first["client_id"].as_str().unwrap();
    let second_id = second["client_id"].as_str().unwrap();

    let revoked = app
        .request(
            Method::POST,
            &format!("/api/v1/keys/{first_id}/revoke"),
            &session,
        )
        .sent()
        .await;
    assert_eq!(revoked.status(), 200, "revoking the signer");

    let spare = json_body(
        app.request(Method::GET, &format!("/api/v1/keys/{second_id}"), &session)
            .sent()
            .await,
    )
    .await;
    assert_eq!(spare["signs_webhooks"], true, "the mark moved");
    let moves = audit(
        &app,
        &acme.admin_session,
        &[
            ("action", "key.mark_webhook_signing"),
            ("target", second_id),
        ],
    )
    .await;
    assert!(!moves.is_empty(), "no audit event for the move");

    let delete = app
        .request(
            Method::DELETE,
            &format!("/api/v1/keys/{second_id}"),
            &session,
        )
        .json(&json!({"confirm": format!("delete {second_id}")}))
        .sent()
        .await;
    assert_eq!(delete.status(), 409, "deleting the marked active key");
}

/// Revoking the owner's only key (the signer) is allowed too; then no key of
/// the owner signs webhooks.
async fn revoking_a_users_only_key_leaves_no_key_signing_webhooks(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = company(&app).await;
    let ana = person(&app, &acme.base, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);
    let only = json_body(create_key(&app, &session, json!({"name": "only"})).await).await;
    assert_eq!(only["signs_webhooks"], true);

    let revoked = app
        .request(
            Method::POST,
            &format!(
                "/api/v1/keys/{}/revoke",
                only["client_id"].as_str().unwrap()
            ),
            &session,
        )
        .sent()
        .await;
    assert_eq!(revoked.status(), 200);

    let keys = keys_of(&app, &acme.admin_session, &ana.email).await;
    assert!(keys.iter().all(|k| k["signs_webhooks"] != true), "{keys:?}");
}

crate::on_both_backends!(
    a_burst_of_wrong_passwords_checks_at_most_the_lockout_limit,
    a_reports_read_key_or_token_of_an_admin_gets_no_management_rights,
    a_token_of_a_revoked_key_cannot_create_keys,
    a_disabled_admins_earlier_token_cannot_change_the_policy,
    a_token_issued_before_keys_manage_was_withdrawn_cannot_create_keys,
    introspection_reports_tokens_of_revoked_keys_and_disabled_owners_inactive,
    a_password_reset_ends_the_users_sessions,
    disabling_a_user_ends_their_sessions_for_good,
    turning_on_api_only_users_ends_the_sessions_of_users_holding_keys,
    a_locked_account_answers_exactly_like_an_unknown_email_and_as_slowly,
    a_key_holding_only_keys_manage_creates_keys_no_wider_than_itself,
    bad_api_keys_do_not_lock_a_good_key_out_of_the_same_address,
    a_repeated_bad_api_key_is_throttled_with_retry_after,
    wrong_current_passwords_on_a_password_change_count_toward_the_lock,
    a_management_body_with_a_duplicate_member_is_refused,
    an_expiry_beyond_ten_years_is_refused,
    key_names_with_control_or_bidi_characters_are_refused,
    audit_events_name_the_credential_that_acted,
    a_failed_sign_in_is_recorded_as_anonymous,
    revoking_the_webhook_signing_key_moves_the_mark_to_another_key,
    revoking_a_users_only_key_leaves_no_key_signing_webhooks,
);
