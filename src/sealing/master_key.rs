//! The master key: 32 random bytes kept outside the database, in
//! `KEYPORT_MASTER_KEY` (base64) or a file only its owner can read. The
//! embedded SQLite default creates one beside the database file on first
//! start; PostgreSQL, shared by several instances, needs one given to each.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::Sealer;

/// The file name of the master key the embedded default creates beside the
/// SQLite database.
pub const DEFAULT_FILE_NAME: &str = "keyport.master-key";

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "PostgreSQL needs a master key, the same for every instance: set KEYPORT_MASTER_KEY \
         (base64 of 32 random bytes, e.g. from `keyport master-key generate FILE`) or \
         master_key_file (KEYPORT_MASTER_KEY_FILE)"
    )]
    MissingForPostgres,
    #[error("{source_name} is not a master key: expected base64 of exactly 32 bytes")]
    Malformed { source_name: String },
    #[error(
        "the master key file {path} can be read by other users (mode {mode:o}); \
         run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("cannot read the master key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the master key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A master key given as text (`KEYPORT_MASTER_KEY`), redacted in `Debug`.
#[derive(Clone)]
pub struct MasterKeyText(String);

impl MasterKeyText {
    pub fn new(text: String) -> Self {
        MasterKeyText(text)
    }
}

impl std::fmt::Debug for MasterKeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeyText(<redacted>)")
    }
}

/// Where the master keys come from; see `config/default.toml`.
#[derive(Debug, Clone, Default)]
pub struct MasterKeySettings {
    /// `KEYPORT_MASTER_KEY`: wins over `file`.
    pub current: Option<MasterKeyText>,
    pub current_file: Option<PathBuf>,
    /// The key being rotated away from: opens, never seals.
    pub previous: Option<MasterKeyText>,
    pub previous_file: Option<PathBuf>,
}

/// Where the database lives decides the default when no key is configured.
#[derive(Debug, Clone, Copy)]
pub enum Database<'a> {
    SqliteFile(&'a Path),
    /// An in-memory database lives as long as the process: so may its key.
    SqliteMemory,
    Postgres,
}

pub struct MasterKey {
    id: String,
    bytes: [u8; KEY_LEN],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        for byte in self.bytes.iter_mut() {
            // Volatile, so the compiler keeps a write nobody reads.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        // The id names the key in every value it seals; it is a digest, so it
        // says nothing about the key.
        let digest = Sha256::new()
            .chain_update(b"keyport master key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey { id, bytes }
    }

    /// Parses base64 (standard alphabet, padding optional) of 32 bytes.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, MasterKeyError> {
        let malformed = || MasterKeyError::Malformed {
            source_name: source_name.to_owned(),
        };
        let trimmed = text.trim().trim_end_matches('=');
        let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .map_err(|_| malformed())?;
        let bytes: [u8; KEY_LEN] = decoded.try_into().map_err(|_| malformed())?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(super) fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as `KEYPORT_MASTER_KEY` and key files hold it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// Writes the key to a new file only its owner can read; refuses to
    /// replace an existing file.
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        let write_error = |source| MasterKeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write_error)?;
        file.write_all(format!("{}\n", self.to_base64()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error)
    }

    /// Reads a key file, refusing one that group or others may read.
    pub fn read_file(path: &Path) -> Result<Self, MasterKeyError> {
        let read_error = |source| MasterKeyError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(read_error)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Self::parse(&text, &path.display().to_string())
    }
}

fn configured(
    text: Option<&MasterKeyText>,
    file: Option<&Path>,
    env_name: &str,
) -> Result<Option<MasterKey>, MasterKeyError> {
    match (text, file) {
        (Some(text), _) => MasterKey::parse(&text.0, env_name).map(Some),
        (None, Some(file)) => MasterKey::read_file(file).map(Some),
        (None, None) => Ok(None),
    }
}

/// The sealer for `database`: the configured key, else (SQLite file) the key
/// beside the database, created on first start.
pub fn resolve_sealer(
    settings: &MasterKeySettings,
    database: Database<'_>,
) -> Result<Sealer, MasterKeyError> {
    let current = match configured(
        settings.current.as_ref(),
        settings.current_file.as_deref(),
        "KEYPORT_MASTER_KEY",
    )? {
        Some(key) => key,
        None => match database {
            Database::Postgres => return Err(MasterKeyError::MissingForPostgres),
            Database::SqliteMemory => MasterKey::generate(),
            Database::SqliteFile(db) => {
                let path = db
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join(DEFAULT_FILE_NAME);
                read_or_create(&path)?
            }
        },
    };
    let previous = configured(
        settings.previous.as_ref(),
        settings.previous_file.as_deref(),
        "KEYPORT_MASTER_KEY_PREVIOUS",
    )?;
    Ok(Sealer::new(&current, previous.as_ref()))
}

