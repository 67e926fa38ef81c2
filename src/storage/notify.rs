//! Hearing of changes to what client authentication reads, whoever makes
//! them: this instance, another one, or the CLI.
//!
//! The database announces every such change itself (triggers, migration
//! 0009), inside the transaction that makes it:
//! - PostgreSQL: `pg_notify('keyport_credentials', …)`, delivered on commit.
//!   One connection per instance `LISTEN`s; it is checked every
//!   [`HEARTBEAT`] with a `SELECT 1` on that same connection, so a
//!   connection that went silent (a partition) is noticed too.
//! - SQLite: a counter bumped in `credential_changes`. A thread polls it on
//!   a connection of its own: `PRAGMA data_version` first, which reads
//!   nothing from the file (it tells whether any other connection committed
//!   since the last poll), then the counter only when something was
//!   committed. Pushes and "last used" writes move `data_version` but not
//!   the counter, so they flush nothing.
//!
//! On PostgreSQL every change is also appended to a log under a sequence
//! number given in commit order (migration 0020), and the notification
//! carries it (`<seq>:<payload>`): an instance that missed notifications, or
//! whose heartbeat is late, asks once for "every change after N"
//! ([`Store::credential_changes_since`], on a connection of its own, so it
//! never waits behind the pool's queries) instead of reading the database
//! for every request.
//!
//! What was heard is reported as [`WatchEvent`]s, in order, to a sink the
//! service gives (the credential cache): this module knows the SQL, the
//! sink knows what to forget.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::Store;

/// The channel the triggers notify (migration 0009).
pub const CREDENTIALS_CHANNEL: &str = "keyport_credentials";

/// How often the listening connection proves it is alive (PostgreSQL).
pub const HEARTBEAT: Duration = Duration::from_millis(250);

/// How long a heartbeat may take before the connection is given up and
/// opened again. Trust does not wait for it: the cache stops being used as
/// soon as a second passes without a proof (its lease), and a connection
/// that answers late but answers loses nothing (notifications arrive in
/// order), so reconnecting (which forgets everything) is kept for a
/// connection that is really gone. Under overload (two instances, wrk and
/// PostgreSQL on two cores) heartbeats were seen taking 1 to 2 s.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening the listening connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest wait between two attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What changed, as the triggers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChange {
    /// One key, by client ID (created, changed or deleted).
    Key(String),
    /// Every key of this owner (their role, permissions or status).
    Owner(String),
    /// Every key of this company (its default rate).
    Tenant(String),
    /// Anything: forget everything.
    Everything,
}

impl CredentialChange {
    /// A notification's payload: a client ID, `user:<id>`, `tenant:<id>`
    /// or `*`.
    pub fn from_payload(payload: &str) -> Self {
        if let Some(id) = payload.strip_prefix("user:") {
            CredentialChange::Owner(id.to_owned())
        } else if let Some(id) = payload.strip_prefix("tenant:") {
            CredentialChange::Tenant(id.to_owned())
        } else if payload.is_empty() || payload == "*" {
            CredentialChange::Everything
        } else {
            CredentialChange::Key(payload.to_owned())
        }
    }

    /// A notification: `<seq>:<payload>` (migration 0020), or a bare
    /// payload (a trigger from before it, or one typed by hand).
    pub fn from_notification(text: &str) -> (Option<i64>, Self) {
        match text.split_once(':') {
            Some((seq, payload)) if !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) => {
                (seq.parse().ok(), Self::from_payload(payload))
            }
            _ => (None, Self::from_payload(text)),
        }
    }
}

/// What [`Store::credential_changes_since`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesSince {
    /// The number of the last change committed when the log was read.
    pub latest: i64,
    /// The changes after the number asked for, in order; `None` when some of
    /// them were pruned (or no number was given): forget everything.
    pub changes: Option<Vec<CredentialChange>>,
}

/// How long the change log keeps a change: an instance that has not caught
/// up for longer forgets everything instead.
pub const CHANGE_LOG_RETENTION: Duration = Duration::from_secs(3600);

