//! Human sign-in: sessions, locks after repeated failures, password changes,
//! and the "API-only users" policy.

use reqwest::Method;
use serde_json::json;

use keyport::service::users::UserSummary as User;

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, TestApp, json_body, spawn_acme, spawn_app, spawn_app_with, spawn_app_with_integration,
    without_request_id,
};
use crate::helpers::{Cred, audit_events, status_and_text, user_row, whoami_status};
use std::time::{Duration, Instant};

/// Two failures within one second lock an account.
const QUICK_LOCKS: &[(&str, &str)] = &[
    ("KEYPORT_SIGN_IN_FAILURE_WINDOW_SECONDS", "1"),
    ("KEYPORT_SIGN_IN_MAX_FAILURES", "2"),
];

const PASSWORD: &str = "correct horse battery staple";

/// Acme's admin, signed in (the session), and a member `email` whose
/// password is [`PASSWORD`], not signed in.
async fn admin_and_member(app: &TestApp, email: &str) -> (String, User) {
    let tenant = app.tenant("Acme").await;
    let admin = app
        .user(&tenant, "admin@acme.io", "admin", "reports:read")
        .await;
    let member = app.user(&tenant, email, "member", "reports:read").await;
    let admin_session = app.session_for(&admin.email, PASSWORD).await;
    app.set_password(&member.email, PASSWORD).await;
    (admin_session, member)
}

/// Turns on the company's "API-only users" policy, as its admin.
async fn make_users_api_only(app: &TestApp, admin_session: &str) {
    let policy = app
        .api(Method::PUT, "/api/v1/tenant/policy", admin_session)
        .json(&json!({"api_only_users": true}))
        .sent()
        .await;
    assert_eq!(policy.status(), 200);
}

async fn a_user_signs_in_and_out(backend: Backend) {
    let (app, integration) =
        spawn_app_with_integration(backend, "member", "reports:read keys:manage").await;
    app.set_password(&integration.user.email, PASSWORD).await;

    let signed_in = app.sign_in(&integration.user.email, PASSWORD).await;
    assert_eq!(signed_in.status(), 201);
    assert_eq!(signed_in.headers()["cache-control"], "no-store");
    let body = json_body(signed_in).await;
    let session = body["session_token"].as_str().unwrap().to_owned();
    assert!(session.starts_with("kpsess_"));
    assert_eq!(body["user_id"], integration.user.id.as_str());
    assert_eq!(app.get_as("/api/v1/keys", &session).await.status(), 200);

    let out = app.call(Method::DELETE, "/api/v1/session", &session).await;
    assert_eq!(out.status(), 204);
    assert_eq!(app.get_as("/api/v1/keys", &session).await.status(), 401);
}

async fn wrong_passwords_and_unknown_emails_get_the_same_answer(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    app.set_password(&integration.user.email, PASSWORD).await;

    let wrong = without_request_id(
        json_body(
            app.sign_in(&integration.user.email, "wrong password here")
                .await,
        )
        .await,
    );
    let unknown =
        without_request_id(json_body(app.sign_in("nobody@example.com", PASSWORD).await).await);
    let no_password = app.integration("member", "reports:read").await;
    let unset =
        without_request_id(json_body(app.sign_in(&no_password.user.email, PASSWORD).await).await);

    assert_eq!(wrong, unknown);
    assert_eq!(wrong, unset);
    assert_eq!(wrong["error"], "invalid_credentials");
}

async fn repeated_failures_lock_the_account_until_an_admin_lifts_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin_session, ana) = admin_and_member(&app, "ana@acme.io").await;

    for _ in 0..5 {
        let response = app.sign_in(&ana.email, "not the password").await;
        assert_eq!(response.status(), 401);
    }
    let locked = app.sign_in(&ana.email, PASSWORD).await;
    assert_eq!(
        locked.status(),
        401,
        "sign-in while locked, even with the right password, answers like a wrong one"
    );
    let locked = json_body(locked).await;
    assert_eq!(locked["error"], "invalid_credentials");
    assert!(locked.get("locked_until").is_none(), "{locked}");

    let users = app.get_json("/api/v1/users", &admin_session).await;
    let ana_row = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ana@acme.io")
        .unwrap()
        .clone();
    assert_eq!(ana_row["locked"], true, "admins see the lock");
    assert!(ana_row.get("password_hash").is_none());

    let unlock = app
        .post(&format!("/api/v1/users/{}/unlock", ana.id), &admin_session)
        .await;
    assert_eq!(unlock.status(), 200);
    assert_eq!(app.sign_in(&ana.email, PASSWORD).await.status(), 201);
}