/// The sealer a restore into `db` (a SQLite file not there yet) checks a
/// backup with, and where its key came from: the configured key, else the
/// key file beside `db` when one was put there. `None` when there is
/// neither: unlike [`resolve_sealer`] this never creates a key, since a new
/// key opens nothing a backup holds.
pub fn existing_sealer(
    settings: &MasterKeySettings,
    db: &Path,
) -> Result<Option<(Sealer, String)>, MasterKeyError> {
    let beside = db
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(DEFAULT_FILE_NAME);
    let (current, origin) = match configured(
        settings.current.as_ref(),
        settings.current_file.as_deref(),
        "KEYPORT_MASTER_KEY",
    )? {
        Some(key) => {
            let origin = match (&settings.current, &settings.current_file) {
                (Some(_), _) => "KEYPORT_MASTER_KEY".to_owned(),
                (None, Some(file)) => file.display().to_string(),
                (None, None) => String::new(),
            };
            (key, origin)
        }
        None if beside.exists() => (MasterKey::read_file(&beside)?, beside.display().to_string()),
        None => return Ok(None),
    };
    let previous = configured(
        settings.previous.as_ref(),
        settings.previous_file.as_deref(),
        "KEYPORT_MASTER_KEY_PREVIOUS",
    )?;
    Ok(Some((Sealer::new(&current, previous.as_ref()), origin)))
}

fn read_or_create(path: &Path) -> Result<MasterKey, MasterKeyError> {
    match MasterKey::read_file(path) {
        Err(MasterKeyError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let key = MasterKey::generate();
            match key.write_new_file(path) {
                Ok(()) => {
                    log::warn!(
                        "created the master key {} (key id {}): back it up with the database; \
                         without it the signing keys and webhook-signing keys cannot be read",
                        path.display(),
                        key.id()
                    );
                    Ok(key)
                }
                // Another process created it first: use theirs.
                Err(MasterKeyError::Write { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    MasterKey::read_file(path)
                }
                Err(err) => Err(err),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyport-mk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_embedded_default_creates_an_owner_only_key_beside_the_database_once() {
        let dir = temp_dir();
        let db = dir.join("keyport.db");
        let first = resolve_sealer(&MasterKeySettings::default(), Database::SqliteFile(&db))
            .expect("create");
        let path = dir.join(DEFAULT_FILE_NAME);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = resolve_sealer(&MasterKeySettings::default(), Database::SqliteFile(&db))
            .expect("reuse");
        assert_eq!(first.current_key_id(), second.current_key_id());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        let dir = temp_dir();
        let path = dir.join("mk");
        MasterKey::generate().write_new_file(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::read_file(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn postgres_without_a_key_is_refused_saying_what_to_set() {
        let err = resolve_sealer(&MasterKeySettings::default(), Database::Postgres).unwrap_err();
        assert!(err.to_string().contains("KEYPORT_MASTER_KEY"), "{err}");
    }

    #[test]
    fn the_environment_key_wins_and_bad_text_is_refused_without_echoing_it() {
        let key = MasterKey::generate();
        let settings = MasterKeySettings {
            current: Some(MasterKeyText::new(key.to_base64())),
            current_file: Some(PathBuf::from("/nonexistent")),
            ..Default::default()
        };
        let sealer = resolve_sealer(&settings, Database::Postgres).unwrap();
        assert_eq!(sealer.current_key_id(), key.id());
        for bad in ["", "not base64!", "c2hvcnQ=", &STANDARD.encode([7u8; 33])] {
            let settings = MasterKeySettings {
                current: Some(MasterKeyText::new(bad.to_owned())),
                ..Default::default()
            };
            let err = resolve_sealer(&settings, Database::Postgres).unwrap_err();
            assert!(
                matches!(err, MasterKeyError::Malformed { .. }),
                "{bad}: {err}"
            );
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad));
            }
        }
        assert!(!format!("{settings:?}").contains(&key.to_base64()));
    }
}
