//! Sealed storage: what the server must use (signing keys' private halves,
//! webhook-signing keys) reaches the database only sealed under the master
//! key; a database from before is converted on first start; the master key
//! rotates online.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyport::tokens::{SigningAlgorithm, SigningKey};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TEST_MASTER_KEY, TestApp, every_stored_row, settings_for, spawn_app_with,
    spawn_sibling, startup_error,
};

const OTHER_MASTER_KEY: &str = "b3RoZXIta2V5cG9ydC1tYXN0ZXIta2V5LTMyLWJ5dGU=";

crate::on_both_backends!(
    a_full_workflow_leaves_no_secret_or_private_key_in_clear_in_any_column,
    signing_keys_stored_in_clear_are_sealed_on_first_start_and_keep_signing,
    the_master_key_rotates_while_both_keys_read_and_the_old_key_alone_is_refused,
    a_sealed_value_moved_to_another_row_does_not_open,
);

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

async fn sealed_signing_keys(app: &TestApp) -> Vec<String> {
    every_stored_row(&app.db)
        .await
        .into_iter()
        .filter(|(table, _)| table == "signing_keys")
        .map(|(_, row)| row)
        .collect()
}

async fn a_full_workflow_leaves_no_secret_or_private_key_in_clear_in_any_column(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let admin = app
        .integration("admin", "reports:read,webhooks:write,keys:manage")
        .await;
    let password = "correct horse battery staple 42";
    app.set_password(&admin.user.email, password).await;
    let session = app.session_for(&admin.user.email, password).await;
    // The second key allows SigV4, so its secret is stored, sealed: the scan
    // below proves it never lands in clear.
    let created = app
        .create_key_over_http(&session, json!({ "name": "second", "sigv4": true }))
        .await;
    let second_secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_eq!(
        crate::sigv4::signed_whoami(
            &app,
            created["client_id"].as_str().expect("client_id"),
            &second_secret
        )
        .await,
        200
    );
    let token = app.token_for(&admin).await;
    let pushed = app
        .push(&token, "orders", &json!({ "order": 1 }), None)
        .await;
    assert!(pushed.status().is_success(), "{}", pushed.status());
    // A rotation leaves two private halves behind: both must be sealed.
    let rotated = keyport::tokens::KeyRing::rotate(&app.store, SigningAlgorithm::Es256)
        .await
        .expect("rotate");

    let rows = every_stored_row(&app.db).await;
    assert!(rows.len() > 5, "the scan read the database: {rows:?}");
    let needles = [
        admin.secret(),
        admin.secret().trim_start_matches("kps_"),
        second_secret.as_str(),
        second_secret.trim_start_matches("kps_"),
        password,
        session.as_str(),
        "PRIVATE KEY",
        // PKCS#8 DER of a P-256 key, base64: what a PEM body starts with.
        "MIGHAgEA",
    ];
    for (table, row) in &rows {
        for needle in needles {
            assert!(
                !row.contains(needle),
                "{table} holds {needle:?} in clear: {row}"
            );
        }
    }
    let sigv4_rows: Vec<&String> = rows
        .iter()
        .filter(|(table, row)| table == "api_keys" && row.contains(created["id"].as_str().unwrap()))
        .map(|(_, row)| row)
        .collect();
    assert_eq!(sigv4_rows.len(), 1);
    assert_eq!(
        sigv4_rows[0].matches("kpseal:v1:").count(),
        2,
        "the webhook-signing key and the SigV4 secret, both sealed: {}",
        sigv4_rows[0]
    );
    let signing_keys = sealed_signing_keys(&app).await;
    assert!(signing_keys.len() >= 2, "{signing_keys:?}");
    assert!(signing_keys.iter().any(|row| row.contains(&rotated)));
    for row in signing_keys {
        assert!(row.contains("kpseal:v1:"), "not sealed: {row}");
    }
}

async fn signing_keys_stored_in_clear_are_sealed_on_first_start_and_keep_signing(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    // What a database from before sealed storage holds: an active key's PEM
    // in clear (the migration renamed the column; it did not seal).
    let (legacy, pem) = SigningKey::generate(SigningAlgorithm::Es256).expect("generate");
    let now = chrono::Utc::now().timestamp();
    let store_url = app.db.url.clone();
    raw_execute(
        &store_url,
        &[
            "UPDATE signing_keys SET state = 'retired', retired_at = 1, updated_at = 1".to_owned(),
            format!(
                "INSERT INTO signing_keys (kid, algorithm, private_key_sealed, state, created_at, \
                 updated_at) VALUES ('{}', 'ES256', '{}', 'active', {now}, {now})",
                legacy.kid, pem
            ),
        ],
    )
    .await;
    assert!(
        sealed_signing_keys(&app)
            .await
            .iter()
            .any(|row| row.contains("PRIVATE KEY")),
        "the legacy row is in clear before the restart"
    );

    let restarted = spawn_sibling(&app, &[]).await;
    let rows = sealed_signing_keys(&restarted).await;
    assert!(
        rows.iter()
            .all(|row| row.contains("kpseal:v1:") && !row.contains("PRIVATE KEY")),
        "{rows:?}"
    );
    // The converted key still signs, and its tokens verify at the server.
    let integration = restarted.integration("member", "reports:read").await;
    let token = restarted.token_for(&integration).await;
    assert_eq!(kid_of(&token), legacy.kid);
    let pulled = restarted.pull(&token, "orders", "").await;
    assert_eq!(pulled.status(), 200);
}

