//! The one place SQL lives. [`Store`] hides whether the database is SQLite or
//! PostgreSQL: every query is written once, in the dialect both accept (TEXT
//! ids, BIGINT Unix seconds, `$n` placeholders), and run through sqlx's `Any`
//! driver.

mod audit;
pub mod backup;
mod breaker;
mod client_keys;
mod direct;
mod dpop;
mod exchange;
mod key_usage;
mod keys;
mod notify;
mod push_queue;
mod records;
mod sealed;
mod sessions;
mod signing_keys;
mod sigv4;
mod sqlite_files;
mod tenants;
mod users;
mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::config::DatabaseSettings;
use crate::sealing::{self, MasterKeyError, SealError, Sealer};
use crate::telemetry::traces;
use direct::DirectReader;
use notify::WatchTarget;

pub use audit::{AuditFilter, AuditRow};
pub use client_keys::{NewPublicKey, PublicKeyAdd, PublicKeyRemoval, PublicKeyRow};
pub use exchange::{
    ExchangeCandidate, ExchangeRuleRow, IssuerInsert, RuleAuthRow, TrustedIssuerRow,
};
pub use key_usage::{UsageAddress, UsageCount, UsagePeak, UsageRow, UsageScope};
pub use keys::{
    KeyAuthRow, KeyDetails, KeyFilter, KeyInsert, KeyRevocation, KeyRoll, KeyRow, KeyUse, NewKey,
    RateColumns, Sigv4KeyRow,
};
pub use notify::{
    CHANGE_LOG_RETENTION, ChangeCounter, ChangesSince, CredentialChange,
    HEARTBEAT as CREDENTIAL_HEARTBEAT, WatchEvent, WatchSink,
    catch_up_name as credential_catch_up_name, listener_name as credential_listener_name,
};
pub use push_queue::{PushJob, PushQueue};
pub use records::{Idempotency, NewRecords, PushOutcome, RecordPage, RecordQuery, RecordRow};
pub use sealed::{SEALED_COLUMNS, SealReport, SealedColumn};
pub use sessions::SessionRow;
pub use signing_keys::SigningKeyRow;
pub use tenants::{TenantPolicyRow, TenantRow};
pub use users::{NewUser, SignInRow, UserListRow, UserRow};
pub use webhooks::{
    AttemptOutcome, AttemptRow, DueDelivery, EndpointHealth, EndpointInsert, EndpointRow,
    EndpointSettings, EventData, NewAttempt, NewEndpoint, QueueStats, WebhookEvent,
};

/// The span of one database call, inside a traced request or delivery
/// (nothing outside one, and nothing when traces are off).
fn database_span(backend: Backend, operation: &'static str) -> traces::Leaf {
    let system = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    traces::Leaf::database(system, operation)
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached or is too busy: the caller should retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A uniqueness or check constraint refused the write; carries its name.
    #[error("constraint `{0}` refused the write")]
    Constraint(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database refused a value the caller sent (PostgreSQL refuses a
    /// NUL character in text): the request is at fault, not the server.
    #[error("the database refused a value: {0}")]
    RefusedValue(&'static str),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database location: {0}")]
    Location(String),
    /// An admin command was pointed at a SQLite file that does not exist:
    /// only `serve` and `migrate` create a database.
    #[error(
        "no database at {}: this command opens an existing database and never creates one; \
         point at the right one with --config FILE (database_url) or KEYPORT_DATABASE_URL, \
         or create it with `keyport migrate`",
        .0.display()
    )]
    NoDatabase(PathBuf),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(transparent)]
    Sealing(#[from] SealError),
}

impl StorageError {
    /// The database could not be reached at all (connection refused, reset
    /// or closed; the server shutting down), as opposed to busy or slow:
    /// nothing can be written to it meanwhile, by this instance or another.
    pub fn is_unreachable(&self) -> bool {
        let StorageError::Unavailable(err) = self else {
            return false;
        };
        match err {
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                matches!(&*code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
            }),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StorageError::Unavailable(err),
            sqlx::Error::Database(db) => {
                if let Some(name) = db.constraint() {
                    return StorageError::Constraint(name.to_owned());
                }
                // SQLite names the columns, not the constraint; map them back.
                let message = db.message();
                if db.is_unique_violation() {
                    for (needle, name) in [
                        ("tenants.name", "tenants_name_unique"),
                        ("users.email", "users_email_unique"),
                        ("api_keys.client_id", "api_keys_client_id_unique"),
                        ("api_keys.secret_digest", "api_keys_secret_digest_unique"),
                    ] {
                        if message.contains(needle) {
                            return StorageError::Constraint(name.to_owned());
                        }
                    }
                    return StorageError::Constraint("unique".to_owned());
                }
                if message.contains("database is locked") || message.contains("busy") {
                    return StorageError::Unavailable(err);
                }
                // SQLSTATE 22021: "invalid byte sequence for encoding UTF8: 0x00".
                if db.code().as_deref() == Some("22021") {
                    return StorageError::RefusedValue(
                        "the request contains a NUL character, which no parameter accepts",
                    );
                }
                if db.code().is_some_and(|code| means_unavailable(&code)) {
                    return StorageError::Unavailable(err);
                }
                StorageError::Database(err)
            }
            _ => StorageError::Database(err),
        }
    }
}

