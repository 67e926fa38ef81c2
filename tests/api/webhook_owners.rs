//! A webhook endpoint speaks for the user who registered it, so it hears
//! only what that user may manage and see *now*: disabling the owner, taking
//! `webhooks:manage` away or demoting an admin to member stops deliveries at
//! once. Events are not queued for such an endpoint, and deliveries queued
//! before the change are dropped by the worker (failed, with an attempt that
//! says why, and audited). Giving the permission back resumes deliveries for
//! new events. Real receivers (`tests/clients/webhook_receiver.py`), both
//! backends.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, Integration, TestApp, assert_not_sent, attempts, json_body, spawn_app_with,
    spawn_sibling,
};
use crate::signed_webhooks::{
    RECEIVER_SETTINGS, Receiver, announced_record_ids, register, webhook_admin, webhook_member,
};

const PASSWORD: &str = "webhook owners 1234";
const EVERY_PERMISSION: &str = "reports:read webhooks:write keys:manage webhooks:manage";

/// Waits (at most 30 s) until no delivery is pending: every event queued
/// so far has been sent or dropped, so what a receiver holds then is all it
/// will ever get of them. Not a timing assertion: it waits for a state.
async fn wait_until_nothing_is_pending(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = app.store.webhook_queue_stats().await.expect("queue stats");
        if stats.pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} deliveries still pending after 30 s",
            stats.pending
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How many deliveries are pending now.
async fn pending(app: &TestApp) -> i64 {
    app.store
        .webhook_queue_stats()
        .await
        .expect("queue stats")
        .pending
}

/// Pushes one record to `orders`; returns its id.
async fn push_one(app: &TestApp, token: &str, label: &str) -> String {
    let pushed = app
        .push(token, "orders", &json!({ "label": label }), None)
        .await;
    assert_eq!(pushed.status(), 201, "push {label}");
    json_body(pushed).await["ids"][0]
        .as_str()
        .expect("record id")
        .to_owned()
}

/// A second admin of `of`'s company, with a key, its token and a session:
/// the one who changes the endpoint's owner.
async fn colleague_admin(app: &TestApp, of: &Integration) -> (String, String) {
    let colleague = app
        .user(
            &of.tenant,
            &format!("colleague-{}@example.com", uuid::Uuid::new_v4().simple()),
            "admin",
            EVERY_PERMISSION,
        )
        .await;
    let key = app.key(&colleague.email, None).await;
    let token = app.token_for_key(&key).await;
    let session = app.session_for(&colleague.email, PASSWORD).await;
    (token, session)
}

/// `POST /api/v1/users/{id}/{action}` (`disable` or `enable`) as `session`.
async fn set_status(app: &TestApp, session: &str, user_id: &str, action: &str) {
    let changed = app
        .post(&format!("/api/v1/users/{user_id}/{action}"), session)
        .await;
    assert_eq!(changed.status(), 200, "{action} the endpoint's owner");
}

/// `PATCH /api/v1/users/{id}` with `change` as `session`.
async fn change_user(app: &TestApp, session: &str, user_id: &str, change: Value) {
    let changed = app
        .api(Method::PATCH, &format!("/api/v1/users/{user_id}"), session)
        .json(&change)
        .sent()
        .await;
    let status = changed.status();
    assert_eq!(status, 200, "{change}: {}", json_body(changed).await);
}

