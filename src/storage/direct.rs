//! Reads on the hot paths (client authentication, pulls), run against SQLite
//! on the calling thread.
//!
//! sqlx drives every SQLite connection from a worker thread of its own, so
//! each query is handed to that thread and its answer handed back: two futex
//! wake-ups and two context switches around a lookup that itself takes a few
//! microseconds. Profiling `POST /oauth/token` put that hand-off at about a
//! third of the endpoint's CPU, and a 50-record pull spent half its CPU in
//! sqlx's value copies. These reads go straight to SQLite instead; what they
//! block the calling thread for is a few index lookups, the same order as
//! serialising their answer.
//!
//! They stay exact: every read is its own transaction on the database file,
//! so a key revoked a moment ago, by this process or by any other (the CLI, a
//! second instance), is seen as revoked. They never wait: WAL readers do not
//! block on writers, and the busy timeout is zero, so in the rare case SQLite
//! answers "busy" (another connection recovering the WAL) the caller falls
//! back to the pool, whose connections wait on their own threads.

use std::path::PathBuf;
#[cfg(test)]
use std::sync::Arc;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use super::{KeyAuthRow, RecordQuery, RecordRow, Sigv4KeyRow};

/// Idle connections kept; one per server worker thread is enough, and more
/// are opened (then dropped) if more threads read at once.
const KEEP_IDLE: usize = 8;

#[derive(Debug)]
pub(super) struct DirectReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// The one connection that writes replay rows (`first_use`): DPoP
    /// proofs and SigV4 signatures of writes.
    replay_writer: Mutex<Option<Connection>>,
}

impl DirectReader {
    pub(super) fn new(path: PathBuf) -> Self {
        DirectReader {
            path,
            idle: Mutex::new(Vec::new()),
            replay_writer: Mutex::new(None),
        }
    }

    /// Closes the idle connections. The store stops calling the reader once
    /// its pool is closed, so none are opened again.
    pub(super) fn close(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.replay_writer.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Inserts a row into a replay table, DPoP's or SigV4's (`sql`: the
    /// INSERT … ON CONFLICT DO NOTHING the pool runs); whether a row was
    /// inserted.
    ///
    /// On a connection of its own with `synchronous = NORMAL`: the pool's
    /// connections keep SQLite's FULL, which syncs the WAL to disk at every
    /// commit (so an answered push survives a power cut), and that sync was
    /// nearly all of a proof's cost. A replay row lives minutes and only
    /// guards a window: losing the last ones to a power cut (never to a
    /// process crash) is the trade PostgreSQL's UNLOGGED table makes too. In
    /// WAL mode NORMAL keeps the file consistent. The busy timeout is zero:
    /// when another connection holds the write lock (a push's group
    /// commit), the caller falls back to the pool, which waits.
    ///
    /// A SigV4 signature's row loses nothing to this: the WAL is written in
    /// order, so the FULL commit of the write the signature authorised
    /// (made after this insert) syncs this row to disk with it.
    pub(super) fn first_use(&self, sql: &str, id: &str, expires_at: i64) -> rusqlite::Result<bool> {
        let mut writer = self.replay_writer.lock().unwrap_or_else(|e| e.into_inner());
        let connection = match writer.as_mut() {
            Some(connection) => connection,
            None => {
                let connection = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                connection.busy_timeout(std::time::Duration::ZERO)?;
                connection.pragma_update(None, "synchronous", "NORMAL")?;
                writer.insert(connection)
            }
        };
        let inserted = connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(rusqlite::params![id, expires_at]));
        if inserted.is_err() {
            // It may be the reason: open another next time.
            *writer = None;
        }
        Ok(inserted? == 1)
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(std::time::Duration::ZERO)?;
        Ok(connection)
    }

    fn with_connection<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        // A connection whose read failed is dropped: it may be the reason.
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < KEEP_IDLE {
                idle.push(connection);
            }
        }
        result
    }

    /// One key and its owner's standing, by an indexed column (`client_id` or
    /// `secret_digest`); `sql` is the same text the pool runs.
    pub(super) fn key_for_auth(
        &self,
        sql: &str,
        value: &str,
    ) -> rusqlite::Result<Option<KeyAuthRow>> {
        self.with_connection(|connection| {
            connection
                .prepare_cached(sql)?
                .query_row([value], key_auth_row)
                .optional()
        })
    }

    /// A key and its sealed SigV4 secret (the last column), by client ID.
    pub(super) fn sigv4_key(
        &self,
        sql: &str,
        value: &str,
    ) -> rusqlite::Result<Option<Sigv4KeyRow>> {
        self.with_connection(|connection| {
            connection
                .prepare_cached(sql)?
                .query_row([value], |row| {
                    Ok(Sigv4KeyRow {
                        key: key_auth_row(row)?,
                        sigv4_secret_sealed: row.get(23)?,
                    })
                })
                .optional()
        })
    }

    /// A page of records; `sql` is the pool's `LIST_RECORDS`.
    pub(super) fn records(
        &self,
        sql: &str,
        query: &RecordQuery<'_>,
    ) -> rusqlite::Result<Vec<RecordRow>> {
        self.with_connection(|connection| {
            connection
                .prepare_cached(sql)?
                .query_map(
                    rusqlite::params![
                        query.tenant_id,
                        query.collection,
                        query.owner_id,
                        query.after_id,
                        query.rows_to_fetch()
                    ],
                    |row| {
                        Ok(RecordRow {
                            id: row.get(0)?,
                            collection: row.get(1)?,
                            owner_id: row.get(2)?,
                            client_id: row.get(3)?,
                            body: row.get(4)?,
                            created_at: row.get(5)?,
                        })
                    },
                )?
                .collect()
        })
    }
}

