use std::collections::BTreeSet;
use std::sync::Arc;

use crate::helpers::{Backend, TestDatabase, every_stored_row, spawn_app_on};

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

/// Upgrading a database where two companies trust one issuer for the same
/// audience (allowed before an audience named one company) loses no row:
/// the oldest keeps the audience, the other's is marked as taken, so it
/// admits no token, and the upgrade does not fail on the new unique index.
async fn an_audience_trusted_twice_before_the_upgrade_stays_with_the_oldest(backend: Backend) {
    use sqlx::Connection;
    let db = Arc::new(TestDatabase::create(backend).await);
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
            migrator.run_to(12, &mut conn).await.unwrap();
            for sql in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
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
            migrator.run_to(12, &mut conn).await.unwrap();
            for sql in statements {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

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

crate::on_both_backends!(an_audience_trusted_twice_before_the_upgrade_stays_with_the_oldest);