async fn the_master_key_rotates_while_both_keys_read_and_the_old_key_alone_is_refused(
    backend: Backend,
) {
    let old = [("KEYPORT_MASTER_KEY", TEST_MASTER_KEY)];
    let app = spawn_app_with(backend, &old).await;
    let integration = app.integration("member", "reports:read").await;
    let before = app.token_for(&integration).await;
    // A SigV4 key's secret is sealed too, and must survive the rotation.
    let signer = app.sigv4_key(&integration.user.email, "sigv4").await;
    let signer_id = signer.key.client_id.clone();
    let signer_secret = signer.secret.expose().to_owned();

    // Every instance gets the new key, with the old one still able to read.
    let both = [
        ("KEYPORT_MASTER_KEY", OTHER_MASTER_KEY),
        ("KEYPORT_MASTER_KEY_PREVIOUS", TEST_MASTER_KEY),
    ];
    let during = spawn_sibling(&app, &both).await;
    assert_eq!(during.pull(&before, "orders", "").await.status(), 200);
    let during_token = during.token_for(&integration).await;
    assert_eq!(kid_of(&during_token), kid_of(&before));

    // The CLI re-seals everything under the new key.
    let rotated = keyport_cli(&app, &both, &["--json", "master-key", "rotate"]);
    assert!(rotated.status.success(), "{rotated:?}");
    let report: Value = serde_json::from_slice(&rotated.stdout).expect("json");
    assert!(
        report["resealed"].as_u64().expect("resealed") >= 1,
        "{report}"
    );
    let again = keyport_cli(&app, &both, &["--json", "master-key", "rotate"]);
    let again: Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(
        again["resealed"], 0,
        "a second rotation has nothing to do: {again}"
    );
    let new_key_id = report["key_id"].as_str().expect("key id").to_owned();
    for row in sealed_signing_keys(&app).await {
        assert!(row.contains(&format!("kpseal:v1:{new_key_id}:")), "{row}");
    }

    // The new key alone now reads everything.
    let after = spawn_sibling(&app, &[("KEYPORT_MASTER_KEY", OTHER_MASTER_KEY)]).await;
    let after_token = after.token_for(&integration).await;
    assert_eq!(after.pull(&after_token, "orders", "").await.status(), 200);
    assert_eq!(
        crate::sigv4::signed_whoami(&after, &signer_id, &signer_secret).await,
        200,
        "the re-sealed SigV4 secret still verifies signatures"
    );

    // The old key alone does not: start-up stops and says which key is missing.
    let settings = settings_for(
        &app.db.url,
        &[
            ("KEYPORT_MASTER_KEY", TEST_MASTER_KEY),
            ("KEYPORT_ISSUER", app.settings.tokens.issuer.as_str()),
        ],
    );
    let message = startup_error(settings, "with a master key that opens nothing").await;
    assert!(
        message.contains(&new_key_id) && message.contains("KEYPORT_MASTER_KEY_PREVIOUS"),
        "{message}"
    );
    assert!(!message.contains(TEST_MASTER_KEY) && !message.contains(OTHER_MASTER_KEY));
}

async fn a_sealed_value_moved_to_another_row_does_not_open(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let rotated = keyport::tokens::KeyRing::rotate(&app.store, SigningAlgorithm::Es256)
        .await
        .expect("rotate");
    // An attacker with write access swaps the retired key's sealed half into
    // the active row: it does not open there, so the server refuses to start
    // rather than sign with a key it did not choose.
    raw_execute(
        &app.db.url,
        &[format!(
            "UPDATE signing_keys SET private_key_sealed = \
             (SELECT private_key_sealed FROM signing_keys WHERE kid <> '{rotated}' LIMIT 1) \
             WHERE kid = '{rotated}'"
        )],
    )
    .await;
    let settings = settings_for(
        &app.db.url,
        &[("KEYPORT_ISSUER", app.settings.tokens.issuer.as_str())],
    );
    let message = startup_error(settings, "with a sealed value moved between rows").await;
    assert!(message.contains("altered or moved"), "{message}");
}

/// Runs SQL on the test database behind Keyport's back.
async fn raw_execute(url: &str, statements: &[String]) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite") {
        format!("{url}?mode=rw")
    } else {
        url.to_owned()
    };
    let mut connection = sqlx::AnyConnection::connect(&url).await.expect("connect");
    for sql in statements {
        connection
            .execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .expect("execute");
    }
}

/// The CLI on `app`'s database with `env`, and no other KEYPORT_* setting.
fn keyport_cli(app: &TestApp, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyport"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYPORT_") {
            command.env_remove(name);
        }
    }
    command
        .env("KEYPORT_DATABASE_URL", &app.db.url)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("run keyport")
}

#[test]
fn master_key_generate_writes_an_owner_only_file_and_never_replaces_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("keyport-mkgen-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("master-key");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_keyport"))
            .env_remove("KEYPORT_DATABASE_URL")
            .args(["--json", "master-key", "generate"])
            .arg(&file)
            .output()
            .expect("run")
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let printed: Value = serde_json::from_slice(&first.stdout).expect("json");
    let written = std::fs::read_to_string(&file).expect("written");
    assert!(
        !String::from_utf8_lossy(&first.stdout).contains(written.trim()),
        "the key itself is not printed"
    );
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(printed["key_id"].as_str().map(str::len), Some(16));
    let second = run();
    assert!(!second.status.success());
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), written);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn postgres_without_a_master_key_refuses_to_start_and_says_what_to_set() {
    let db = crate::helpers::TestDatabase::create(Backend::Postgres).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyport"))
        .env_remove("KEYPORT_MASTER_KEY")
        .env_remove("KEYPORT_MASTER_KEY_FILE")
        .env("KEYPORT_DATABASE_URL", &db.url)
        .env("KEYPORT_BIND", "127.0.0.1:0")
        .arg("serve")
        .output()
        .await
        .expect("run serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("KEYPORT_MASTER_KEY") && stderr.contains("master-key generate"),
        "{stderr}"
    );
}