fn key_auth_row(row: &Row<'_>) -> rusqlite::Result<KeyAuthRow> {
    Ok(KeyAuthRow {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        owner_id: row.get(2)?,
        client_id: row.get(3)?,
        secret_digest: row.get(4)?,
        scopes: row.get(5)?,
        token_ttl_seconds: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
        owner_role: row.get(9)?,
        owner_permissions: row.get(10)?,
        owner_status: row.get(11)?,
        disabled_at: row.get(12)?,
        allowed_sources: row.get(13)?,
        rate_limit_requests: row.get(14)?,
        rate_limit_per_seconds: row.get(15)?,
        rate_limit_burst: row.get(16)?,
        default_rate_limit_requests: row.get(17)?,
        default_rate_limit_per_seconds: row.get(18)?,
        default_rate_limit_burst: row.get(19)?,
        require_dpop: row.get(20)?,
        tls_client_auth: row.get(21)?,
        tls_client_certificates: row.get(22)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::DatabaseSettings;
    use crate::storage::Store;
    use crate::storage::keys::{KEY_AUTH_BY_CLIENT_ID, KEY_AUTH_BY_DIGEST};

    /// A fresh SQLite file with one tenant, one (disabled) user and two keys,
    /// behind a pool of one connection.
    struct Fixture {
        dir: PathBuf,
        store: Store,
    }

    impl Fixture {
        async fn with_two_keys() -> Self {
            let dir = std::env::temp_dir().join(format!("keyport-direct-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let store = store_with_two_keys(&dir).await;
            Fixture { dir, store }
        }

        async fn remove(self) {
            self.store.close().await;
            std::fs::remove_dir_all(self.dir).ok();
        }
    }

    /// Awaits `read`, failing the test if it waits for the pool (whose only
    /// connection the caller holds; its acquire timeout is 60 s).
    async fn without_the_pool<T>(read: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("answered without a pool connection")
    }

    async fn store_with_two_keys(dir: &std::path::Path) -> Store {
        let store = Store::connect_and_migrate(&DatabaseSettings {
            url: format!("sqlite://{}/direct.db", dir.display()),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(60),
            master_keys: Default::default(),
        })
        .await
        .expect("connects");
        for sql in [
            "INSERT INTO tenants (id, name, created_at, updated_at, default_rate_limit_requests, \
             default_rate_limit_per_seconds, default_rate_limit_burst) \
             VALUES ('t1', 'Acme', 1, 1, 600, 60, 100)",
            "INSERT INTO users (id, tenant_id, email, role, permissions, status, created_at, updated_at) \
             VALUES ('u1', 't1', 'a@acme.test', 'member', 'reports:read', 'disabled', 1, 1)",
            "INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, scopes, \
             token_ttl_seconds, expires_at, revoked_at, created_at, updated_at) \
             VALUES ('k1', 't1', 'u1', 'kpc_one', 'abcd', 'one', 'reports:read', 120, 9000, 77, 1, 1)",
            "INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, created_at, updated_at, \
             disabled_at, allowed_sources, rate_limit_requests, rate_limit_per_seconds, rate_limit_burst) \
             VALUES ('k2', 't1', 'u1', 'kpc_two', 'ef01', 'two', 1, 1, 33, '10.0.0.0/8 2001:db8::/32', \
             5, 1, 2)",
        ] {
            sqlx::query(sql).execute(&store.pool).await.expect(sql);
        }
        store
    }

    /// Every column, NULLs included, reads the same as through sqlx.
    #[tokio::test]
    async fn direct_reads_match_the_pool_column_for_column() {
        let fixture = Fixture::with_two_keys().await;
        let store = &fixture.store;
        let direct = store
            .direct
            .clone()
            .expect("a SQLite file gets a direct reader");
        for (sql, value) in [
            (KEY_AUTH_BY_CLIENT_ID, "kpc_one"),
            (KEY_AUTH_BY_CLIENT_ID, "kpc_two"),
            (KEY_AUTH_BY_DIGEST, "abcd"),
            (KEY_AUTH_BY_CLIENT_ID, "kpc_none"),
        ] {
            let through_pool = sqlx::query_as::<_, KeyAuthRow>(sql)
                .bind(value)
                .fetch_optional(&store.pool)
                .await
                .expect("pool read");
            let straight = direct.key_for_auth(sql, value).expect("direct read");
            assert_eq!(straight, through_pool, "{value}");
        }
        let one = direct
            .key_for_auth(KEY_AUTH_BY_CLIENT_ID, "kpc_one")
            .unwrap()
            .expect("found");
        assert_eq!(one.revoked_at, Some(77));
        assert_eq!(one.token_ttl_seconds, Some(120));
        assert_eq!(one.owner_status, "disabled");
        assert_eq!((one.disabled_at, one.allowed_sources), (None, None));
        assert_eq!(one.rate_limit_requests, None);
        assert_eq!(
            (
                one.default_rate_limit_requests,
                one.default_rate_limit_per_seconds,
                one.default_rate_limit_burst
            ),
            (Some(600), Some(60), Some(100))
        );
        let two = direct
            .key_for_auth(KEY_AUTH_BY_CLIENT_ID, "kpc_two")
            .unwrap()
            .expect("found");
        assert_eq!(two.disabled_at, Some(33));
        assert_eq!(
            two.allowed_sources.as_deref(),
            Some("10.0.0.0/8 2001:db8::/32")
        );
        assert_eq!(
            (
                two.rate_limit_requests,
                two.rate_limit_per_seconds,
                two.rate_limit_burst
            ),
            (Some(5), Some(1), Some(2))
        );
        fixture.remove().await;
    }

    /// The point of the direct path: a key lookup does not queue for a pool
    /// connection. The pool's only connection is held for the whole test, so
    /// a lookup through the pool would wait out its 60 s acquire timeout.
    /// The lookup also sees a write committed by another connection at once.
    #[tokio::test]
    async fn key_lookups_do_not_wait_for_the_pool_and_see_other_writers_at_once() {
        let fixture = Fixture::with_two_keys().await;
        let store = &fixture.store;
        let mut held = store.pool.acquire().await.expect("the only connection");
        let lookup = without_the_pool(store.find_key_for_auth("kpc_two"))
            .await
            .expect("read");
        assert_eq!(lookup.expect("found").revoked_at, None);
        sqlx::query("UPDATE api_keys SET revoked_at = 5 WHERE id = 'k2'")
            .execute(&mut *held)
            .await
            .expect("revokes");
        let again = without_the_pool(store.find_key_for_auth_by_digest("ef01"))
            .await
            .expect("read")
            .expect("found");
        assert_eq!(again.revoked_at, Some(5), "the revocation is seen at once");
        drop(held);
        fixture.remove().await;
    }

    /// Pages read straight from the file are the pages the pool reads
    /// (owner filter, cursor, limit), and need no pool connection.
    #[tokio::test]
    async fn record_pages_match_the_pool_and_do_not_wait_for_it() {
        use crate::storage::RecordQuery;
        use crate::storage::records::LIST_RECORDS;

        let fixture = Fixture::with_two_keys().await;
        let store = &fixture.store;
        for (id, owner) in [("r1", "u1"), ("r2", "u2"), ("r3", "u1"), ("r4", "u1")] {
            sqlx::query(
                "INSERT INTO records (id, tenant_id, collection, owner_id, client_id, body, created_at) \
                 VALUES ($1, 't1', 'orders', $2, 'kpc_one', '{\"n\":1}', 5)",
            )
            .bind(id)
            .bind(owner)
            .execute(&store.pool)
            .await
            .expect("inserts");
        }
        let direct = store.direct.clone().expect("direct reader");
        let ids = |rows: &[RecordRow]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        for (owner, after, page) in [
            (None, None, 10),
            (Some("u1"), None, 10),
            (Some("u1"), Some("r1"), 2),
            (None, Some("r2"), 1),
            (None, None, 1),
            (Some("nobody"), None, 5),
        ] {
            let query = RecordQuery {
                tenant_id: "t1",
                collection: "orders",
                owner_id: owner,
                after_id: after,
                limit: page,
            };
            let through_pool = sqlx::query_as::<_, RecordRow>(LIST_RECORDS)
                .bind("t1")
                .bind("orders")
                .bind(owner)
                .bind(after)
                .bind(query.rows_to_fetch())
                .fetch_all(&store.pool)
                .await
                .expect("pool read");
            let straight = direct.records(LIST_RECORDS, &query).expect("direct read");
            assert_eq!(
                ids(&straight),
                ids(&through_pool),
                "{owner:?} {after:?} {page}"
            );
            assert_eq!(
                straight
                    .iter()
                    .map(|r| (&r.body, r.created_at, &r.client_id))
                    .collect::<Vec<_>>(),
                through_pool
                    .iter()
                    .map(|r| (&r.body, r.created_at, &r.client_id))
                    .collect::<Vec<_>>()
            );
        }
        let held = store.pool.acquire().await.expect("the only connection");
        let page = without_the_pool(store.list_records(&RecordQuery {
            tenant_id: "t1",
            collection: "orders",
            owner_id: Some("u1"),
            after_id: None,
            limit: 2,
        }))
        .await
        .expect("read");
        assert_eq!(ids(&page.records), ["r1", "r3"]);
        assert!(page.has_more);
        drop(held);
        fixture.remove().await;
    }

    /// When the file cannot be read directly, the pool answers instead.
    #[tokio::test]
    async fn a_failing_direct_read_falls_back_to_the_pool() {
        let mut fixture = Fixture::with_two_keys().await;
        let missing = fixture.dir.join("missing/nowhere.db");
        fixture.store.direct = Some(Arc::new(DirectReader::new(missing)));
        let store = &fixture.store;
        let row = store
            .find_key_for_auth("kpc_one")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(row.id, "k1");
        fixture.remove().await;
    }
}