/// The log's rows after `$1`, and its latest number (marked by `kind` 1),
/// read in one statement so in one snapshot.
const CHANGES_SINCE: &str = "SELECT 0 AS kind, seq, payload FROM credential_change_log WHERE seq > $1 \
     UNION ALL SELECT 1 AS kind, seq, '' AS payload FROM credential_change_seq WHERE id = 1 \
     ORDER BY kind, seq";

/// What a watcher reports, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Listening (again). Changes made before may have gone unheard, so
    /// whatever was read before must be forgotten; later ones will be heard.
    Listening,
    /// A committed change.
    Changed(CredentialChange),
    /// A committed change with its number in the change log (PostgreSQL):
    /// numbers arrive in order, one after the other, on a live connection.
    Logged(i64, CredentialChange),
    /// Every change committed before this instant has been reported: the
    /// watcher was alive then.
    UpToDate(Instant),
    /// The watcher lost its connection: changes go unheard until the next
    /// `Listening`.
    Lost,
}

/// Where the reports go. Called from the watcher's task or thread; keep it
/// short and never blocking.
pub type WatchSink = Arc<dyn Fn(WatchEvent) + Send + Sync>;

/// Which watcher a database needs.
#[derive(Clone)]
pub(super) enum WatchTarget {
    /// `LISTEN` on a connection of its own, opened with this URL.
    Postgres(String),
    /// Poll the counter in this file.
    SqliteFile(PathBuf),
    /// An in-memory SQLite database: nothing to watch (and nothing trusted).
    None,
}

/// The URL may carry a password: it is not printed.
impl std::fmt::Debug for WatchTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchTarget::Postgres(_) => f.write_str("Postgres(<url>)"),
            WatchTarget::SqliteFile(path) => write!(f, "SqliteFile({})", path.display()),
            WatchTarget::None => f.write_str("None"),
        }
    }
}

impl Store {
    /// Starts watching for credential changes, reporting to `sink` until
    /// `alive` is gone; `sqlite_poll` is how often a SQLite file is polled.
    /// Answers false when there is nothing to watch (SQLite in memory): the
    /// sink then never hears `Listening`.
    pub fn watch_credentials(
        &self,
        sqlite_poll: Duration,
        alive: Weak<()>,
        sink: WatchSink,
    ) -> bool {
        match self.watch.clone() {
            WatchTarget::Postgres(url) => {
                tokio::spawn(listen_postgres(url, alive, sink));
                true
            }
            WatchTarget::SqliteFile(path) => {
                let spawned = std::thread::Builder::new()
                    .name("keyport-credential-watch".to_owned())
                    .spawn(move || poll_sqlite(&path, sqlite_poll, &alive, &sink));
                if let Err(err) = &spawned {
                    log::warn!("cannot start the credential watcher: {err}");
                }
                spawned.is_ok()
            }
            WatchTarget::None => false,
        }
    }

    /// Whether this database keeps the change log (PostgreSQL): an instance
    /// may then catch up with [`Store::credential_changes_since`].
    pub fn has_change_log(&self) -> bool {
        matches!(self.watch, WatchTarget::Postgres(_))
    }

