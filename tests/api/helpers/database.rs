//! A database per test: a fresh SQLite file or a fresh PostgreSQL
//! database, removed when the test ends, and what an attacker holding a
//! copy of it reads.

use std::path::PathBuf;

use uuid::Uuid;

use super::Backend;

/// The master key every test on PostgreSQL gives Keyport (PostgreSQL needs
/// one; SQLite tests use the key the server creates beside the database).
pub const TEST_MASTER_KEY: &str = "a2V5cG9ydC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=";

/// `KEYPORT_MASTER_KEY` for a database at `url`, when it needs one.
pub fn master_key_env(url: &str) -> Vec<(String, String)> {
    if url.starts_with("postgres") {
        vec![("KEYPORT_MASTER_KEY".to_owned(), TEST_MASTER_KEY.to_owned())]
    } else {
        Vec::new()
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("KEYPORT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that belongs to one test and is removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    backend: Backend,
    name: String,
    dir: Option<PathBuf>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let name = format!("keyport_test_{}", Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                let url = format!("sqlite://{}/keyport.db", dir.display());
                TestDatabase {
                    url,
                    backend,
                    name,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must be running on 127.0.0.1:5432 (see README)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    backend,
                    name,
                    dir: None,
                }
            }
        }
    }

    pub fn sqlite_dir(&self) -> Option<&PathBuf> {
        self.dir.as_ref()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                if let Some(dir) = &self.dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Backend::Postgres => {
                let name = self.name.clone();
                // Drop runs inside the test's runtime: do the async work on a
                // thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async move {
                        use sqlx::Connection;
                        if let Ok(mut conn) =
                            sqlx::PgConnection::connect(&postgres_admin_url()).await
                        {
                            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// Every row of every table in `db`, as `(table, the row as text)`: what an
/// attacker holding a copy of the database reads.
pub async fn every_stored_row(db: &TestDatabase) -> Vec<(String, String)> {
    match db.sqlite_dir() {
        Some(dir) => {
            let path = dir.join("keyport.db");
            tokio::task::spawn_blocking(move || {
                use rusqlite::types::ValueRef;
                let connection = rusqlite::Connection::open(&path).expect("open the SQLite file");
                let tables: Vec<String> = connection
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .expect("list tables");
                let mut rows = Vec::new();
                for table in tables {
                    let mut statement = connection
                        .prepare(&format!("SELECT * FROM \"{table}\""))
                        .expect("select");
                    let columns = statement.column_count();
                    let mut cursor = statement.query([]).expect("query");
                    while let Some(row) = cursor.next().expect("row") {
                        let text: Vec<String> = (0..columns)
                            .map(|i| match row.get_ref(i).expect("value") {
                                ValueRef::Null => "null".to_owned(),
                                ValueRef::Integer(n) => n.to_string(),
                                ValueRef::Real(n) => n.to_string(),
                                ValueRef::Text(t) | ValueRef::Blob(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                            })
                            .collect();
                        rows.push((table.clone(), text.join(" | ")));
                    }
                }
                rows
            })
            .await
            .expect("scan")
        }
        None => {
            use sqlx::{Connection, Row};
            let mut connection = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut connection)
            .await
            .expect("list tables");
            let mut rows = Vec::new();
            for table in tables {
                let sql = format!("SELECT row_to_json(t)::text FROM \"{table}\" t");
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut connection)
                    .await
                    .expect("select")
                {
                    rows.push((table.clone(), row.get::<String, _>(0)));
                }
            }
            rows
        }
    }
}
