//! The SQLite database, and the `-wal` and `-shm` files SQLite keeps beside
//! it, are readable by their owner only (0600, like the master key), on a
//! fresh start and after start on a database others could read. SQLite only:
//! a PostgreSQL database has no file of Keyport's.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::helpers::{Backend, ServedBinary, TestDatabase};

/// `keyport serve` on `db` under umask 022, the usual one (under which
/// SQLite's own default, 0644, is readable by everyone): what the files get
/// must not depend on the umask the tests happen to run with.
fn serve_under_umask_022(db: &TestDatabase) -> ServedBinary {
    let keyport = ServedBinary::command(&db.url, 1);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(keyport.get_program())
        .envs(keyport.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    ServedBinary::start(command, Arc::default())
}

fn database_files(db: &TestDatabase) -> [PathBuf; 3] {
    let dir = db.sqlite_dir().expect("a SQLite test database");
    ["keyport.db", "keyport.db-wal", "keyport.db-shm"].map(|name| dir.join(name))
}

/// The file's permission bits in octal, as `ls -l` and chmod speak.
fn mode(file: &Path) -> String {
    let mode = std::fs::metadata(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .permissions()
        .mode();
    format!("{:o}", mode & 0o777)
}

/// A fresh database: the file, its WAL and its shared-memory file are 0600
/// while the server runs (input: an empty folder, umask 022).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sqlite_database_and_its_wal_and_shm_files_are_readable_by_their_owner_only() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let server = serve_under_umask_022(&db);
    for file in database_files(&db) {
        assert_eq!(mode(&file), "600", "{}\n{}", file.display(), server.log());
    }
}

/// A database whose files others may read (0644, as SQLite made them
/// before) is narrowed to 0600 at start, and the log says which file had
/// which mode; the server then serves as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_others_can_read_is_narrowed_to_its_owner_at_start_with_a_warning() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut first = serve_under_umask_022(&db);
    // Killed, so the WAL and shared-memory files stay behind.
    first.kill_9();
    let files = database_files(&db);
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    let server = serve_under_umask_022(&db);
    let log = server.log();
    for file in &files {
        assert_eq!(mode(file), "600", "{}\n{log}", file.display());
        let warned = log.lines().any(|line| {
            line.contains("WARN")
                && line.contains(&format!("{} ", file.display()))
                && line.contains("mode 644")
        });
        assert!(warned, "no warning names {}:\n{log}", file.display());
    }
    let ready = reqwest::get(server.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200, "{log}");
}