/// Registers an endpoint for `record.created` at `receiver` as `session`;
/// returns its id.
async fn listen_for_records(app: &TestApp, session: &str, receiver: &Receiver) -> String {
    let registered = register(
        app,
        session,
        json!({ "url": receiver.url(), "events": ["record.created"] }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    json_body(registered).await["id"]
        .as_str()
        .expect("endpoint id")
        .to_owned()
}

async fn a_disabled_admins_endpoint_hears_nothing_until_the_admin_is_enabled_again(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (owner, owner_session) = webhook_admin(&app).await;
    let (colleague_token, colleague_session) = colleague_admin(&app, &owner).await;
    let receiver = Receiver::start(&[&owner.key.webhook_signing_key.to_whsec()]);
    listen_for_records(&app, &owner_session, &receiver).await;

    // While the owner is active, a colleague's record reaches their endpoint.
    let before = push_one(&app, &colleague_token, "before").await;
    receiver
        .wait_for("the record pushed while the owner was active", |a| {
            announced_record_ids(a).contains(&before)
        })
        .await;

    // Disabled: a record pushed now is for nobody's ears at that endpoint.
    set_status(&app, &colleague_session, &owner.user.id, "disable").await;
    let during = push_one(&app, &colleague_token, "during").await;
    wait_until_nothing_is_pending(&app).await;
    assert!(
        !announced_record_ids(&receiver.deliveries()).contains(&during),
        "a disabled admin's endpoint heard of a record: {:#?}",
        receiver.deliveries()
    );

    // Enabled again: new events reach it; what happened meanwhile does not.
    set_status(&app, &colleague_session, &owner.user.id, "enable").await;
    let after = push_one(&app, &colleague_token, "after").await;
    let arrived = receiver
        .wait_for("the record pushed after the owner was enabled again", |a| {
            announced_record_ids(a).contains(&after)
        })
        .await;
    let announced = announced_record_ids(&arrived);
    assert!(!announced.contains(&during), "{arrived:#?}");
    assert_eq!(arrived.len(), 2, "{arrived:#?}");
}

async fn a_member_who_loses_webhooks_manage_hears_nothing_until_it_is_granted_again(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, admin_session) = webhook_admin(&app).await;
    let (member, member_key) =
        webhook_member(&app, &admin, "member-loses-webhooks@example.com").await;
    let member_token = app.token_for_key(&member_key).await;
    let member_session = app.session_for(&member.email, PASSWORD).await;
    let receiver = Receiver::start(&[&member_key.webhook_signing_key.to_whsec()]);
    listen_for_records(&app, &member_session, &receiver).await;

    let before = push_one(&app, &member_token, "before").await;
    receiver
        .wait_for("the member's record while they held webhooks:manage", |a| {
            announced_record_ids(a).contains(&before)
        })
        .await;

    // The permission taken away; pushing records (webhooks:write) still works.
    change_user(
        &app,
        &admin_session,
        &member.id,
        json!({ "permissions": ["webhooks:write", "keys:manage"] }),
    )
    .await;
    let during = push_one(&app, &member_token, "during").await;
    wait_until_nothing_is_pending(&app).await;
    assert!(
        !announced_record_ids(&receiver.deliveries()).contains(&during),
        "an endpoint whose owner lost webhooks:manage heard of a record: {:#?}",
        receiver.deliveries()
    );

    // Granted again: new events reach it.
    change_user(
        &app,
        &admin_session,
        &member.id,
        json!({ "permissions": ["webhooks:write", "keys:manage", "webhooks:manage"] }),
    )
    .await;
    let after = push_one(&app, &member_token, "after").await;
    let arrived = receiver
        .wait_for("the record pushed after webhooks:manage came back", |a| {
            announced_record_ids(a).contains(&after)
        })
        .await;
    assert!(!announced_record_ids(&arrived).contains(&during));
    assert_eq!(arrived.len(), 2, "{arrived:#?}");
}

/// The `webhook_delivery.drop` audit rows about `endpoint_id`, read by an
/// admin of its company.
async fn drop_audit(app: &TestApp, session: &str, endpoint_id: &str) -> Vec<Value> {
    let audit = app
        .get_json(
            &format!("/api/v1/audit?action=webhook_delivery.drop&target={endpoint_id}"),
            session,
        )
        .await;
    let text = audit.to_string();
    assert!(
        !text.contains("kps_") && !text.contains("whsec_"),
        "a secret in the audit trail: {text}"
    );
    audit["events"].as_array().expect("events").clone()
}

/// How many deliveries the drop rows say were dropped, each checked to name
/// the endpoint and `reason`, and to be the worker's own doing.
fn dropped_per_audit(rows: &[Value], endpoint_id: &str, reason: &str) -> usize {
    rows.iter()
        .map(|row| {
            assert_eq!(row["target"], endpoint_id, "{row}");
            assert_eq!(row["actor"], "keyport", "{row}");
            let detail = row["detail"].as_str().expect("detail");
            assert!(detail.ends_with(reason), "{row}");
            detail
                .strip_prefix("dropped ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count in {row}"))
        })
        .sum()
}

/// The first instance only queues (it runs no delivery worker), so what is
/// queued waits, deterministically, until a second instance starts one.
fn queue_only() -> Vec<(&'static str, &'static str)> {
    let mut settings = RECEIVER_SETTINGS.to_vec();
    settings.push(("KEYPORT_WEBHOOK_DELIVER", "false"));
    settings
}

