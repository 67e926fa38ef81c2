//! `keyport backup` and `keyport restore` on the SQLite database file.
//!
//! A backup is taken with SQLite's online backup API through a connection
//! of its own that opens one read transaction first and holds it until the
//! last page is copied. In WAL mode a reader's snapshot is fixed when its
//! transaction starts and writers never wait for it, so the copy is the
//! database exactly as it was at that moment (every write committed before
//! it, none after) while the server keeps answering. Holding the snapshot
//! also keeps the backup from restarting: the API starts over when the
//! source changes under a connection that begins a new read, and a server
//! taking a stream of pushes would otherwise restart it for ever.
//!
//! The copy is written to `FILE.partial` (created 0600, like the database)
//! and linked to `FILE` only once complete and checked, so a `FILE` that
//! exists is a whole backup, and an existing `FILE` is never replaced. It
//! is switched to a rollback journal, so the backup is one self-contained
//! file.
//!
//! A restore checks everything before it writes anything (the target is
//! free, the file is a Keyport database this version can run, the master
//! key opens every sealed value; the last is decided in `service/backup.rs`),
//! then copies the file the same way: to `keyport.db.partial`, then linked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::{SEALED_COLUMNS, SQLITE_MIGRATIONS, sqlite_file_of};
use crate::config::DatabaseSettings;
use crate::progress::Progress;
use crate::sealing::SealError;

/// Pages copied per step of the backup API (4 MiB at SQLite's default page
/// size): large enough that stepping costs nothing, small enough that the
/// progress moves.
const STEP_PAGES: i32 = 1024;

/// Bytes copied per read when restoring.
const COPY_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "`keyport backup` and `keyport restore` work on a SQLite database; this one is \
         PostgreSQL: back it up with pg_dump and restore it with pg_restore; the restored \
         server needs the same master key (see the book's Operations > Backups and upgrades page)"
    )]
    Postgres,
    #[error("the database is in memory and cannot be backed up or restored")]
    InMemory,
    #[error(
        "no database at {}: point at the right one with --config FILE (database_url) or \
         KEYPORT_DATABASE_URL",
        .0.display()
    )]
    NoDatabase(PathBuf),
    #[error("{} already exists: a backup never replaces a file; name a new one", .0.display())]
    DestinationExists(PathBuf),
    #[error(
        "there is already a database at {}: restore only fills an empty data directory and \
         never replaces a database (in use or not); stop the server, move the database and any \
         -wal and -shm files beside it away, then run restore again",
        .0.display()
    )]
    TargetExists(PathBuf),
    #[error("{} is not a Keyport backup: {reason}", path.display())]
    NotABackup { path: PathBuf, reason: String },
    #[error(
        "{} comes from a newer Keyport (schema version {found}; this one knows up to {known}): \
         restore it with that version or a later one",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "the backup's sealed values need master key {needed}, and no master key is configured \
         and there is no key file at {}: put the key file the backup was taken with there \
         (mode 0600), or set KEYPORT_MASTER_KEY or master_key_file; nothing was changed",
        beside.display()
    )]
    NoMasterKey { needed: String, beside: PathBuf },
    #[error(
        "the configured master key ({configured}, from {origin}) does not open the backup: its \
         sealed values need master key {needed}; configure the key the backup was taken with \
         (KEYPORT_MASTER_KEY or master_key_file) and run restore again; nothing was changed"
    )]
    WrongMasterKey {
        needed: String,
        configured: String,
        origin: String,
    },
    #[error("the backup holds a sealed value that does not open; nothing was changed")]
    Sealed(#[source] SealError),
    #[error(transparent)]
    MasterKey(#[from] crate::sealing::MasterKeyError),
    #[error("SQLite refused the backup")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a backup holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub pages: u64,
    /// The last migration applied to the database.
    pub schema_version: i64,
    pub sealed_values: u64,
    /// The master keys its sealed values need (ids, never the keys).
    pub master_key_ids: Vec<String>,
}

/// One sealed value of a backup, where it lives.
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub table: &'static str,
    pub column: &'static str,
    pub row: String,
    pub stored: String,
}

/// What a restore found in a backup file.
#[derive(Debug, Clone)]
pub struct BackupContents {
    pub schema_version: i64,
    pub sealed: Vec<SealedValue>,
}

