//! Signed webhooks: each key's webhook-signing key is derived from its
//! secret at creation, shown once in the `whsec_…` form Standard Webhooks
//! libraries take, and stored only sealed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, json_body, spawn_app};

crate::on_both_backends!(
    creation_shows_a_webhook_key_derived_from_the_secret_once_and_stores_it_sealed,
    a_key_from_before_webhook_signing_says_so_and_cannot_take_the_mark,
    a_revoked_signing_key_passes_the_mark_only_to_a_key_that_can_sign,
);

/// The derivation exactly as the README gives it to receivers, run by bash.
fn derive_as_the_readme_says(secret: &str) -> String {
    let readme = include_str!("../../README.md");
    let marker = "<!-- webhook-key-derivation -->";
    let after = readme
        .split_once(marker)
        .map(|(_, rest)| rest)
        .expect("the README shows the derivation after its marker");
    let command = after
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.split("\n```").next())
        .expect("a sh block follows the marker");
    let output = std::process::Command::new("bash")
        .args(["-c", command])
        .env("KEYPORT_SECRET", secret)
        .output()
        .expect("run the README's derivation");
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
    let listed = app.call(Method::GET, "/api/v1/keys", &session).await;
    let listed = json_body(listed).await.to_string();
    assert!(!listed.contains("whsec_") && !listed.contains(secret));
    assert!(
        listed.contains("\"has_webhook_signing_key\":true"),
        "{listed}"
    );

    // A roll derives a new key from the new secret.
    let rolled = app
        .call(Method::POST, &format!("/api/v1/keys/{id}/roll"), &session)
        .await;
    assert_eq!(rolled.status(), 201);
    let rolled: Value = rolled.json().await.expect("json");
    let new_secret = rolled["client_secret"].as_str().expect("secret");
    let new_whsec = rolled["webhook_signing_key"].as_str().expect("whsec");
    assert_eq!(derive_as_the_readme_says(new_secret), new_whsec);
    assert_ne!(new_whsec, whsec);
}

/// Makes `key_id` look like a key created before webhook signing.
async fn forget_webhook_key(app: &TestApp, key_id: &str) {
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

    let key = json_body(
        app.call(Method::GET, &format!("/api/v1/keys/{legacy_id}"), &session)
            .await,
    )
    .await;
    assert_eq!(key["has_webhook_signing_key"], false, "{key}");

    // The integration's own first key held the mark; move it to the newer
    // key, then try to give it to the legacy one.
    let marked = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{newer_id}/webhook-signing"),
            &session,
        )
        .await;
    assert_eq!(marked.status(), 200);
    let refused = app
        .call(
            Method::POST,
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
    let still = json_body(
        app.call(Method::GET, &format!("/api/v1/keys/{newer_id}"), &session)
            .await,
    )
    .await;
    assert_eq!(still["signs_webhooks"], true);
}

async fn a_revoked_signing_key_passes_the_mark_only_to_a_key_that_can_sign(backend: Backend) {
    let app = spawn_app(backend).await;
    let integration = app.integration("admin", "keys:manage").await;
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
        .call(
            Method::POST,
            &format!("/api/v1/keys/{}/revoke", integration.key.key.id),
            &session,
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let newer = json_body(
        app.call(Method::GET, &format!("/api/v1/keys/{newer_id}"), &session)
            .await,
    )
    .await;
    assert_eq!(newer["signs_webhooks"], false, "{newer}");
}