    /// Every credential change committed after number `after`, and the
    /// latest number, in one query. With `after` unknown (`None`), or when
    /// some changes after it were pruned, `changes` is `None`: the caller
    /// must forget everything. Numbers have no gaps (migration 0020), so
    /// fewer rows than numbers means some were pruned.
    pub async fn credential_changes_since(
        &self,
        after: Option<i64>,
    ) -> super::Result<ChangesSince> {
        use sqlx::Row as _;
        let _span = self.span("credential_changes_since");
        // Fails at once while the database is known to be down, whichever
        // connection the log is read on.
        self.db()?;
        let rows = match &self.change_log {
            Some(reader) => read_change_log(reader, after).await?,
            // SQLite keeps no log: the query fails as it would anywhere.
            None => sqlx::query(CHANGES_SINCE)
                .bind(after.unwrap_or(i64::MAX))
                .fetch_all(self.db()?)
                .await?
                .into_iter()
                .map(|row| -> super::Result<(i32, i64, String)> {
                    Ok((
                        row.try_get("kind")?,
                        row.try_get("seq")?,
                        row.try_get("payload")?,
                    ))
                })
                .collect::<super::Result<Vec<_>>>()?,
        };
        let mut latest = None;
        let mut changes = Vec::new();
        for (kind, seq, payload) in rows {
            if kind == 1 {
                latest = Some(seq);
            } else {
                changes.push(CredentialChange::from_payload(&payload));
            }
        }
        let latest = latest.ok_or_else(|| {
            super::StorageError::Corrupt("credential_change_seq has no row".to_owned())
        })?;
        // Exactly one row per number after `after`; anything else (a pruned
        // stretch, or a database restored to an older state, whose numbers
        // went back) and what was heard before cannot be matched to it.
        let complete = after.is_some_and(|after| {
            latest >= after && i64::try_from(changes.len()).is_ok_and(|n| latest - after == n)
        });
        Ok(ChangesSince {
            latest,
            changes: complete.then_some(changes),
        })
    }

    /// Deletes logged changes committed before `before` (Unix seconds); how
    /// many. Any instance may prune; two at once delete nothing twice.
    pub async fn prune_credential_change_log(&self, before: i64) -> super::Result<u64> {
        let _span = self.span("prune_credential_change_log");
        let done = sqlx::query("DELETE FROM credential_change_log WHERE created_at < $1")
            .bind(before)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected())
    }
}

/// How long reading the change log may take on its own connection
/// (connecting included) before the read fails and the connection is given
/// up: a hung connection, not a slow database (lookups meanwhile wait for
/// the read, or read the database once it failed).
const CHANGE_LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection that reads the change log (PostgreSQL): a pool of one,
/// opened on first use, so that a catch-up never waits for one of the
/// pool's connections behind the queries of requests. That is when it is
/// needed most: while the lease is lapsed, lookups wait for it, and under
/// load the shared pool is busiest.
pub(super) fn change_log_reader(url: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let options = url
        .parse::<PgConnectOptions>()?
        .application_name(&catch_up_name(std::process::id()));
    Ok(PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        // A broken connection shows in the read itself (and is dropped
        // then): no extra round trip before every read.
        .test_before_acquire(false)
        .acquire_timeout(CHANGE_LOG_TIMEOUT)
        .connect_lazy_with(options))
}

/// [`CHANGES_SINCE`] on the change log's own connection, as (kind, seq,
/// payload) rows. A connection that failed or did not answer within
/// [`CHANGE_LOG_TIMEOUT`] is closed, not reused.
async fn read_change_log(
    reader: &sqlx::PgPool,
    after: Option<i64>,
) -> super::Result<Vec<(i32, i64, String)>> {
    let mut connection = reader.acquire().await?;
    let read = tokio::time::timeout(
        CHANGE_LOG_TIMEOUT,
        sqlx::query_as::<_, (i32, i64, String)>(CHANGES_SINCE)
            .bind(after.unwrap_or(i64::MAX))
            .fetch_all(&mut *connection),
    )
    .await;
    match read {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(err)) => {
            if !matches!(err, sqlx::Error::Database(_)) {
                drop(connection.detach());
            }
            Err(err.into())
        }
        Err(_) => {
            drop(connection.detach());
            Err(super::StorageError::Unavailable(sqlx::Error::PoolTimedOut))
        }
    }
}

/// The `application_name` of the connection that reads the change log, in
/// the process `pid`.
pub fn catch_up_name(pid: u32) -> String {
    format!("keyport-credential-catch-up-{pid}")
}

/// The `application_name` of the connection that listens, in the process
/// `pid` (`pg_stat_activity` shows it).
pub fn listener_name(pid: u32) -> String {
    format!("keyport-credential-listener-{pid}")
}