async fn failures_outside_the_window_do_not_add_up(backend: Backend) {
    let app = spawn_app_with(backend, QUICK_LOCKS).await;
    let integration = app.integration("member", "reports:read").await;
    app.set_password(&integration.user.email, PASSWORD).await;

    app.sign_in(&integration.user.email, "wrong one").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.sign_in(&integration.user.email, "wrong two").await;

    assert_eq!(
        app.sign_in(&integration.user.email, PASSWORD)
            .await
            .status(),
        201
    );
}

async fn members_cannot_see_users_or_unlock(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let session = app.session_for(&integration.user.email, PASSWORD).await;

    assert_eq!(app.get_as("/api/v1/users", &session).await.status(), 403);
    let unlock = app
        .post(
            &format!("/api/v1/users/{}/unlock", integration.user.id),
            &session,
        )
        .await;
    assert_eq!(unlock.status(), 403);
}

async fn a_user_changes_their_password_and_old_sessions_end(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "member", "reports:read").await;
    let session = app.session_for(&integration.user.email, PASSWORD).await;
    let new_password = "an even longer passphrase";

    let weak = app
        .api(Method::POST, "/api/v1/session/password", &session)
        .json(&json!({"current_password": PASSWORD, "new_password": "short"}))
        .sent()
        .await;
    assert_eq!(weak.status(), 422);
    let wrong_current = app
        .api(Method::POST, "/api/v1/session/password", &session)
        .json(&json!({"current_password": "guess guess guess", "new_password": new_password}))
        .sent()
        .await;
    assert_eq!(wrong_current.status(), 401);
    let changed = app
        .api(Method::POST, "/api/v1/session/password", &session)
        .json(&json!({"current_password": PASSWORD, "new_password": new_password}))
        .sent()
        .await;
    assert_eq!(changed.status(), 204);

    assert_eq!(app.get_as("/api/v1/keys", &session).await.status(), 401);
    assert_eq!(
        app.sign_in(&integration.user.email, PASSWORD)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.sign_in(&integration.user.email, new_password)
            .await
            .status(),
        201
    );
}

async fn api_only_users_cannot_sign_in_once_they_hold_a_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin_session, robot) = admin_and_member(&app, "robot@acme.io").await;
    assert_eq!(
        app.sign_in(&robot.email, PASSWORD).await.status(),
        201,
        "off by default"
    );

    make_users_api_only(&app, &admin_session).await;
    assert_eq!(
        app.sign_in(&robot.email, PASSWORD).await.status(),
        201,
        "no key yet"
    );

    app.key(&robot.email, None).await;

    let refused = app.sign_in(&robot.email, PASSWORD).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(json_body(refused).await["error"], "api_only_user");
}

/// The console's form post and the API's JSON call reach the same service
/// refusals; the status is the API's in both, only the body differs.
async fn the_console_refuses_with_the_same_status_as_the_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin_session, robot) = admin_and_member(&app, "robot@acme.io").await;
    make_users_api_only(&app, &admin_session).await;
    app.key(&robot.email, None).await;
    let console_form = |path: &str, form: &[(&str, &str)]| {
        app.client
            .post(app.url(path))
            .header("Origin", app.url(""))
            .form(form)
            .send()
    };

    // An API-only user signing in with the right password.
    let api = app.sign_in(&robot.email, PASSWORD).await;
    let console = console_form(
        "/console/sign-in",
        &[("email", &robot.email), ("password", PASSWORD)],
    )
    .await
    .unwrap();
    assert_eq!(api.status(), 403);
    assert_eq!(console.status(), api.status());
    assert!(console.text().await.unwrap().contains("api_only_user"));

    // A set-password token that was never issued.
    let token = "not-a-token-anyone-was-given";
    let new_password = "another horse battery staple";
    let api = app
        .client
        .post(app.url("/api/v1/password"))
        .json(&json!({"token": token, "new_password": new_password}))
        .sent()
        .await;
    let console = console_form(
        "/console/set-password",
        &[("token", token), ("new_password", new_password)],
    )
    .await
    .unwrap();
    assert_eq!(api.status(), 400);
    assert_eq!(console.status(), api.status());
    assert!(console.text().await.unwrap().contains("invalid_token"));
}

async fn bad_sign_in_bodies_are_clear_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, status) in [
        ("{}", 422),
        ("{\"email\": 1, \"password\": 2}", 422),
        ("not json", 400),
        ("{\"email\": \"a@b.io\"}", 422),
    ] {
        let response = app
            .client
            .post(app.url("/api/v1/session"))
            .header("Content-Type", "application/json")
            .body(body)
            .sent()
            .await;
        assert_eq!(response.status().as_u16(), status, "{body}");
    }
    let huge = app
        .client
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": "a@b.io", "password": "x".repeat(20_000)}))
        .sent()
        .await;
    assert_eq!(huge.status(), 413);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// 300 wrong passwords, 32 in flight at a time, cannot race past the lock