/// Database error codes that mean "cannot serve this now, retry later"
/// rather than a fault in the request or the data: the database is read-only
/// (a standby, a read-only file or file system), full, or shutting down.
fn means_unavailable(code: &str) -> bool {
    // SQLite's extended codes have at most 4 digits; SQLSTATEs have 5 characters.
    if code.len() == 5 {
        // A PostgreSQL SQLSTATE: read_only_sql_transaction, disk_full,
        // connection exceptions (class 08), admin or crash shutdown and
        // cannot_connect_now (class 57P).
        return matches!(code, "25006" | "53100" | "57P01" | "57P02" | "57P03")
            || code.starts_with("08");
    }
    // A SQLite (extended) result code: its low byte is the primary code.
    // SQLITE_READONLY (8) and SQLITE_FULL (13).
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, 8 | 13))
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The database handle shared by the HTTP server and the CLI.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite files only: point reads that skip sqlx's worker thread.
    direct: Option<Arc<DirectReader>>,
    /// Seals and opens the values of the sealed columns (`sealed`).
    sealer: Arc<Sealer>,
    /// Where credential changes are heard (`notify`).
    watch: WatchTarget,
    /// PostgreSQL: a connection of its own for reading the credential
    /// change log (`notify`), opened on first use.
    change_log: Option<sqlx::PgPool>,
    /// Open while the database is known to be down (`breaker`).
    breaker: Arc<breaker::Breaker>,
}

impl Store {
    /// Connects (creating the SQLite file and its folder when needed), runs
    /// pending migrations and seals any value a database from before sealed
    /// storage still holds in clear.
    pub async fn connect_and_migrate(settings: &DatabaseSettings) -> Result<Self> {
        Self::connect_and_migrate_with(settings, None).await
    }

    /// [`Store::connect_and_migrate`], reporting each migration applied to
    /// `progress` when given (`keyport migrate`).
    pub async fn connect_and_migrate_with(
        settings: &DatabaseSettings,
        progress: Option<&dyn crate::progress::Progress>,
    ) -> Result<Self> {
        let store = Self::connect(settings).await?;
        match progress {
            Some(progress) => store.migrate_with(progress).await?,
            None => store.migrate().await?,
        }
        let report = store.seal_clear_values().await?;
        if report.sealed > 0 {
            log::info!(
                "sealed {} value(s) that were stored in clear, under master key {}",
                report.sealed,
                store.sealer.current_key_id()
            );
        }
        Ok(store)
    }

    /// Like [`Store::connect_and_migrate`] for a database that must already
    /// exist: a SQLite file that is not there is refused before any file, folder
    /// or master key is made (admin commands run from the wrong folder would
    /// otherwise make a new, empty database there).
    pub async fn open_existing_and_migrate(settings: &DatabaseSettings) -> Result<Self> {
        if let Some(file) = sqlite_file_of(&settings.url)
            && !file.exists()
        {
            let looked = std::path::absolute(&file).unwrap_or(file);
            return Err(StorageError::NoDatabase(looked));
        }
        Self::connect_and_migrate(settings).await
    }

