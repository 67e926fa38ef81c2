//! How many webhook endpoints may be registered: at most
//! `webhook_max_endpoints_per_owner` per user (default 5), within
//! `webhook_max_endpoints_per_tenant` per company (default 50), so one
//! member cannot use up the company's allowance and lock the admins out.
//! Past either limit: 409 `webhook_endpoint_limit_reached` (the key limit's
//! status), saying which limit. Concurrent registrations never overshoot.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TestApp, spawn_app_with};

const PASSWORD: &str = "endpoint limits 1234";
const EVERY_PERMISSION: &str = "reports:read webhooks:write keys:manage webhooks:manage";

/// Loopback URLs are allowed; no worker runs (nothing is ever sent).
const SETTINGS: [(&str, &str); 3] = [
    ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
    ("KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
    ("KEYPORT_WEBHOOK_DELIVER", "false"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut settings = SETTINGS.to_vec();
    settings.extend_from_slice(extra);
    settings
}

/// A company: an admin's session, and `members` members' sessions.
async fn company(app: &TestApp, members: usize) -> (String, Vec<String>) {
    let admin = app.integration("admin", EVERY_PERMISSION).await;
    let admin_session = app.session_for(&admin.user.email, PASSWORD).await;
    let mut sessions = Vec::new();
    for n in 0..members {
        let email = format!("member-{n}-{}@example.com", uuid::Uuid::new_v4().simple());
        app.user(&admin.tenant, &email, "member", EVERY_PERMISSION)
            .await;
        sessions.push(app.session_for(&email, PASSWORD).await);
    }
    (admin_session, sessions)
}

/// `POST /api/v1/webhook-endpoints` as `session`: the status and the body.
async fn register(app: &TestApp, session: &str) -> (u16, Value) {
    app.send_json(
        Method::POST,
        "/api/v1/webhook-endpoints",
        session,
        &json!({
            "url": format!("http://127.0.0.1:9/hooks/{}", uuid::Uuid::new_v4().simple()),
            "events": ["key.created"],
        }),
    )
    .await
}

/// The endpoints `session` sees.
async fn listed(app: &TestApp, session: &str) -> usize {
    let listed = app.get_json("/api/v1/webhook-endpoints", session).await;
    listed["endpoints"].as_array().map_or(0, Vec::len)
}

/// A refusal past a limit: 409, the code, and a message naming `limit`
/// and `whose` (`one user` or `it may register`).
fn assert_limit_refusal(status: u16, body: &Value, limit: u32, whose: &str) {
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "webhook_endpoint_limit_reached", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("at most {limit}")) && message.contains(whose),
        "{body}"
    );
}

async fn a_member_stops_at_their_own_endpoint_limit_and_an_admin_can_still_register(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &SETTINGS).await;
    let (admin, members) = company(&app, 1).await;
    let member = &members[0];
    for n in 1..=5 {
        let (status, body) = register(&app, member).await;
        assert_eq!(status, 201, "endpoint {n}: {body}");
    }
    // The sixth, a seventh: refused with the key limit's status, no 5xx.
    for _ in 0..2 {
        let (status, body) = register(&app, member).await;
        assert_limit_refusal(status, &body, 5, "one user");
    }
    assert_eq!(listed(&app, member).await, 5);

    // The company has room, and its admin uses it.
    let (status, body) = register(&app, &admin).await;
    assert_eq!(status, 201, "{body}");

    // A disabled endpoint still counts (it may be enabled again); a deleted
    // one does not.
    let endpoints = app.get_json("/api/v1/webhook-endpoints", member).await;
    let first = endpoints["endpoints"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let disabled = app
        .api(
            Method::PATCH,
            &format!("/api/v1/webhook-endpoints/{first}"),
            member,
        )
        .json(&json!({ "enabled": false }))
        .sent()
        .await;
    assert_eq!(disabled.status(), 200);
    let (status, body) = register(&app, member).await;
    assert_limit_refusal(status, &body, 5, "one user");
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/webhook-endpoints/{first}"),
            member,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let (status, body) = register(&app, member).await;
    assert_eq!(status, 201, "{body}");
}

async fn the_company_limit_holds_whoever_registers_and_other_companies_are_unaffected(
    backend: Backend,
) {
    let app = spawn_app_with(
        backend,
        &with(&[
            ("KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_OWNER", "2"),
            ("KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_TENANT", "3"),
        ]),
    )
    .await;
    let (admin, members) = company(&app, 1).await;
    let member = &members[0];
    for session in [&admin, &admin, member] {
        let (status, body) = register(&app, session).await;
        assert_eq!(status, 201, "{body}");
    }
    // The member has room of their own, the company has none.
    let (status, body) = register(&app, member).await;
    assert_limit_refusal(status, &body, 3, "company");
    // The admin is at their own limit first.
    let (status, body) = register(&app, &admin).await;
    assert_limit_refusal(status, &body, 2, "one user");
    assert_eq!(listed(&app, &admin).await, 3);

    // Another company counts its own.
    let (other_admin, _) = company(&app, 0).await;
    let (status, body) = register(&app, &other_admin).await;
    assert_eq!(status, 201, "{body}");
}

/// `count` registrations as `session`, all at once: their statuses,
/// each checked to be 201 or a limit refusal (never a 5xx).
async fn at_once(app: &TestApp, sessions: &[&str]) -> (usize, usize) {
    let requests = sessions.iter().map(|session| register(app, session));
    let answers = futures_util::future::join_all(requests).await;
    let mut created = 0;
    let mut refused = 0;
    for (status, body) in answers {
        match status {
            201 => created += 1,
            409 if body["error"] == "webhook_endpoint_limit_reached" => refused += 1,
            other => panic!("{other}: {body}"),
        }
    }
    (created, refused)
}

async fn concurrent_registrations_never_exceed_the_owner_or_the_company_limit(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &with(&[("KEYPORT_WEBHOOK_MAX_ENDPOINTS_PER_TENANT", "8")]),
    )
    .await;
    let (admin, members) = company(&app, 2).await;

    // One member, twelve at once: exactly their five.
    let (created, refused) = at_once(&app, &[members[0].as_str(); 12]).await;
    assert_eq!((created, refused), (5, 7));
    assert_eq!(listed(&app, &members[0]).await, 5);

    // The admin and the other member, six each at once: the company's
    // three remaining places, no more.
    let mut sessions = vec![admin.as_str(); 6];
    sessions.extend([members[1].as_str(); 6]);
    let (created, refused) = at_once(&app, &sessions).await;
    assert_eq!((created, refused), (3, 9));
    assert_eq!(listed(&app, &admin).await, 8);
}

crate::on_both_backends!(
    a_member_stops_at_their_own_endpoint_limit_and_an_admin_can_still_register,
    the_company_limit_holds_whoever_registers_and_other_companies_are_unaffected,
    concurrent_registrations_never_exceed_the_owner_or_the_company_limit,
);