async fn listen_postgres(url: String, alive: Weak<()>, sink: WatchSink) {
    use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

    let mut backoff = Duration::from_millis(50);
    let mut failures = 0_u32;
    loop {
        if alive.upgrade().is_none() {
            return;
        }
        let listening_from = Instant::now();
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let options = url
                .parse::<PgConnectOptions>()?
                .application_name(&listener_name(std::process::id()));
            // A pool of one, as `PgListener::connect` makes, named so an
            // operator (or a test) can tell this connection apart.
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.ignore_pool_close_event(true);
            // A lost connection is reported at once (`Ok(None)`), not
            // after reconnecting: until then nothing may be trusted.
            listener.eager_reconnect(false);
            listener.listen(CREDENTIALS_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        })
        .await;
        let mut listener = match connected {
            Ok(Ok(listener)) => listener,
            Ok(Err(err)) => {
                failures += 1;
                if failures == 1 {
                    log::warn!(
                        "cannot listen for credential changes (retrying; until then every token \
                         request reads the database): {}",
                        crate::telemetry::error_chain(&err)
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(_) => {
                failures += 1;
                if failures == 1 {
                    log::warn!(
                        "cannot listen for credential changes: no connection within {CONNECT_TIMEOUT:?} (retrying)"
                    );
                }
                continue;
            }
        };
        if failures > 0 {
            log::info!("listening for credential changes again");
        }
        failures = 0;
        backoff = Duration::from_millis(50);
        sink(WatchEvent::Listening);
        sink(WatchEvent::UpToDate(listening_from));
        let reason = hear_until_lost(&mut listener, &alive, &sink).await;
        sink(WatchEvent::Lost);
        match reason {
            None => return,
            Some(reason) => log::warn!(
                "lost the connection that listens for credential changes ({reason}); token \
                 requests read the database until it is back"
            ),
        }
    }
}

/// Reports notifications until the connection fails (`Some(why)`) or the
/// application is gone (`None`).
async fn hear_until_lost(
    listener: &mut sqlx::postgres::PgListener,
    alive: &Weak<()>,
    sink: &WatchSink,
) -> Option<String> {
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        // `try_recv` is cancel-safe: a heartbeat tick loses no notification.
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => sink(heard(notification.payload())),
                Ok(None) => return Some("closed".to_owned()),
                Err(err) => return Some(crate::telemetry::error_chain(&err)),
            },
            _ = heartbeat.tick() => {
                alive.upgrade()?;
                let sent = Instant::now();
                let answered = tokio::time::timeout(
                    HEARTBEAT_TIMEOUT,
                    sqlx::query::<sqlx::Postgres>("SELECT 1").execute(&mut *listener),
                )
                .await;
                match answered {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Some(crate::telemetry::error_chain(&err)),
                    Err(_) => return Some(format!("no answer within {HEARTBEAT_TIMEOUT:?}")),
                }
                // PostgreSQL sends what was committed before the query ahead
                // of its answer; the connection kept it aside meanwhile.
                while let Some(notification) = listener.next_buffered() {
                    sink(heard(notification.payload()));
                }
                sink(WatchEvent::UpToDate(sent));
            }
        }
    }
}

/// A notification as the sink hears it.
fn heard(payload: &str) -> WatchEvent {
    match CredentialChange::from_notification(payload) {
        (Some(seq), change) => WatchEvent::Logged(seq, change),
        (None, change) => WatchEvent::Changed(change),
    }
}

/// The change counter of a SQLite file, read on a connection of its own.
pub struct ChangeCounter {
    connection: Connection,
    data_version: Option<i64>,
    version: i64,
}