    pub async fn connect(settings: &DatabaseSettings) -> Result<Self> {
        install_default_drivers();
        let PreparedUrl {
            backend,
            url,
            sqlite_file,
            creates,
        } = prepare_url(&settings.url)?;
        // Before connecting: a missing master key stops start-up before any
        // file or connection is opened.
        let sealer = sealing::resolve_sealer(
            &settings.master_keys,
            match (backend, &sqlite_file) {
                (Backend::Postgres, _) => sealing::Database::Postgres,
                (Backend::Sqlite, Some(file)) => sealing::Database::SqliteFile(file),
                (Backend::Sqlite, None) => sealing::Database::SqliteMemory,
            },
        )?;
        if let Some(file) = &sqlite_file {
            sqlite_files::restrict(file, creates)?;
        }
        let options = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout);
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers proceed during a write; synchronous stays
                    // FULL (SQLite's default) so an answered push survives a crash.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options.connect(&url).await?;
        let change_log = match backend {
            Backend::Postgres => Some(notify::change_log_reader(&url)?),
            Backend::Sqlite => None,
        };
        let watch = match (backend, &sqlite_file) {
            (Backend::Postgres, _) => WatchTarget::Postgres(url.clone()),
            (Backend::Sqlite, Some(file)) => WatchTarget::SqliteFile(file.clone()),
            (Backend::Sqlite, None) => WatchTarget::None,
        };
        Ok(Store {
            pool,
            backend,
            direct: sqlite_file.map(|path| Arc::new(DirectReader::new(path))),
            sealer: Arc::new(sealer),
            watch,
            change_log,
            breaker: Arc::default(),
        })
    }

    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Applies pending migrations one at a time, reporting each: on a large
    /// database one migration can take a while, and the operator sees which.
    /// (Every other start runs them in one go: a fresh database, as each
    /// test makes, would otherwise pay a lock round per migration.)
    pub async fn migrate_with(&self, progress: &dyn crate::progress::Progress) -> Result<()> {
        let _span = self.span("migrate_with");
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Absent on a new database: then every migration is pending.
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(self.db()?)
            .await
            .unwrap_or_default();
        let pending: Vec<i64> = migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        let total = pending.len() as u64;
        progress.update(0, total);
        for (done, version) in pending.into_iter().enumerate() {
            migrator.run_to(version, &self.pool).await?;
            progress.update(done as u64 + 1, total);
        }
        // Whatever the loop did not cover (nothing, unless the table was
        // unreadable for another reason): sqlx's own checks and errors.
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Runs `read` straight against the SQLite file (see `direct`). `None`
    /// when the store is PostgreSQL, in memory or closed, or when the read
    /// failed: the caller then runs the same SQL through the pool.
    fn read_direct<T>(&self, read: impl FnOnce(&DirectReader) -> rusqlite::Result<T>) -> Option<T> {
        let direct = self.direct.as_deref().filter(|_| !self.pool.is_closed())?;
        read(direct)
            .inspect_err(|err| log::debug!("direct SQLite read failed, using the pool: {err}"))
            .ok()
    }

    /// The span of one call, inside a traced request or delivery (nothing
    /// outside one, and nothing when traces are off).
    fn span(&self, operation: &'static str) -> traces::Leaf {
        database_span(self.backend, operation)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Keys derived from the master keys for `purpose`, current first
    /// (see [`Sealer::derive_keys`]).
    pub fn derive_keys(&self, purpose: &[u8]) -> Vec<[u8; 32]> {
        self.sealer.derive_keys(purpose)
    }

    /// The id of the master key new values are sealed with.
    pub fn master_key_id(&self) -> &str {
        self.sealer.current_key_id()
    }

    /// The pool, unless the database is known to be down (`breaker`):
    /// then every query fails at once instead of waiting for a connection.
    fn db(&self) -> Result<&AnyPool> {
        if self.breaker.is_open() {
            return Err(breaker::known_down());
        }
        Ok(&self.pool)
    }

    /// A transaction that reads before it writes. On SQLite it takes the
    /// write lock at its start (`BEGIN IMMEDIATE`, waiting up to the busy
    /// timeout for it): a deferred transaction that read first could not
    /// write once another connection had committed in between (SQLite's
    /// `BUSY_SNAPSHOT`, "database is locked", which no timeout retries).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let db = self.db()?;
        Ok(match self.backend {
            Backend::Sqlite => db.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => db.begin().await?,
        })
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let _span = self.span("ping");
        sqlx::query("SELECT 1").execute(self.db()?).await?;
        Ok(())
    }

    pub fn pool_size(&self) -> u32 {
        self.pool.size()
    }

    pub fn pool_idle(&self) -> usize {
        self.pool.num_idle()
    }

    pub async fn close(&self) {
        if let Some(change_log) = &self.change_log {
            change_log.close().await;
        }
        self.pool.close().await;
        // After the pool: from then on `read_direct` opens nothing new.
        if let Some(direct) = &self.direct {
            direct.close();
        }
    }
}

