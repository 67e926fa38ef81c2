use std::collections::BTreeSet;
use std::sync::Arc;

use crate::helpers::{Backend, TestDatabase, every_stored_row, spawn_app_on, spawn_sibling};

fn migration_files(backend: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!(
        "{}/migrations/{backend}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("migrations folder")
    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
    .collect()
}

#[test]
fn sqlite_and_postgres_migrations_list_the_same_versions() {
    let sqlite = migration_files("sqlite");
    let postgres = migration_files("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres drifted apart"
    );
}

/// A new database migrated up to `version` only, then `statements` run in
/// it: what an older Keyport left behind.
async fn database_at(
    backend: Backend,
    version: i64,
    statements: &[impl AsRef<str>],
) -> Arc<TestDatabase> {
    use sqlx::Connection;
    let db = Arc::new(TestDatabase::create(backend).await);
    let folder = |name: &str| {
        std::path::PathBuf::from(format!("{}/migrations/{name}", env!("CARGO_MANIFEST_DIR")))
    };
    match backend {
        Backend::Sqlite => {
            std::fs::create_dir_all(db.sqlite_dir().unwrap()).unwrap();
            let mut conn = sqlx::SqliteConnection::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            let migrator = sqlx::migrate::Migrator::new(folder("sqlite").as_path())
                .await
                .unwrap();
            migrator.run_to(version, &mut conn).await.unwrap();
            for sql in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_ref().to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let migrator = sqlx::migrate::Migrator::new(folder("postgres").as_path())
                .await
                .unwrap();
            migrator.run_to(version, &mut conn).await.unwrap();
            for sql in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.as_ref().to_owned()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
    db
}

/// Upgrading a database where two companies trust one issuer for the same
/// audience (allowed before an audience named one company) loses no row:
/// the oldest keeps the audience, the other's is marked as taken, so it
/// admits no token, and the upgrade does not fail on the new unique index.
async fn an_audience_trusted_twice_before_the_upgrade_stays_with_the_oldest(backend: Backend) {
    let statements = [
        "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('t-acme', 'acme', 1, 1)",
        "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('t-globex', 'globex', 1, 1)",
        "INSERT INTO trusted_issuers (id, tenant_id, issuer, jwks_url, audience, created_at) \
         VALUES ('i-acme', 't-acme', 'https://ci.example.com', 'https://ci.example.com/jwks', 'acme', 10)",
        "INSERT INTO trusted_issuers (id, tenant_id, issuer, jwks_url, audience, created_at) \
         VALUES ('i-globex', 't-globex', 'https://ci.example.com', 'https://copy.example.net/jwks', 'acme', 20)",
        "INSERT INTO trusted_issuers (id, tenant_id, issuer, jwks_url, audience, created_at) \
         VALUES ('i-own', 't-globex', 'https://ci.example.com', 'https://ci.example.com/jwks', 'globex', 30)",
    ];
    let db = database_at(backend, 12, &statements).await;

    // Starting the application runs the rest of the migrations.
    let _app = spawn_app_on(Arc::clone(&db), &[]).await;
    let rows: Vec<String> = every_stored_row(&db)
        .await
        .into_iter()
        .filter(|(table, _)| table == "trusted_issuers")
        .map(|(_, row)| row)
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    // SQLite rows come as `a | b | …`, PostgreSQL's as JSON.
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.contains(id))
            .unwrap_or_else(|| panic!("no row {id}: {rows:?}"))
            .clone()
    };
    assert!(!row("i-acme").contains("taken"), "{rows:?}");
    assert!(!row("i-own").contains("taken"), "{rows:?}");
    let marked = row("i-globex");
    assert!(
        marked.contains("acme (taken by another company") && marked.contains("copy.example.net"),
        "{rows:?}"
    );
}

crate::on_both_backends!(
    an_audience_trusted_twice_before_the_upgrade_stays_with_the_oldest,
    a_delivery_pending_before_the_upgrade_is_delivered_after_it,
);

/// Upgrading a database with a delivery pending (written beside its event,
/// as before events named the endpoints that heard them) loses nothing:
/// the worker sends it, signed, under its event's id; a push after the
/// upgrade (whose event names the endpoint, the worker writing its
/// delivery) is delivered too.
async fn a_delivery_pending_before_the_upgrade_is_delivered_after_it(backend: Backend) {
    use crate::signed_webhooks::{RECEIVER_SETTINGS, Receiver, announced_record_ids};
    let now = chrono::Utc::now().timestamp();
    let payload = serde_json::json!({
        "data": {
            "collection": "orders",
            "record_ids": ["r-before"],
            "owner_id": "u-ana",
            "client_id": "c-ana",
        },
        "timestamp": "2026-12-05T10:00:00Z",
        "type": "record.created",
    });
    let statements = [
        "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('t-acme', 'acme', 1, 1)"
            .to_owned(),
        "INSERT INTO users (id, tenant_id, email, role, permissions, status, created_at, updated_at) \
         VALUES ('u-ana', 't-acme', 'ana@acme.example', 'admin', \
         'reports:read webhooks:write webhooks:manage', 'active', 1, 1)"
            .to_owned(),
        "INSERT INTO webhook_endpoints (id, tenant_id, owner_id, url, events, status, created_at, \
         updated_at) VALUES ('e-ana', 't-acme', 'u-ana', 'http://127.0.0.1:9/hooks', \
         'record.created', 'enabled', 1, 1)"
            .to_owned(),
        format!(
            "INSERT INTO webhook_events (id, tenant_id, event_type, payload, created_at, \
             subject_owner_id) VALUES ('msg_before', 't-acme', 'record.created', '{payload}', \
             {now}, 'u-ana')"
        ),
        format!(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, state, attempts, \
             next_attempt_at, created_at, updated_at) \
             VALUES ('d-before', 'msg_before', 'e-ana', 'pending', 0, {now}, {now}, {now})"
        ),
    ];
    let db = database_at(backend, 20, &statements).await;

    // After the upgrade, the worker off: Ana's key (which signs her
    // deliveries), a receiver that knows it, and a push.
    let setup = spawn_app_on(Arc::clone(&db), &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let key = setup.key("ana@acme.example", None).await;
    let receiver = Receiver::start(&[&key.webhook_signing_key.to_whsec()]);
    let moved = setup
        .store
        .update_endpoint(
            "e-ana",
            keyport::storage::EndpointSettings {
                url: &receiver.url(),
                description: None,
                events: "record.created",
                collections: None,
                status: "enabled",
                disabled_reason: None,
            },
            now,
        )
        .await
        .expect("update");
    assert!(moved);
    let token = setup.token_for_key(&key).await;
    let pushed = setup
        .push(&token, "orders", &serde_json::json!({"n": 1}), None)
        .await;
    assert_eq!(pushed.status(), 201);
    let after = crate::helpers::json_body(pushed).await["ids"][0]
        .as_str()
        .expect("id")
        .to_owned();

    let _app = spawn_sibling(&setup, &RECEIVER_SETTINGS).await;
    let arrived = receiver
        .wait_for("both deliveries, verified", |arrived| {
            announced_record_ids(arrived).len() == 2
        })
        .await;
    let ids = announced_record_ids(&arrived);
    assert!(ids.contains("r-before") && ids.contains(&after), "{ids:?}");
    assert!(
        arrived.iter().any(|d| d["id"] == "msg_before"),
        "the pending delivery keeps its event's id: {arrived:#?}"
    );
}