impl BackupContents {
    /// The ids of the master keys the sealed values were sealed with.
    pub fn master_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .sealed
            .iter()
            .filter_map(|v| crate::sealing::Sealer::key_id_of(&v.stored).map(str::to_owned))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// The SQLite file `settings` names; PostgreSQL and in-memory databases
/// are refused with what to do instead.
pub fn database_file(settings: &DatabaseSettings) -> Result<PathBuf, BackupError> {
    let url = settings.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::Postgres);
    }
    sqlite_file_of(url).ok_or(BackupError::InMemory)
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A new file only its owner may read; an existing one is refused.
fn create_private(path: &Path) -> Result<File, BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::DestinationExists(path.to_owned()),
            _ => BackupError::Write {
                path: path.to_owned(),
                source,
            },
        })
}

/// Makes the finished `partial` appear as `dest` (never replacing a file
/// there), durably.
fn publish(
    partial: &Path,
    dest: &Path,
    exists: fn(PathBuf) -> BackupError,
) -> Result<(), BackupError> {
    let write_error = |source| BackupError::Write {
        path: dest.to_owned(),
        source,
    };
    File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(write_error)?;
    // A hard link fails when `dest` exists, where a rename would replace it.
    std::fs::hard_link(partial, dest).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => exists(dest.to_owned()),
        _ => write_error(source),
    })?;
    let _ = std::fs::remove_file(partial);
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The directory entry too, so the backup survives a power cut.
        let _ = File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Removes what a failed backup or restore left.
fn discard(partial: &Path) {
    for file in [
        partial.to_owned(),
        beside(partial, "-journal"),
        beside(partial, "-wal"),
        beside(partial, "-shm"),
    ] {
        let _ = std::fs::remove_file(file);
    }
}

fn latest_known_schema() -> i64 {
    SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// The last migration applied, within `connection`'s transaction if any.
fn schema_version(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        [],
        |row| row.get(0),
    )
}

fn sealed_values(connection: &Connection) -> rusqlite::Result<Vec<SealedValue>> {
    let mut values = Vec::new();
    for column in SEALED_COLUMNS {
        let mut statement = connection.prepare(column.select)?;
        let rows = statement.query_map([], |row| {
            Ok(SealedValue {
                table: column.table,
                column: column.column,
                row: row.get(0)?,
                stored: row.get(1)?,
            })
        })?;
        for value in rows {
            values.push(value?);
        }
    }
    Ok(values)
}

/// Writes a consistent copy of the SQLite database `settings` names to
/// `dest` (see the module's comment), reporting pages copied.
pub fn backup(
    settings: &DatabaseSettings,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let database = database_file(settings)?;
    if !database.exists() {
        let looked = std::path::absolute(&database).unwrap_or(database);
        return Err(BackupError::NoDatabase(looked));
    }
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    let partial = beside(dest, ".partial");
    drop(create_private(&partial)?);
    let copied = copy_snapshot(&database, &partial, progress);
    let report = match copied {
        Ok(report) => report,
        Err(err) => {
            discard(&partial);
            return Err(err);
        }
    };
    if let Err(err) = publish(&partial, dest, BackupError::DestinationExists) {
        discard(&partial);
        return Err(err);
    }
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        file: dest.to_owned(),
        bytes,
        ..report
    })
}

fn copy_snapshot(
    database: &Path,
    partial: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(10))?;
    // The snapshot: fixed by the first read of this transaction, held
    // until COMMIT below (see the module's comment).
    source.execute_batch("BEGIN")?;
    let schema_version = schema_version(&source).map_err(|e| BackupError::NotABackup {
        path: database.to_owned(),
        reason: format!("it has no migrations table ({e})"),
    })?;
    let mut target = Connection::open(partial)?;
    let pages;
    {
        let backup = Backup::new(&source, &mut target)?;
        loop {
            let step = backup.step(STEP_PAGES)?;
            let now = backup.progress();
            let total = u64::try_from(now.pagecount).unwrap_or(0);
            let remaining = u64::try_from(now.remaining).unwrap_or(0);
            progress.update(total.saturating_sub(remaining), total);
            match step {
                StepResult::Done => {
                    pages = total;
                    break;
                }
                StepResult::More => {}
                // The target is a file of our own and the source is read
                // under a snapshot already held: only a moment's contention
                // on a lock can get here.
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {}
            }
        }
    }
    source.execute_batch("COMMIT")?;
    drop(source);
    // One self-contained file: no -wal beside it to copy too.
    target.pragma_update(None, "journal_mode", "DELETE")?;
    let check: String = target.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(BackupError::NotABackup {
            path: partial.to_owned(),
            reason: format!("the copy fails SQLite's check: {check}"),
        });
    }
    let sealed = sealed_values(&target)?;
    let contents = BackupContents {
        schema_version,
        sealed,
    };
    target.close().map_err(|(_, e)| e)?;
    Ok(BackupReport {
        file: PathBuf::new(),
        bytes: 0,
        pages,
        schema_version,
        sealed_values: contents.sealed.len() as u64,
        master_key_ids: contents.master_key_ids(),
    })
}

