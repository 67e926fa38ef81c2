//! Backing up and restoring the SQLite database (`keyport backup FILE`,
//! `keyport restore FILE`): the operator's alone, so only the command line
//! calls these. The copying is `storage/backup.rs`; the rule kept here is
//! that a restore goes ahead only when the master key it will run with
//! opens every sealed value the backup holds, and changes nothing
//! otherwise.

use std::path::{Path, PathBuf};

use crate::config::DatabaseSettings;
use crate::progress::Progress;
use crate::sealing::{self, SealError, SealedAt};
use crate::storage::backup::{self as files, BackupContents};

pub use files::{BackupError, BackupReport};

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// The database file written.
    pub database: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
    pub sealed_values: u64,
    /// The master key that opened them (its id, never the key); `None` when
    /// the backup holds no sealed value.
    pub master_key_id: Option<String>,
}

/// Writes a consistent snapshot of the running database to `dest`.
pub fn backup(
    settings: &DatabaseSettings,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    files::backup(settings, dest, progress)
}

/// Restores `file` into the empty place `settings` names, after checking
/// that the configured master key opens it; on any refusal nothing is
/// written.
pub fn restore(
    settings: &DatabaseSettings,
    file: &Path,
    progress: &dyn Progress,
) -> Result<RestoreReport, BackupError> {
    let target = files::restore_target(settings)?;
    let contents = files::inspect(file)?;
    let master_key_id = check_master_key(settings, &target, &contents)?;
    let bytes = files::install(file, &target, progress)?;
    Ok(RestoreReport {
        database: std::path::absolute(&target).unwrap_or(target),
        bytes,
        schema_version: contents.schema_version,
        sealed_values: contents.sealed.len() as u64,
        master_key_id,
    })
}

/// Opens every sealed value of the backup with the key the restored
/// server will use: the configured one, else a key file already put beside
/// the target.
fn check_master_key(
    settings: &DatabaseSettings,
    target: &Path,
    contents: &BackupContents,
) -> Result<Option<String>, BackupError> {
    let needed = contents.master_key_ids().join(", ");
    let Some((sealer, origin)) = sealing::existing_sealer(&settings.master_keys, target)? else {
        if contents.sealed.is_empty() {
            return Ok(None);
        }
        return Err(BackupError::NoMasterKey {
            needed,
            beside: target
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(sealing::master_key::DEFAULT_FILE_NAME),
        });
    };
    for value in &contents.sealed {
        let at = SealedAt {
            table: value.table,
            column: value.column,
            row: &value.row,
        };
        match sealer.open(at, &value.stored) {
            Ok(_) => {}
            Err(SealError::UnknownKey { .. }) => {
                return Err(BackupError::WrongMasterKey {
                    needed,
                    configured: sealer.current_key_id().to_owned(),
                    origin,
                });
            }
            Err(err) => return Err(BackupError::Sealed(err)),
        }
    }
    Ok(Some(sealer.current_key_id().to_owned()))
}
