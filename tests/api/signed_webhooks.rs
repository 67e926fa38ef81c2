//! Signed webhooks: each key's webhook-signing key is derived from its
//! secret at creation, shown once in the `whsec_…` form Standard Webhooks
//! libraries take, and stored only sealed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, TestApp, assert_not_sent, endpoint_stored_directly, first_attempt_at, json_body,
    spawn_acme, spawn_app, spawn_app_with_integration,
};
use crate::helpers::{Cred, GRANTABLE, PASSWORD, audit_events, create_key_as, keys_of};
use keyport::service::keys::CreatedKey;
use keyport::service::users::UserSummary as User;

/// The derivation exactly as the book (guides/webhooks.md) gives it to receivers, run by bash.
fn derive_as_the_readme_says(secret: &str) -> String {
    let readme = include_str!("../../docs/src/guides/webhooks.md");
    let marker = "<!-- webhook-key-derivation -->";
    let after = readme
        .split_once(marker)
        .map(|(_, rest)| rest)
        .expect("the webhooks guide shows the derivation after its marker");
    let command = after
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.split("\n```").next())
        .expect("a sh block follows the marker");
    let output = std::process::Command::new("bash")
        .args(["-c", command])
        .env("KEYPORT_SECRET", secret)
        .output()
        .expect("run the guide's derivation");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

async fn admin_session(app: &TestApp) -> String {
    let integration = app.integration("admin", "keys:manage").await;
    app.set_password(&integration.user.email, "webhook signing 1234")
        .await;
    app.session_for(&integration.user.email, "webhook signing 1234")
        .await
}

async fn creation_shows_a_webhook_key_derived_from_the_secret_once_and_stores_it_sealed(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let session = admin_session(&app).await;
    let created = app
        .create_key_over_http(&session, json!({ "name": "erp" }))
        .await;
    let secret = created["client_secret"].as_str().expect("secret");
    let whsec = created["webhook_signing_key"].as_str().expect("whsec");
    assert!(whsec.starts_with("whsec_"), "{whsec}");
    assert_eq!(derive_as_the_readme_says(secret), whsec);
    assert_eq!(created["has_webhook_signing_key"], true);

    // What the server keeps opens to the same key, and is sealed at rest.
    let id = created["id"].as_str().expect("id");
    let stored = app
        .store
        .webhook_signing_key(id)
        .await
        .expect("read")
        .expect("a key created now has one");
    assert_eq!(STANDARD.encode(stored.expose()), whsec["whsec_".len()..]);
    for (table, row) in crate::helpers::every_stored_row(&app.db).await {
        assert!(!row.contains(&whsec["whsec_".len()..]), "{table}: {row}");
    }

    // Never shown again: not in the listing, not in the key's own page.
    let listed = app.get_as("/api/v1/keys", &session).await;
    let listed = json_body(listed).await.to_string();
    assert!(!listed.contains("whsec_") && !listed.contains(secret));
    assert!(
        listed.contains("\"has_webhook_signing_key\":true"),
        "{listed}"
    );

    // A roll derives a new key from the new secret.
    let rolled = app.post(&format!("/api/v1/keys/{id}/roll"), &session).await;
    assert_eq!(rolled.status(), 201);
    let rolled: Value = rolled.json().await.expect("json");
    let new_secret = rolled["client_secret"].as_str().expect("secret");
    let new_whsec = rolled["webhook_signing_key"].as_str().expect("whsec");
    assert_eq!(derive_as_the_readme_says(new_secret), new_whsec);
    assert_ne!(new_whsec, whsec);
}

/// Makes `key_id` look like a key created before webhook signing.
pub(crate) async fn forget_webhook_key(app: &TestApp, key_id: &str) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let mut connection = sqlx::AnyConnection::connect(&app.db.url)
        .await
        .expect("connect");
    connection
        .execute(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET webhook_key_sealed = NULL WHERE id = '{key_id}'"
        )))
        .await
        .expect("update");
}