/// The database file a restore would fill, refused when anything of a
/// database is there already.
pub fn restore_target(settings: &DatabaseSettings) -> Result<PathBuf, BackupError> {
    let target = database_file(settings)?;
    for file in [
        target.clone(),
        beside(&target, "-wal"),
        beside(&target, "-shm"),
        beside(&target, "-journal"),
    ] {
        if file.symlink_metadata().is_ok() {
            let shown = std::path::absolute(&target).unwrap_or(target);
            return Err(BackupError::TargetExists(shown));
        }
    }
    Ok(target)
}

/// Reads a backup without changing it: its schema version and its sealed
/// values; refuses a file that is not a Keyport database this version can
/// run.
pub fn inspect(file: &Path) -> Result<BackupContents, BackupError> {
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: file.to_owned(),
        reason,
    };
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(not_a_backup("it is not a file".to_owned())),
        Err(source) => {
            return Err(BackupError::Read {
                path: file.to_owned(),
                source,
            });
        }
    }
    let connection = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let check: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| not_a_backup(e.to_string()))?;
    if check != "ok" {
        return Err(not_a_backup(format!("it fails SQLite's check: {check}")));
    }
    let schema_version = schema_version(&connection)
        .map_err(|_| not_a_backup("it holds no Keyport migrations".to_owned()))?;
    let known = latest_known_schema();
    if schema_version > known {
        return Err(BackupError::NewerSchema {
            path: file.to_owned(),
            found: schema_version,
            known,
        });
    }
    let sealed = sealed_values(&connection).map_err(|e| not_a_backup(e.to_string()))?;
    Ok(BackupContents {
        schema_version,
        sealed,
    })
}

/// Copies the checked backup `file` to `target` (from [`restore_target`]),
/// reporting bytes copied; the bytes written.
pub fn install(file: &Path, target: &Path, progress: &dyn Progress) -> Result<u64, BackupError> {
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| BackupError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    let partial = beside(target, ".partial");
    let out = create_private(&partial)?;
    let copied = copy_file(file, out, &partial, progress);
    let bytes = match copied {
        Ok(bytes) => bytes,
        Err(err) => {
            discard(&partial);
            return Err(err);
        }
    };
    if let Err(err) = publish(&partial, target, BackupError::TargetExists) {
        discard(&partial);
        return Err(err);
    }
    Ok(bytes)
}

fn copy_file(
    file: &Path,
    mut out: File,
    partial: &Path,
    progress: &dyn Progress,
) -> Result<u64, BackupError> {
    let read_error = |source| BackupError::Read {
        path: file.to_owned(),
        source,
    };
    let mut input = File::open(file).map_err(read_error)?;
    let total = input.metadata().map_err(read_error)?.len();
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut done = 0u64;
    progress.update(0, total);
    loop {
        let read = input.read(&mut buffer).map_err(read_error)?;
        if read == 0 {
            break;
        }
        out.write_all(&buffer[..read])
            .map_err(|source| BackupError::Write {
                path: partial.to_owned(),
                source,
            })?;
        done += read as u64;
        progress.update(done, total.max(done));
    }
    out.sync_all().map_err(|source| BackupError::Write {
        path: partial.to_owned(),
        source,
    })?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: url.to_owned(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(10),
            master_keys: Default::default(),
        }
    }

    #[test]
    fn postgres_and_memory_databases_are_refused_with_what_to_do() {
        let err = database_file(&settings("postgres://u@h/db")).unwrap_err();
        assert!(err.to_string().contains("pg_dump"), "{err}");
        assert!(matches!(
            database_file(&settings("sqlite::memory:")),
            Err(BackupError::InMemory)
        ));
    }

    #[test]
    fn a_restore_never_fills_a_place_where_a_database_is() {
        let dir = std::env::temp_dir().join(format!("keyport-restore-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/keyport.db", dir.display());
        assert!(restore_target(&settings(&url)).is_ok());
        // A left-over WAL is a database too: it may hold committed writes.
        std::fs::write(dir.join("keyport.db-wal"), b"").unwrap();
        assert!(matches!(
            restore_target(&settings(&url)),
            Err(BackupError::TargetExists(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_database_is_not_a_backup() {
        let dir = std::env::temp_dir().join(format!("keyport-inspect-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("notes.txt");
        std::fs::write(&file, vec![b'x'; 8192]).unwrap();
        let err = inspect(&file).unwrap_err();
        assert!(matches!(err, BackupError::NotABackup { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