struct PreparedUrl {
    backend: Backend,
    url: String,
    /// The database file, for SQLite databases that live in one.
    sqlite_file: Option<PathBuf>,
    /// Whether SQLite may create the file (`mode=rwc`).
    creates: bool,
}

/// The file a SQLite URL names (none for PostgreSQL or an in-memory
/// database), decoded as sqlx decodes it; no side effects.
fn sqlite_file_of(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()
        .map(|decoded| PathBuf::from(decoded.as_ref()))
}

/// Picks the backend from the URL and, for SQLite, makes sure the file can be
/// created: its folder exists and `mode=rwc` is set.
fn prepare_url(url: &str) -> Result<PreparedUrl> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(PreparedUrl {
            backend: Backend::Postgres,
            url: url.to_owned(),
            sqlite_file: None,
            creates: false,
        });
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            StorageError::Location(
                "database_url must start with sqlite:// or postgres://".to_owned(),
            )
        })?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(StorageError::Location(
            "the SQLite path is empty".to_owned(),
        ));
    }
    if path != ":memory:"
        && let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StorageError::Location(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let query = if query.split('&').any(|p| p.starts_with("mode=")) {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    let in_memory = path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
    // Decoded as sqlx decodes it, so both open the same file.
    let sqlite_file = match percent_encoding::percent_decode_str(path).decode_utf8() {
        Ok(decoded) if !in_memory => Some(PathBuf::from(decoded.as_ref())),
        _ => None,
    };
    let creates = query.split('&').any(|p| p == "mode=rwc");
    Ok(PreparedUrl {
        backend: Backend::Sqlite,
        url: format!("sqlite://{path}?{query}"),
        sqlite_file,
        creates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_of_a_sqlite_url_is_found_without_creating_anything() {
        assert_eq!(
            sqlite_file_of("sqlite://data/keyport.db"),
            Some(PathBuf::from("data/keyport.db"))
        );
        assert_eq!(
            sqlite_file_of("sqlite:///srv/a%20b.db?mode=rwc"),
            Some(PathBuf::from("/srv/a b.db"))
        );
        assert_eq!(sqlite_file_of("sqlite::memory:"), None);
        assert_eq!(sqlite_file_of("sqlite://x.db?mode=memory"), None);
        assert_eq!(sqlite_file_of("postgres://u@h/db"), None);
    }

    #[test]
    fn sqlite_urls_get_create_mode_and_keep_other_options() {
        let dir = std::env::temp_dir().join(format!("keyport-url-{}", uuid::Uuid::new_v4()));
        let path = dir.join("k.db");
        let url = format!("sqlite://{}", path.display());
        let prepared = prepare_url(&url).unwrap();
        assert_eq!(prepared.backend, Backend::Sqlite);
        assert!(prepared.url.ends_with("?mode=rwc"), "{}", prepared.url);
        assert_eq!(prepared.sqlite_file.as_deref(), Some(path.as_path()));
        assert!(dir.is_dir(), "the parent folder is created");
        let kept = prepare_url(&format!("{url}?mode=ro")).unwrap();
        assert!(kept.url.ends_with("?mode=ro"), "{}", kept.url);
        let spaced = prepare_url(&format!("sqlite://{}/a%20b.db", dir.display())).unwrap();
        assert_eq!(spaced.sqlite_file, Some(dir.join("a b.db")));
        for memory in ["sqlite::memory:", "sqlite://shared.db?mode=memory"] {
            assert_eq!(prepare_url(memory).unwrap().sqlite_file, None, "{memory}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn read_only_full_or_shutting_down_databases_are_unavailable() {
        for code in [
            "25006", "53100", "57P01", "57P03", "08006", "8", "776", "1032", "13",
        ] {
            assert!(means_unavailable(code), "{code}");
        }
        // Constraint violations, syntax errors, NUL bytes, SQLITE_CONSTRAINT
        // (19 and extended), SQLITE_ERROR: the request or the code is at fault.
        for code in ["23505", "42601", "22021", "19", "2067", "1", "10"] {
            assert!(!means_unavailable(code), "{code}");
        }
    }

    /// A transaction that reads before it writes (an event recorded on its
    /// own reads the endpoints first) still writes when another connection
    /// wants to write meanwhile: that one waits for it, instead of this one
    /// failing with SQLite's BUSY_SNAPSHOT, as a deferred BEGIN would.
    #[tokio::test]
    async fn a_write_transaction_that_reads_first_is_not_overtaken_by_another_writer() {
        let dir = std::env::temp_dir().join(format!("keyport-write-{}", uuid::Uuid::new_v4()));
        let store = Store::connect_and_migrate(&DatabaseSettings {
            url: format!("sqlite://{}/k.db", dir.display()),
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(10),
            master_keys: Default::default(),
        })
        .await
        .unwrap();
        const INSERT: &str = "INSERT INTO tenants (id, name, created_at, updated_at, \
             default_rate_limit_requests, default_rate_limit_per_seconds, \
             default_rate_limit_burst) VALUES ($1, $1, 1, 1, 600, 60, 100)";
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM tenants")
            .execute(&mut *tx)
            .await
            .unwrap();
        let other = {
            let store = store.clone();
            tokio::spawn(
                async move { sqlx::query(INSERT).bind("other").execute(&store.pool).await },
            )
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query(INSERT)
            .bind("first")
            .execute(&mut *tx)
            .await
            .expect("the transaction that read first still writes");
        tx.commit().await.unwrap();
        other
            .await
            .unwrap()
            .expect("the other writer waited its turn");
        let (tenants,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tenants")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(tenants, 2);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    /// SQLite re-prepares a statement on every execution when its plan read
    /// a bound parameter (a bare `LIMIT $n` does that); the paged listings
    /// must not, whatever they are bound to.
    #[tokio::test]
    async fn paged_listings_are_prepared_once() {
        use rusqlite::{StatementStatus, types::Value};

        let dir = std::env::temp_dir().join(format!("keyport-prepare-{}", uuid::Uuid::new_v4()));
        let path = dir.join("k.db");
        let store = Store::connect_and_migrate(&DatabaseSettings {
            url: format!("sqlite://{}", path.display()),
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(10),
            master_keys: Default::default(),
        })
        .await
        .unwrap();
        let connection = rusqlite::Connection::open(&path).unwrap();
        for (sql, parameters) in [
            (records::LIST_RECORDS, 5),
            (audit::LIST_AUDIT, 9),
            (audit::LIST_AUDIT_NEWEST_FIRST, 9),
        ] {
            let mut statement = connection.prepare(sql).unwrap();
            for limit in [11_i64, 51, 2] {
                let mut values = vec![Value::Text("t".into()); parameters - 1];
                values.push(Value::Integer(limit));
                statement
                    .query(rusqlite::params_from_iter(values))
                    .unwrap()
                    .next()
                    .unwrap();
            }
            assert_eq!(
                statement.get_status(StatementStatus::RePrepare),
                0,
                "re-prepared: {sql}"
            );
        }
        drop(connection);
        store.close().await;
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(prepare_url("mysql://x").is_err());
        let postgres = prepare_url("postgres://root@127.0.0.1/test").unwrap();
        assert_eq!(postgres.backend, Backend::Postgres);
        assert_eq!(postgres.sqlite_file, None);
    }
}