impl ChangeCounter {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_millis(50))?;
        Ok(ChangeCounter {
            connection,
            data_version: None,
            version: 0,
        })
    }

    /// The counter, read again only when another connection committed
    /// since the last call.
    pub fn read(&mut self) -> rusqlite::Result<i64> {
        let data_version: i64 = self
            .connection
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        if self.data_version != Some(data_version) {
            self.version = self
                .connection
                .prepare_cached("SELECT version FROM credential_changes WHERE id = 1")?
                .query_row([], |row| row.get(0))?;
            self.data_version = Some(data_version);
        }
        Ok(self.version)
    }
}

fn poll_sqlite(path: &Path, every: Duration, alive: &Weak<()>, sink: &WatchSink) {
    let mut counter: Option<(ChangeCounter, i64)> = None;
    let mut failing = false;
    while alive.upgrade().is_some() {
        let started = Instant::now();
        let polled = match counter.take() {
            Some((mut open, seen)) => open.read().map(|now| (open, Some(seen), now)),
            None => ChangeCounter::open(path)
                .and_then(|mut open| open.read().map(|now| (open, None, now))),
        };
        match polled {
            Ok((open, seen, now)) => {
                match seen {
                    None => sink(WatchEvent::Listening),
                    Some(seen) if seen != now => {
                        sink(WatchEvent::Changed(CredentialChange::Everything));
                    }
                    Some(_) => {}
                }
                if failing {
                    log::info!("reading credential changes again");
                    failing = false;
                }
                sink(WatchEvent::UpToDate(started));
                counter = Some((open, now));
            }
            Err(err) => {
                if !failing {
                    log::warn!(
                        "cannot read credential changes (retrying; until then every token request \
                         reads the database): {err}"
                    );
                    failing = true;
                }
                sink(WatchEvent::Lost);
            }
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::DatabaseSettings;

    #[test]
    fn payloads_name_a_key_an_owner_a_tenant_or_everything() {
        assert_eq!(
            CredentialChange::from_payload("kpc_abc"),
            CredentialChange::Key("kpc_abc".to_owned())
        );
        assert_eq!(
            CredentialChange::from_payload("user:u1"),
            CredentialChange::Owner("u1".to_owned())
        );
        assert_eq!(
            CredentialChange::from_payload("tenant:t1"),
            CredentialChange::Tenant("t1".to_owned())
        );
        assert_eq!(
            CredentialChange::from_payload("*"),
            CredentialChange::Everything
        );
        assert_eq!(
            CredentialChange::from_payload(""),
            CredentialChange::Everything
        );
    }

    async fn fixture(dir: &Path) -> Store {
        let store = Store::connect_and_migrate(&DatabaseSettings {
            url: format!("sqlite://{}/notify.db", dir.display()),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(10),
            master_keys: Default::default(),
        })
        .await
        .expect("connects");
        for sql in [
            "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('t1', 'Acme', 1, 1)",
            "INSERT INTO users (id, tenant_id, email, role, permissions, status, created_at, updated_at) \
             VALUES ('u1', 't1', 'a@acme.test', 'member', 'reports:read', 'active', 1, 1)",
            "INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, created_at, updated_at) \
             VALUES ('k1', 't1', 'u1', 'kpc_one', 'abcd', 'one', 1, 1)",
        ] {
            sqlx::query(sql).execute(&store.pool).await.expect(sql);
        }
        store
    }

    /// Every column client authentication reads moves the counter when
    /// written; what it does not read (names, "last used", marks, sign-in
    /// counters, records) does not. The column lists are the triggers'.
    #[tokio::test]
    async fn the_counter_moves_for_every_column_authentication_reads_and_no_other() {
        let dir = std::env::temp_dir().join(format!("keyport-notify-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = fixture(&dir).await;
        let mut counter = ChangeCounter::open(&dir.join("notify.db")).expect("opens");
        let read = super::super::keys::KEY_AUTH_BY_CLIENT_ID;
        let select = read.split(" FROM ").next().expect("a select list");
        let mut columns: Vec<(String, String)> = select
            .trim_start_matches("SELECT ")
            .split(", ")
            .map(|column| {
                let column = column.split(" AS ").next().expect("column").trim();
                let (alias, name) = column.split_once('.').expect("qualified");
                let table = match alias {
                    "k" => "api_keys",
                    "u" => "users",
                    "t" => "tenants",
                    other => panic!("unknown table alias {other}"),
                };
                (table.to_owned(), name.to_owned())
            })
            .collect();
        assert!(columns.len() >= 20, "{columns:?}");
        columns.push(("api_keys".to_owned(), "client_id".to_owned()));
        for (table, column) in &columns {
            let before = counter.read().expect("reads");
            let sql = format!("UPDATE {table} SET {column} = {column}");
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&store.pool)
                .await
                .expect("updates");
            assert_eq!(counter.read().expect("reads"), before + 1, "{sql}");
        }
        for sql in [
            "UPDATE api_keys SET name = 'renamed', last_used_at = 5, last_used_from = '10.0.0.1', \
             signs_webhooks = 1, labels = '{}', description = 'd'",
            "UPDATE users SET failed_sign_ins = 3, locked_until = 9, password_hash = 'h', email = 'b@acme.test'",
            "UPDATE tenants SET api_only_users = 1, name = 'Acme 2'",
            "INSERT INTO records (id, tenant_id, collection, owner_id, client_id, body, created_at) \
             VALUES ('r1', 't1', 'orders', 'u1', 'kpc_one', '{}', 5)",
        ] {
            let before = counter.read().expect("reads");
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&store.pool)
                .await
                .expect(sql);
            assert_eq!(counter.read().expect("reads"), before, "{sql}");
        }
        for sql in [
            "INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, created_at, updated_at) \
             VALUES ('k2', 't1', 'u1', 'kpc_two', 'ef01', 'two', 1, 1)",
            "DELETE FROM api_keys WHERE id = 'k2'",
            "DELETE FROM users WHERE id = 'u1'",
            "DELETE FROM tenants WHERE id = 't1'",
        ] {
            let before = counter.read().expect("reads");
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&store.pool)
                .await
                .expect(sql);
            assert!(counter.read().expect("reads") > before, "{sql}");
        }
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// The poller reports `Listening` first, `UpToDate` on every poll, and
    /// `Everything` only after a credential change.
    #[tokio::test]
    async fn the_poller_reports_a_change_made_by_another_connection() {
        let dir = std::env::temp_dir().join(format!("keyport-poll-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = fixture(&dir).await;
        let heard: Arc<Mutex<Vec<WatchEvent>>> = Arc::default();
        let sink_heard = Arc::clone(&heard);
        let alive = Arc::new(());
        assert!(store.watch_credentials(
            Duration::from_millis(20),
            Arc::downgrade(&alive),
            Arc::new(move |event| sink_heard.lock().unwrap().push(event)),
        ));
        let changes = |heard: &Mutex<Vec<WatchEvent>>| {
            heard
                .lock()
                .unwrap()
                .iter()
                .filter(|e| !matches!(e, WatchEvent::UpToDate(_)))
                .cloned()
                .collect::<Vec<_>>()
        };
        let wait_for = |want: usize| {
            let heard = Arc::clone(&heard);
            async move {
                for _ in 0..500 {
                    if changes(&heard).len() >= want {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("heard only {:?}", changes(&heard));
            }
        };
        wait_for(1).await;
        sqlx::query("INSERT INTO records (id, tenant_id, collection, owner_id, client_id, body, created_at) \
             VALUES ('r1', 't1', 'orders', 'u1', 'kpc_one', '{}', 5)")
            .execute(&store.pool)
            .await
            .expect("a push");
        sqlx::query("UPDATE api_keys SET revoked_at = 7 WHERE id = 'k1'")
            .execute(&store.pool)
            .await
            .expect("a revocation");
        wait_for(2).await;
        assert_eq!(
            changes(&heard),
            [
                WatchEvent::Listening,
                WatchEvent::Changed(CredentialChange::Everything)
            ]
        );
        drop(alive);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }
}