/// (as they would if each read the failure count before any wrote it): at
/// most `sign_in_max_failures` (5) are checked, and the lock lands once.
async fn a_burst_of_wrong_passwords_checks_at_most_the_lockout_limit(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let victim = acme.employ(&app, "victim", "member", "reports:read").await;
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

    let failed = audit_events(
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
    let locks = audit_events(
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

/// The operator's password reset (`keyport user set-password`, which
/// TestApp::set_password calls) signs the old sessions out.
async fn a_password_reset_ends_the_users_sessions(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", "reports:read").await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);
    assert_eq!(whoami_status(&app, &session).await, 200);

    app.set_password(&ana.email, "a brand new passphrase").await;

    assert_eq!(
        whoami_status(&app, &session).await,
        401,
        "old session after reset"
    );
    assert_eq!(
        app.sign_in(&ana.email, "a brand new passphrase")
            .await
            .status(),
        201
    );
}

/// Disable then enable: the session from before the disable must stay dead.
async fn disabling_a_user_ends_their_sessions_for_good(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", "reports:read").await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);

    for action in ["disable", "enable"] {
        acme.act_on(&app, &format!("/api/v1/users/{}", ana.id), action)
            .await;
        assert_eq!(
            whoami_status(&app, &session).await,
            401,
            "old session after {action}"
        );
    }
    assert_eq!(app.sign_in(&ana.email, PASSWORD).await.status(), 201);
}

/// Turning "API-only users" on ends the sessions of users holding a key;
/// users holding none keep theirs.
async fn turning_on_api_only_users_ends_the_sessions_of_users_holding_keys(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let robot = acme.employ(&app, "robot", "member", "reports:read").await;
    app.key(&robot.email, None).await;
    let robot_session = Cred::Bearer(app.session_for(&robot.email, PASSWORD).await);
    let human = acme.employ(&app, "human", "member", "reports:read").await;
    let human_session = Cred::Bearer(app.session_for(&human.email, PASSWORD).await);

    let policy = app
        .api(Method::PUT, "/api/v1/tenant/policy", &acme.admin_session)
        .json(&json!({"api_only_users": true}))
        .sent()
        .await;
    assert_eq!(policy.status(), 200);

    assert_eq!(
        whoami_status(&app, &robot_session).await,
        401,
        "key holder's session"
    );
    assert_eq!(
        whoami_status(&app, &human_session).await,
        200,
        "keyless user's session"
    );
}

/// A locked account answers like an unknown email (a 423 would tell a
/// guesser the email exists) and as slowly: it still hashes the password
/// (skipping it took 3 ms against 40 ms for an unknown email).
async fn a_locked_account_answers_exactly_like_an_unknown_email_and_as_slowly(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let victim = acme.employ(&app, "victim", "member", "reports:read").await;
    app.set_password(&victim.email, PASSWORD).await;
    for n in 0..5 {
        app.sign_in(&victim.email, &format!("wrong password {n}"))
            .await;
    }
    assert_eq!(
        user_row(&app, &acme.admin_session, &victim.email).await["locked"],
        true
    );

    let (locked_status, locked) = status_and_text(app.sign_in(&victim.email, PASSWORD).await).await;
    let (unknown_status, unknown) =
        status_and_text(app.sign_in("nobody@acme.io", PASSWORD).await).await;
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

/// A wrong current password on POST /api/v1/session/password is a password
/// guess too, and counts toward the lock.
async fn wrong_current_passwords_on_a_password_change_count_toward_the_lock(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", "reports:read").await;
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

crate::on_both_backends!(
    a_user_signs_in_and_out,
    wrong_passwords_and_unknown_emails_get_the_same_answer,
    repeated_failures_lock_the_account_until_an_admin_lifts_it,
    failures_outside_the_window_do_not_add_up,
    members_cannot_see_users_or_unlock,
    a_user_changes_their_password_and_old_sessions_end,
    api_only_users_cannot_sign_in_once_they_hold_a_key,
    bad_sign_in_bodies_are_clear_errors,
    the_console_refuses_with_the_same_status_as_the_api,
    a_burst_of_wrong_passwords_checks_at_most_the_lockout_limit,
    a_password_reset_ends_the_users_sessions,
    disabling_a_user_ends_their_sessions_for_good,
    turning_on_api_only_users_ends_the_sessions_of_users_holding_keys,
    a_locked_account_answers_exactly_like_an_unknown_email_and_as_slowly,
    wrong_current_passwords_on_a_password_change_count_toward_the_lock,
);