async fn a_key_from_before_webhook_signing_says_so_and_cannot_take_the_mark(backend: Backend) {
    let app = spawn_app(backend).await;
    let session = admin_session(&app).await;
    let legacy = app
        .create_key_over_http(&session, json!({ "name": "legacy" }))
        .await;
    let legacy_id = legacy["id"].as_str().expect("id").to_owned();
    let newer = app
        .create_key_over_http(&session, json!({ "name": "newer" }))
        .await;
    let newer_id = newer["id"].as_str().expect("id").to_owned();
    forget_webhook_key(&app, &legacy_id).await;

    let key = app
        .get_json(&format!("/api/v1/keys/{legacy_id}"), &session)
        .await;
    assert_eq!(key["has_webhook_signing_key"], false, "{key}");

    // The integration's own first key held the mark; move it to the newer
    // key, then try to give it to the legacy one.
    let marked = app
        .post(
            &format!("/api/v1/keys/{newer_id}/webhook-signing"),
            &session,
        )
        .await;
    assert_eq!(marked.status(), 200);
    let refused = app
        .post(
            &format!("/api/v1/keys/{legacy_id}/webhook-signing"),
            &session,
        )
        .await;
    assert_eq!(refused.status(), 409);
    let body = json_body(refused).await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("before webhook signing") && m.contains("mark a key")),
        "{body}"
    );
    let still = app
        .get_json(&format!("/api/v1/keys/{newer_id}"), &session)
        .await;
    assert_eq!(still["signs_webhooks"], true);
}

