//! A SQLite database holds every hashed secret, sealed key and record, so
//! its files are for their owner only, like the master key beside them.
//!
//! SQLite creates a database file with mode 0644 (less the umask), and gives
//! its `-wal`, `-shm` and `-journal` files the mode of the database file. So
//! the database file is created here, empty and 0600, before SQLite opens
//! it (an empty file is a valid new database), and the other files follow.
//! A database from before, or one copied in, that its group or others may
//! read is narrowed at start with a warning naming the file and its old
//! mode.

use std::ffi::OsString;
use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::StorageError;

/// The database file and the files SQLite keeps beside it.
fn files(database: &Path) -> [PathBuf; 4] {
    let beside = |suffix: &str| {
        let mut name = OsString::from(database.as_os_str());
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        database.to_owned(),
        beside("-wal"),
        beside("-shm"),
        beside("-journal"),
    ]
}

/// Creates `database` 0600 when `create` and it does not exist yet, then
/// narrows any of its files that group or others may access to the owner's
/// bits. A file that cannot be narrowed (another user's) is logged as an
/// error, not refused: start-up does not make it any less readable.
pub(super) fn restrict(database: &Path, create: bool) -> Result<(), StorageError> {
    if create {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(database)
        {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(StorageError::Location(format!(
                    "cannot create {}: {err}",
                    database.display()
                )));
            }
        }
    }
    for file in files(database) {
        // Absent (no WAL yet, no journal): nothing to narrow.
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        let narrowed = mode & 0o700;
        match std::fs::set_permissions(&file, Permissions::from_mode(narrowed)) {
            Ok(()) => log::warn!(
                "the SQLite file {} could be read by other users (mode {mode:o}); \
                 its mode is now {narrowed:o}",
                file.display()
            ),
            Err(err) => log::error!(
                "the SQLite file {} can be read by other users (mode {mode:o}) and its mode \
                 could not be changed: {err}; run chmod {narrowed:o} on it as its owner",
                file.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_database_is_created_for_its_owner_and_open_files_are_narrowed() {
        let dir = std::env::temp_dir().join(format!("keyport-mode-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("k.db");
        restrict(&database, true).unwrap();
        assert_eq!(mode(&database), 0o600);
        assert_eq!(std::fs::metadata(&database).unwrap().len(), 0);

        let wal = dir.join("k.db-wal");
        std::fs::write(&wal, b"").unwrap();
        for (file, before, after) in [(&database, 0o644, 0o600), (&wal, 0o660, 0o600)] {
            std::fs::set_permissions(file, Permissions::from_mode(before)).unwrap();
            restrict(&database, true).unwrap();
            assert_eq!(mode(file), after, "{}", file.display());
        }
        // Without `create` (mode=ro, mode=rw), nothing is created.
        let absent = dir.join("absent.db");
        restrict(&absent, false).unwrap();
        assert!(!absent.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