async fn deliveries_queued_before_the_owner_was_disabled_are_dropped_and_audited(backend: Backend) {
    let app = spawn_app_with(backend, &queue_only()).await;
    let (owner, owner_session) = webhook_admin(&app).await;
    let (colleague_token, colleague_session) = colleague_admin(&app, &owner).await;
    let receiver = Receiver::start(&[&owner.key.webhook_signing_key.to_whsec()]);
    let endpoint_id = listen_for_records(&app, &owner_session, &receiver).await;

    // Two events queued for the endpoint while its owner is active.
    let first = push_one(&app, &colleague_token, "first").await;
    let second = push_one(&app, &colleague_token, "second").await;
    assert_eq!(pending(&app).await, 2);

    // Then the owner is disabled, and a delivery worker starts.
    set_status(&app, &colleague_session, &owner.user.id, "disable").await;
    let worker = spawn_sibling(&app, &RECEIVER_SETTINGS).await;
    wait_until_nothing_is_pending(&worker).await;
    assert!(
        receiver.deliveries().is_empty(),
        "deliveries reached a disabled owner's endpoint: {:#?}",
        receiver.deliveries()
    );

    // Each delivery failed without being sent, and says why.
    let listed = attempts(&app, &colleague_session, &endpoint_id).await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for attempt in &listed {
        assert_eq!(attempt["delivery_state"], "failed", "{attempt}");
        assert_not_sent(attempt, "the endpoint's owner is disabled");
    }
    // The drop is audited: the endpoint, the reason, how many.
    let rows = drop_audit(&app, &colleague_session, &endpoint_id).await;
    assert!(!rows.is_empty(), "no audit row for the drop");
    assert_eq!(
        dropped_per_audit(&rows, &endpoint_id, "the endpoint's owner is disabled"),
        2,
        "{rows:#?}"
    );

    // Enabled again: a new event is delivered; the dropped ones stay dropped.
    set_status(&app, &colleague_session, &owner.user.id, "enable").await;
    let third = push_one(&app, &colleague_token, "third").await;
    let arrived = receiver
        .wait_for("the record pushed after the owner was enabled again", |a| {
            announced_record_ids(a).contains(&third)
        })
        .await;
    let announced = announced_record_ids(&arrived);
    assert!(!announced.contains(&first) && !announced.contains(&second));
}

async fn an_admin_demoted_to_member_no_longer_hears_of_colleagues_records_already_queued(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &queue_only()).await;
    let (owner, owner_session) = webhook_admin(&app).await;
    let (colleague_token, colleague_session) = colleague_admin(&app, &owner).await;
    let receiver = Receiver::start(&[&owner.key.webhook_signing_key.to_whsec()]);
    let endpoint_id = listen_for_records(&app, &owner_session, &receiver).await;

    // Queued while the owner was an admin, who sees every record.
    let colleagues = push_one(&app, &colleague_token, "the colleague's").await;
    assert_eq!(pending(&app).await, 1);
    change_user(
        &app,
        &colleague_session,
        &owner.user.id,
        json!({ "role": "member" }),
    )
    .await;
    let worker = spawn_sibling(&app, &RECEIVER_SETTINGS).await;
    wait_until_nothing_is_pending(&worker).await;
    assert!(
        receiver.deliveries().is_empty(),
        "a member's endpoint heard of a colleague's record: {:#?}",
        receiver.deliveries()
    );
    let rows = drop_audit(&app, &colleague_session, &endpoint_id).await;
    assert_eq!(
        dropped_per_audit(
            &rows,
            &endpoint_id,
            "the endpoint's owner may not see what the event is about"
        ),
        1,
        "{rows:#?}"
    );

    // Their own record, as a member, still reaches them.
    let own_token = app.token_for(&owner).await;
    let own = push_one(&app, &own_token, "their own").await;
    let arrived = receiver
        .wait_for("the member's own record", |a| {
            announced_record_ids(a).contains(&own)
        })
        .await;
    assert!(!announced_record_ids(&arrived).contains(&colleagues));
}

crate::on_both_backends!(
    a_disabled_admins_endpoint_hears_nothing_until_the_admin_is_enabled_again,
    a_member_who_loses_webhooks_manage_hears_nothing_until_it_is_granted_again,
    deliveries_queued_before_the_owner_was_disabled_are_dropped_and_audited,
    an_admin_demoted_to_member_no_longer_hears_of_colleagues_records_already_queued,
);