async fn a_revoked_signing_key_passes_the_mark_only_to_a_key_that_can_sign(backend: Backend) {
    let (app, integration) = spawn_app_with_integration(backend, "admin", "keys:manage").await;
    app.set_password(&integration.user.email, "webhook signing 1234")
        .await;
    let session = app
        .session_for(&integration.user.email, "webhook signing 1234")
        .await;
    // The integration's key holds the mark; a newer key exists but has no
    // webhook key, so revoking the marked key leaves nobody marked.
    let newer = app
        .create_key_over_http(&session, json!({ "name": "newer" }))
        .await;
    let newer_id = newer["id"].as_str().expect("id").to_owned();
    forget_webhook_key(&app, &newer_id).await;
    let revoked = app
        .post(
            &format!("/api/v1/keys/{}/revoke", integration.key.key.id),
            &session,
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let newer = app
        .get_json(&format!("/api/v1/keys/{newer_id}"), &session)
        .await;
    assert_eq!(newer["signs_webhooks"], false, "{newer}");
}

// ─── Deliveries ────────────────────────────────────────────────────────────

/// Settings that let deliveries reach the test's loopback receiver, and make
/// the worker quick: the SSRF table below runs without them.
pub(crate) const RECEIVER_SETTINGS: [(&str, &str); 5] = [
    ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
    ("KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
    ("KEYPORT_WEBHOOK_POLL_INTERVAL_MS", "100"),
    ("KEYPORT_WEBHOOK_RETRY_INITIAL_SECONDS", "1"),
    ("KEYPORT_SIGN_IN_MAX_FAILURES", "2"),
];

/// `tests/clients/webhook_receiver.py`: a real HTTP server verifying every
/// delivery with the `standardwebhooks` library.
pub(crate) struct Receiver {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Receiver {
    pub(crate) fn start(whsecs: &[&str]) -> Self {
        let (child, dir, port) = crate::helpers::python_server("webhook_receiver", whsecs);
        Receiver { child, dir, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn answer(&self, status: u16) {
        std::fs::write(self.dir.join("status"), status.to_string()).expect("status");
    }

    fn redirect_to(&self, location: &str) {
        std::fs::write(self.dir.join("location"), location).expect("location");
    }

    pub(crate) fn deliveries(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("deliveries.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect()
    }

    /// Waits (at most 30 s) until `done` holds for what has arrived.
    pub(crate) async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let arrived = self.deliveries();
            if done(&arrived) {
                return arrived;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; arrived: {arrived:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn event_type(delivery: &Value) -> String {
    let body: Value =
        serde_json::from_str(delivery["body"].as_str().unwrap_or("{}")).expect("body");
    body["type"].as_str().unwrap_or_default().to_owned()
}

fn body_of(delivery: &Value) -> Value {
    serde_json::from_str(delivery["body"].as_str().unwrap_or("{}")).expect("body")
}

/// A member of `admin`'s company who may manage webhooks and keys, and
/// their first key.
pub(crate) async fn webhook_member(
    app: &TestApp,
    admin: &crate::helpers::Integration,
    email: &str,
) -> (User, CreatedKey) {
    let member = app
        .user(
            &admin.tenant,
            email,
            "member",
            "webhooks:write keys:manage webhooks:manage",
        )
        .await;
    let key = app.key(&member.email, None).await;
    (member, key)
}

/// An admin with every permission, their first key (which holds the mark)
/// and a session.
pub(crate) async fn webhook_admin(app: &TestApp) -> (crate::helpers::Integration, String) {
    app.signed_in_integration(
        "admin",
        "reports:read webhooks:write keys:manage webhooks:manage",
    )
    .await
}

/// An endpoint on `receiver` listening to `key.created`, registered through
/// the API: its JSON.
async fn key_created_endpoint(app: &TestApp, session: &str, receiver: &Receiver) -> Value {
    let body = json!({ "url": receiver.url(), "events": ["key.created"] });
    json_body(register(app, session, body).await).await
}

pub(crate) async fn register(app: &TestApp, session: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, "/api/v1/webhook-endpoints", session)
        .json(&body)
        .sent()
        .await
}

/// A leaked key that signs webhooks can be revoked at once (not 409 until
/// someone moves the mark by hand): the revocation moves the mark to
/// another active key of the owner, and says so in the audit trail.
async fn revoking_the_webhook_signing_key_moves_the_mark_to_another_key(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);
    let first = json_body(create_key_as(&app, &session, json!({"name": "leaked"})).await).await;
    let second = json_body(create_key_as(&app, &session, json!({"name": "spare"})).await).await;
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
    let moves = audit_events(
        &app,
        &acme.admin_session,
        &[
            ("action", "key.mark_webhook_signing"),
            ("target", second_id),
        ],
    )
    .await;
    assert!(!moves.is_empty(), "no audit event for the move");

    let delete = app.delete_key(&session, second_id, second_id).await;
    assert_eq!(delete.status(), 409, "deleting the marked active key");
}

/// Revoking the owner's only key (the signer) is allowed too; then no key of
/// the owner signs webhooks.
async fn revoking_a_users_only_key_leaves_no_key_signing_webhooks(backend: Backend) {
    let (app, acme) = spawn_acme(backend).await;
    let ana = acme.employ(&app, "ana", "member", GRANTABLE).await;
    let session = Cred::Bearer(app.session_for(&ana.email, PASSWORD).await);
    let only = json_body(create_key_as(&app, &session, json!({"name": "only"})).await).await;
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
    creation_shows_a_webhook_key_derived_from_the_secret_once_and_stores_it_sealed,
    a_key_from_before_webhook_signing_says_so_and_cannot_take_the_mark,
    a_revoked_signing_key_passes_the_mark_only_to_a_key_that_can_sign,
    every_event_arrives_signed_and_verifies_with_standardwebhooks_given_only_the_whsec,
    a_failing_receiver_gets_the_same_webhook_id_until_it_answers_2xx,
    a_410_disables_the_endpoint_and_the_disabling_is_audited,
    redirects_are_never_followed_and_targets_are_checked_again_at_each_connection,
    non_public_or_insecure_endpoint_urls_are_refused_when_registered,
    every_event_is_delivered_after_kill_9_and_a_receiver_that_was_down_for_a_while,
    when_the_mark_moves_deliveries_carry_both_signatures_for_the_overlap_only,
    an_endpoint_failing_too_long_is_disabled_and_a_delivery_retried_too_long_given_up,
    a_members_endpoint_hears_only_of_their_own_keys_and_records,
    metrics_count_deliveries_and_show_the_queue,
    revoking_the_webhook_signing_key_moves_the_mark_to_another_key,
    revoking_a_users_only_key_leaves_no_key_signing_webhooks,
);

async fn every_event_arrives_signed_and_verifies_with_standardwebhooks_given_only_the_whsec(
    backend: Backend,
) {
    let app = crate::helpers::spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, session) = webhook_admin(&app).await;
    let whsec = admin.key.webhook_signing_key.to_whsec();
    let receiver = Receiver::start(&[&whsec]);
    let registered = register(
        &app,
        &session,
        json!({
            "url": receiver.url(),
            "events": ["record.created", "key.created", "key.revoked", "key.deleted",
                       "key.expiring", "user.locked"],
            "collections": ["orders"],
            "description": "ERP listener",
        }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let endpoint = json_body(registered).await;
    let endpoint_id = endpoint["id"].as_str().expect("id").to_owned();

    // Each change announces itself.
    let token = app.token_for(&admin).await;
    let pushed = app
        .push(&token, "orders", &json!([{ "n": 1 }, { "n": 2 }]), None)
        .await;
    assert_eq!(pushed.status(), 201);
    let other_collection = app.push(&token, "invoices", &json!({ "n": 3 }), None).await;
    assert_eq!(other_collection.status(), 201);
    let created = app
        .create_key_over_http(
            &session,
            json!({ "name": "expiring", "expires_in_seconds": 86400 }),
        )
        .await;
    let created_id = created["id"].as_str().expect("id").to_owned();
    let revoked = app
        .post(&format!("/api/v1/keys/{created_id}/revoke"), &session)
        .await;
    assert_eq!(revoked.status(), 200);
    let deleted = app
        .delete_key(
            &session,
            &created_id,
            created["client_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let soon = app
        .create_key_over_http(
            &session,
            json!({ "name": "soon", "expires_in_seconds": 3600 }),
        )
        .await;
    for _ in 0..2 {
        app.sign_in(&admin.user.email, "wrong password 99").await;
    }

    let wanted = [
        "record.created",
        "key.created",
        "key.revoked",
        "key.deleted",
        "key.expiring",
        "user.locked",
    ];
    let arrived = receiver
        .wait_for("one delivery of every event", |arrived| {
            // The first key (a day left) may be announced as expiring
            // before `soon` is: wait for `soon`'s own announcement too.
            wanted
                .iter()
                .all(|w| arrived.iter().any(|d| event_type(d) == *w))
                && arrived.iter().any(|d| {
                    event_type(d) == "key.expiring" && body_of(d)["data"]["key_id"] == soon["id"]
                })
        })
        .await;
    for delivery in &arrived {
        assert_eq!(delivery["verified"], json!([true]), "{delivery}");
        assert_eq!(delivery["tampered_refused"], true, "{delivery}");
        assert_eq!(delivery["stale_refused"], true, "{delivery}");
        assert_eq!(delivery["stranger_refused"], true, "{delivery}");
        let body = delivery["body"].as_str().unwrap();
        assert!(!body.contains("kps_") && !body.contains("whsec_"), "{body}");
        assert!(
            delivery["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("msg_"))
        );
    }
    // Only the listened-to collection, with the pushed records' ids.
    let records: Vec<Value> = arrived
        .iter()
        .filter(|d| event_type(d) == "record.created")
        .map(body_of)
        .collect();
    assert_eq!(
        records.len(),
        1,
        "invoices are not listened to: {records:?}"
    );
    assert_eq!(records[0]["data"]["collection"], "orders");
    assert_eq!(
        records[0]["data"]["record_ids"].as_array().map(Vec::len),
        Some(2)
    );
    let expiring: Vec<Value> = arrived
        .iter()
        .filter(|d| event_type(d) == "key.expiring")
        .map(body_of)
        .collect();
    assert!(
        expiring.iter().any(|e| e["data"]["key_id"] == soon["id"]),
        "{expiring:?}"
    );
    let revoked: Vec<Value> = arrived
        .iter()
        .filter(|d| event_type(d) == "key.revoked")
        .map(body_of)
        .collect();
    assert_eq!(revoked[0]["data"]["key_id"], created_id.as_str());

    // The attempts are listed with status and latency.
    let attempts = app
        .get_json(
            &format!("/api/v1/webhook-endpoints/{endpoint_id}/attempts"),
            &session,
        )
        .await;
    let attempts = attempts["attempts"].as_array().expect("attempts").clone();
    assert!(attempts.len() >= wanted.len(), "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a["status_code"] == 200 && a["delivery_state"] == "delivered")
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["response_excerpt"] == "answered 200")
    );

    // A test event reaches this endpoint whatever it listens to.
    let queued = app
        .post(
            &format!("/api/v1/webhook-endpoints/{endpoint_id}/test"),
            &session,
        )
        .await;
    assert_eq!(queued.status(), 202);
    let event_id = json_body(queued).await["event_id"]
        .as_str()
        .expect("event id")
        .to_owned();
    receiver
        .wait_for("the test event", |arrived| {
            arrived
                .iter()
                .any(|d| d["id"] == event_id.as_str() && event_type(d) == "webhook.test")
        })
        .await;
}

async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers_2xx(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, session) = webhook_admin(&app).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    receiver.answer(503);
    let endpoint = key_created_endpoint(&app, &session, &receiver).await;
    app.create_key_over_http(&session, json!({ "name": "announce me" }))
        .await;
    receiver
        .wait_for("two failed attempts", |arrived| arrived.len() >= 2)
        .await;
    receiver.answer(200);
    let arrived = receiver
        .wait_for("a third attempt", |arrived| arrived.len() >= 3)
        .await;
    let ids: std::collections::BTreeSet<&str> =
        arrived.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one webhook-id across retries: {arrived:#?}");
    // Delivered now: no more attempts come.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(receiver.deliveries().len(), 3);
    let attempts = app
        .get_json(
            &format!(
                "/api/v1/webhook-endpoints/{}/attempts",
                endpoint["id"].as_str().unwrap()
            ),
            &session,
        )
        .await;
    let statuses: Vec<i64> = attempts["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|a| a["status_code"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);

    // Delivered again on request, with the same id.
    let delivery_id = attempts["attempts"][0]["delivery_id"].as_str().unwrap();
    let again = app
        .call(
            Method::POST,
            &format!(
                "/api/v1/webhook-endpoints/{}/deliveries/{delivery_id}/redeliver",
                endpoint["id"].as_str().unwrap()
            ),
            &session,
        )
        .await;
    assert_eq!(again.status(), 202);
    let arrived = receiver.wait_for("the redelivery", |a| a.len() >= 4).await;
    assert_eq!(arrived[3]["id"], arrived[0]["id"]);
}

async fn a_410_disables_the_endpoint_and_the_disabling_is_audited(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, session) = webhook_admin(&app).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    receiver.answer(410);
    let endpoint = key_created_endpoint(&app, &session, &receiver).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    app.create_key_over_http(&session, json!({ "name": "one" }))
        .await;
    receiver
        .wait_for("the 410 attempt", |a| !a.is_empty())
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let shown = loop {
        let shown = app
            .get_json(&format!("/api/v1/webhook-endpoints/{id}"), &session)
            .await;
        if shown["status"] == "disabled" || std::time::Instant::now() > deadline {
            break shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(shown["status"], "disabled", "{shown}");
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap_or("")
            .contains("410")
    );
    // Nothing more is sent to it.
    app.create_key_over_http(&session, json!({ "name": "two" }))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(receiver.deliveries().len(), 1);
    let audit = app.get_json("/api/v1/audit", &session).await;
    assert!(
        audit.to_string().contains("webhook_endpoint.disable"),
        "{audit}"
    );
}

async fn redirects_are_never_followed_and_targets_are_checked_again_at_each_connection(
    backend: Backend,
) {
    let app = crate::helpers::spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, session) = webhook_admin(&app).await;
    let whsec = admin.key.webhook_signing_key.to_whsec();
    let redirector = Receiver::start(&[&whsec]);
    let target = Receiver::start(&[&whsec]);
    redirector.redirect_to(&target.url());
    let endpoint = key_created_endpoint(&app, &session, &redirector).await;
    app.create_key_over_http(&session, json!({ "name": "one" }))
        .await;
    redirector.wait_for("the attempt", |a| !a.is_empty()).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(target.deliveries().is_empty(), "the redirect was followed");
    let attempts = app
        .get_json(
            &format!(
                "/api/v1/webhook-endpoints/{}/attempts",
                endpoint["id"].as_str().unwrap()
            ),
            &session,
        )
        .await;
    assert_eq!(attempts["attempts"][0]["status_code"], 302, "{attempts}");

    // With the default address policy, a name that resolves to loopback at
    // connection time is refused then, whatever it resolved to when it was
    // registered (DNS rebinding). The row is written directly, as if the
    // name had resolved to a public address at registration.
    let strict = crate::helpers::spawn_app_with(
        backend,
        &[
            ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
            ("KEYPORT_WEBHOOK_POLL_INTERVAL_MS", "100"),
        ],
    )
    .await;
    let (strict_admin, strict_session) = webhook_admin(&strict).await;
    let rebinding = Receiver::start(&[&strict_admin.key.webhook_signing_key.to_whsec()]);
    let url = format!("http://localhost:{}/hooks", rebinding.port);
    let attempt = first_attempt_at(&strict, &strict_admin, &strict_session, &url).await;
    assert_not_sent(&attempt, "loopback");
    assert!(rebinding.deliveries().is_empty());
}

/// The SSRF table: with the default policy each of these is refused when
/// registered, with a message saying why (input tried: each URL).
async fn non_public_or_insecure_endpoint_urls_are_refused_when_registered(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, session) = webhook_admin(&app).await;
    for (url, needle) in [
        ("https://localhost/hooks", "loopback"),
        ("https://127.0.0.1/hooks", "loopback"),
        ("https://[::1]/hooks", "loopback"),
        ("https://0.0.0.0/hooks", "unspecified"),
        ("https://2130706433/hooks", "loopback"),
        ("https://[::ffff:127.0.0.1]/hooks", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.1.2.3/hooks", "private"),
        ("https://192.168.0.10/hooks", "private"),
        ("https://[fd12::1]/hooks", "private"),
        ("https://224.0.0.251/hooks", "multicast"),
        ("https://198.18.0.1/hooks", "benchmarking"),
        ("https://192.0.2.1/hooks", "documentation"),
        ("https://[64:ff9b::a00:1]/hooks", "NAT64"),
        ("https://[2002:a00:1::1]/hooks", "6to4"),
        ("https://[fec0::1]/hooks", "site-local"),
        ("http://hooks.example.com/", "https"),
        ("https://user:pw@hooks.example.com/", "user name"),
        ("not a url", "not valid"),
    ] {
        let refused = register(
            &app,
            &session,
            json!({ "url": url, "events": ["key.created"] }),
        )
        .await;
        let status = refused.status();
        let body = json_body(refused).await;
        assert!(status == 400 || status == 422, "{url}: {status} {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{url}: {body}"
        );
    }
    for (events, needle) in [
        (json!([]), "at least one"),
        (json!(["key.exploded"]), "key.exploded"),
    ] {
        let refused = register(
            &app,
            &session,
            json!({ "url": "https://93.184.216.34/hooks", "events": events }),
        )
        .await;
        let body = json_body(refused).await;
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{body}"
        );
    }
    // Without `webhooks:manage`, nothing is registered.
    let member = app.integration("member", "keys:manage").await;
    let token = app.token_for(&member).await;
    let refused = register(
        &app,
        &token,
        json!({ "url": "https://93.184.216.34/hooks", "events": ["key.created"] }),
    )
    .await;
    assert_eq!(refused.status(), 403);
}

// ─── Crashes and several instances ─────────────────────────────────────────

/// The record ids every verified `record.created` delivery announced.
pub(crate) fn announced_record_ids(arrived: &[Value]) -> std::collections::BTreeSet<String> {
    arrived
        .iter()
        .filter(|d| d["verified"] == json!([true]) && event_type(d) == "record.created")
        .flat_map(|d| {
            body_of(d)["data"]["record_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect()
}

/// Pushes `count` records one push each; returns their ids.
async fn push_records(app_url: &str, token: &str, count: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..count {
        let pushed = http
            .post(format!("{app_url}/api/v1/webhooks/orders"))
            .bearer_auth(token)
            .json(&json!({ "n": n }))
            .sent()
            .await;
        assert_eq!(pushed.status(), 201);
        let body: Value = pushed.json().await.expect("json");
        ids.push(body["ids"][0].as_str().expect("id").to_owned());
    }
    ids
}

async fn every_event_is_delivered_after_kill_9_and_a_receiver_that_was_down_for_a_while(
    backend: Backend,
) {
    // The in-process instance only sets up; it delivers nothing.
    let setup =
        crate::helpers::spawn_app_with(backend, &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let (admin, _) = webhook_admin(&setup).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    // Slow answers, so deliveries are in flight when the worker dies.
    std::fs::write(receiver.dir.join("delay"), "1").expect("delay");
    endpoint_stored_directly(&setup, &admin, &receiver.url(), "record.created").await;
    let env = [
        ("KEYPORT_ISSUER", setup.settings.tokens.issuer.as_str()),
        ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
        ("KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("KEYPORT_WEBHOOK_POLL_INTERVAL_MS", "100"),
        ("KEYPORT_WEBHOOK_RETRY_INITIAL_SECONDS", "1"),
        ("KEYPORT_WEBHOOK_CONNECT_TIMEOUT_SECONDS", "1"),
        ("KEYPORT_WEBHOOK_TIMEOUT_SECONDS", "2"),
        ("KEYPORT_WEBHOOK_CONCURRENCY", "4"),
    ];
    let start = || {
        let mut command = crate::helpers::ServedBinary::command(&setup.db.url, 2);
        command.envs(env.iter().copied());
        crate::helpers::ServedBinary::start(command, std::sync::Arc::default())
    };
    let mut server = start();
    let token = setup.token_for(&admin).await;
    let pushed = push_records(&server.url(""), &token, 24).await;

    // Kill the worker while attempts are in flight, with the receiver
    // about to go down.
    receiver
        .wait_for("the first attempts", |arrived| !arrived.is_empty())
        .await;
    server.kill_9();
    receiver.answer(503);
    std::fs::remove_file(receiver.dir.join("delay")).expect("no delay");

    let _restarted = start();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    receiver.answer(200);
    let arrived = receiver
        .wait_for("every pushed record announced", |arrived| {
            let announced = announced_record_ids(arrived);
            pushed.iter().all(|id| announced.contains(id))
        })
        .await;
    assert!(
        arrived
            .iter()
            .any(|d| body_of(d).is_object() && d["verified"] == json!([true])),
        "deliveries verified"
    );
}

/// Two instances on one PostgreSQL share the outbox: every event arrives,
/// and no delivery is ever attempted by both at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_deliver_each_event_and_never_one_delivery_twice_at_once() {
    let settings = [
        ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
        ("KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("KEYPORT_WEBHOOK_POLL_INTERVAL_MS", "50"),
        ("KEYPORT_WEBHOOK_CONCURRENCY", "4"),
    ];
    let first = crate::helpers::spawn_app_with(Backend::Postgres, &settings).await;
    let second = crate::helpers::spawn_sibling(&first, &settings).await;
    let (admin, session) = webhook_admin(&first).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    std::fs::write(receiver.dir.join("delay"), "0.2").expect("delay");
    let registered = register(
        &first,
        &session,
        json!({ "url": receiver.url(), "events": ["record.created"] }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    let token = first.token_for(&admin).await;
    let mut pushed = push_records(&first.address, &token, 20).await;
    pushed.extend(push_records(&second.address, &token, 20).await);
    let arrived = receiver
        .wait_for("every pushed record announced", |arrived| {
            let announced = announced_record_ids(arrived);
            pushed.iter().all(|id| announced.contains(id))
        })
        .await;
    let mut by_id: std::collections::BTreeMap<&str, Vec<(f64, f64)>> = Default::default();
    for delivery in &arrived {
        by_id
            .entry(delivery["id"].as_str().unwrap_or_default())
            .or_default()
            .push((
                delivery["started_at"].as_f64().unwrap_or_default(),
                delivery["received_at"].as_f64().unwrap_or_default(),
            ));
    }
    for (id, mut spans) in by_id {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "delivery {id} was attempted twice at once: {spans:?}"
            );
        }
    }
}

// ─── Signing keys over time, failure policy, visibility, metrics ───────────

async fn when_the_mark_moves_deliveries_carry_both_signatures_for_the_overlap_only(
    backend: Backend,
) {
    let mut settings = RECEIVER_SETTINGS.to_vec();
    settings.push(("KEYPORT_WEBHOOK_SIGNATURE_OVERLAP_SECONDS", "3"));
    let app = crate::helpers::spawn_app_with(backend, &settings).await;
    let (admin, session) = webhook_admin(&app).await;
    let old_whsec = admin.key.webhook_signing_key.to_whsec();
    let newer = app
        .create_key_over_http(&session, json!({ "name": "newer" }))
        .await;
    let new_whsec = newer["webhook_signing_key"]
        .as_str()
        .expect("whsec")
        .to_owned();
    let receiver = Receiver::start(&[&old_whsec, &new_whsec]);
    let endpoint = key_created_endpoint(&app, &session, &receiver).await;
    let test_path = format!(
        "/api/v1/webhook-endpoints/{}/test",
        endpoint["id"].as_str().unwrap()
    );
    // Before the move: the old key alone signs.
    assert_eq!(app.post(&test_path, &session).await.status(), 202);
    let first = receiver.wait_for("the first test", |a| !a.is_empty()).await;
    assert_eq!(first[0]["verified"], json!([true, false]), "{}", first[0]);

    let moved = app
        .call(
            Method::POST,
            &format!(
                "/api/v1/keys/{}/webhook-signing",
                newer["id"].as_str().unwrap()
            ),
            &session,
        )
        .await;
    assert_eq!(moved.status(), 200);
    // During the overlap: both sign, so receivers holding either verify.
    assert_eq!(app.post(&test_path, &session).await.status(), 202);
    let second = receiver.wait_for("the second test", |a| a.len() >= 2).await;
    assert_eq!(second[1]["verified"], json!([true, true]), "{}", second[1]);
    assert_eq!(
        second[1]["signature"].as_str().unwrap().split(' ').count(),
        2,
        "{}",
        second[1]
    );
    // After it: the new key alone.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(app.post(&test_path, &session).await.status(), 202);
    let third = receiver.wait_for("the third test", |a| a.len() >= 3).await;
    assert_eq!(third[2]["verified"], json!([false, true]), "{}", third[2]);
}

async fn an_endpoint_failing_too_long_is_disabled_and_a_delivery_retried_too_long_given_up(
    backend: Backend,
) {
    let mut settings = RECEIVER_SETTINGS.to_vec();
    settings.push(("KEYPORT_WEBHOOK_DISABLE_AFTER_SECONDS", "3"));
    settings.push(("KEYPORT_WEBHOOK_RETRY_FOR_SECONDS", "2"));
    let app = crate::helpers::spawn_app_with(backend, &settings).await;
    let (admin, session) = webhook_admin(&app).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    receiver.answer(500);
    let endpoint = key_created_endpoint(&app, &session, &receiver).await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    let test_path = format!("/api/v1/webhook-endpoints/{id}/test");
    assert_eq!(app.post(&test_path, &session).await.status(), 202);
    // The first delivery is given up after its 2 s of retries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let attempts = app
            .get_json(
                &format!("/api/v1/webhook-endpoints/{id}/attempts"),
                &session,
            )
            .await;
        let states: Vec<&str> = attempts["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["delivery_state"].as_str())
            .collect();
        if states.first() == Some(&"failed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{attempts}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // More failures, past 3 s of failing: the endpoint is disabled, audited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let shown = loop {
        let _ = app.post(&test_path, &session).await;
        let shown = app
            .get_json(&format!("/api/v1/webhook-endpoints/{id}"), &session)
            .await;
        if shown["status"] == "disabled" {
            break shown;
        }
        assert!(std::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(
        shown["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed for longer")),
        "{shown}"
    );
    let audit = app
        .get_json("/api/v1/audit?action=webhook_endpoint.disable", &session)
        .await;
    assert!(audit.to_string().contains(&id), "{audit}");
    // Enabling it again forgets the failures. The receiver answers again
    // first: deliveries queued before the endpoint was disabled are sent
    // once it is enabled, and one failing between the update and its
    // read-back would otherwise mark it failing anew.
    receiver.answer(204);
    let enabled = app
        .api(
            Method::PATCH,
            &format!("/api/v1/webhook-endpoints/{id}"),
            &session,
        )
        .json(&json!({ "enabled": true }))
        .sent()
        .await;
    let enabled = json_body(enabled).await;
    assert_eq!(enabled["status"], "enabled");
    assert_eq!(enabled["failing_since"], Value::Null);
}

async fn a_members_endpoint_hears_only_of_their_own_keys_and_records(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, admin_session) = webhook_admin(&app).await;
    let (member, member_key) = webhook_member(&app, &admin, "member-hooks@example.com").await;
    app.set_password(&member.email, "member password 1234")
        .await;
    let member_session = app.session_for(&member.email, "member password 1234").await;
    let receiver = Receiver::start(&[&member_key.webhook_signing_key.to_whsec()]);
    let registered = register(
        &app,
        &member_session,
        json!({ "url": receiver.url(), "events": ["record.created", "key.created"] }),
    )
    .await;
    assert_eq!(registered.status(), 201);
    // The admin's records and keys: not for the member's endpoint.
    let admin_token = app.token_for(&admin).await;
    app.push(&admin_token, "orders", &json!({ "by": "admin" }), None)
        .await;
    app.create_key_over_http(&admin_session, json!({ "name": "admin's" }))
        .await;
    // The member's own: announced.
    let member_token = app.token_for_key(&member_key).await;
    let pushed = json_body(
        app.push(&member_token, "orders", &json!({ "by": "member" }), None)
            .await,
    )
    .await;
    let member_record = pushed["ids"][0].as_str().unwrap().to_owned();
    let arrived = receiver
        .wait_for("the member's record", |a| {
            announced_record_ids(a).contains(&member_record)
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let arrived = if arrived.len() < receiver.deliveries().len() {
        receiver.deliveries()
    } else {
        arrived
    };
    assert_eq!(
        arrived.len(),
        1,
        "only the member's own event: {arrived:#?}"
    );
    // And the admin sees the member's endpoint; the member not the admin's.
    let listed = app
        .get_json("/api/v1/webhook-endpoints", &admin_session)
        .await;
    assert_eq!(listed["endpoints"].as_array().map(Vec::len), Some(1));
}

async fn metrics_count_deliveries_and_show_the_queue(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, &RECEIVER_SETTINGS).await;
    let (admin, session) = webhook_admin(&app).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    receiver.answer(503);
    let endpoint = key_created_endpoint(&app, &session, &receiver).await;
    let test_path = format!(
        "/api/v1/webhook-endpoints/{}/test",
        endpoint["id"].as_str().unwrap()
    );
    app.post(&test_path, &session).await;
    receiver
        .wait_for("a failed attempt", |a| !a.is_empty())
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("keyport_webhook_deliveries_total{outcome=\"retry\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyport_webhook_queue_depth 1"),
        "{metrics}"
    );
    receiver.answer(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let metrics = loop {
        let metrics = app.get("/metrics").await.text().await.expect("text");
        if metrics.contains("keyport_webhook_queue_depth 0") {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        metrics.contains("keyport_webhook_deliveries_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyport_webhook_oldest_pending_seconds 0"),
        "{metrics}"
    );
}
