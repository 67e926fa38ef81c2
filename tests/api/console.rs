//! The web console in a real browser: the real binary serves a fresh
//! database, and `tests/console/console.spec.mjs` (node:test, playwright-core
//! driving Debian's `/usr/bin/chromium`, @axe-core/playwright) walks the
//! journey of issue 12 from the first-run link `serve` logs: setup, sign-in
//! and lockout, keys (create, copy, Test connection, revoke, delete, webhook
//! mark), users, audit, CSRF, accessibility, 400 px, console errors.
//! Screenshots of every page land in `target/console-screenshots/`.
//!
//! SQLite only: the browser checks the pages, and the service functions
//! under them run on both backends in the other tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{Backend, ServedBinary, TestDatabase, master_key_env};

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";

/// Held by each browser test: two Chromiums at once on two cores make both
/// slow enough to time out.
pub(crate) static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `keyport serve` on an empty database, and the first-run setup link it
/// logs before it says which port it listens on.
fn serve(db: &TestDatabase) -> (ServedBinary, String) {
    let server = ServedBinary::start(ServedBinary::command(&db.url, 2), Arc::default());
    // The WARN line: "first run: … Open http://…/console/setup?token=kpsetup_… to create …"
    let log = server.log();
    let setup_url = log
        .split_whitespace()
        .find(|word| word.contains("/console/setup?token=kpsetup_"))
        .unwrap_or_else(|| {
            panic!("serve on an empty database logs no first-run setup link:\n{log}")
        })
        .to_owned();
    (server, setup_url)
}

/// Node, playwright-core and Chromium: missing is a failure that says how
/// to get them, never a skip.
pub(crate) fn node(root: &Path) -> PathBuf {
    for package in ["playwright-core", "@axe-core/playwright"] {
        let installed = root.join("node_modules").join(package);
        assert!(
            installed.exists(),
            "{package} is not installed: {} does not exist. Run `scripts/test`, which runs \
             `npm ci --no-audit --no-fund` (package.json pins it), or run that npm command in \
             the repository root yourself",
            installed.display()
        );
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `scripts/test` installs Debian's chromium package \
         (apt-get install -y chromium); the console tests never download a browser"
    );
    std::env::var_os("KEYPORT_TEST_NODE")
        .filter(|n| !n.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_end_to_end_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let node = node(&root);
    let screenshots = root.join("target/console-screenshots");
    let _browser = BROWSER.lock().await;
    // This test's own screenshots (the Webhooks test keeps its folder).
    for old in std::fs::read_dir(&screenshots)
        .into_iter()
        .flatten()
        .flatten()
    {
        if old.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    std::fs::create_dir_all(&screenshots).expect("create target/console-screenshots");

    let db = TestDatabase::create(Backend::Sqlite).await;
    let (server, setup_url) = serve(&db);
    // First-run setup works once per server: a second fresh one for the
    // setup that goes wrong before it goes right.
    let second_db = TestDatabase::create(Backend::Sqlite).await;
    // Kept alive while the browser uses it.
    let (_second, second_setup_url) = serve(&second_db);

    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&node)
            .arg("tests/console/console.spec.mjs")
            .current_dir(&root)
            .env("BASE_URL", server.url(""))
            .env("SETUP_URL", &setup_url)
            .env("SECOND_SETUP_URL", &second_setup_url)
            .env("SCREENSHOT_DIR", &screenshots)
            .env("CHROMIUM", CHROMIUM)
            .env("KEYPORT_BIN", env!("CARGO_BIN_EXE_keyport"))
            .env("KEYPORT_DATABASE_URL", &db.url)
            .envs(master_key_env(&db.url))
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser tests finished within 240 s")
    .unwrap_or_else(|e| panic!("cannot run {} ({e}); set KEYPORT_TEST_NODE", node.display()));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the console's browser tests failed ({}); screenshots in {}\n\
         --- node stdout ---\n{stdout}\n--- node stderr ---\n{stderr}\n\
         --- server log (last 60 lines) ---\n{}",
        output.status,
        screenshots.display(),
        tail(&server.log(), 60),
    );
    // The invitation's code rode in the link's fragment: the server never
    // saw it, so its log holds no set-password code (a redacted one reads
    // `kpset_<redacted>`).
    let log = server.log();
    let leaked = log.match_indices("kpset_").any(|(at, prefix)| {
        log[at + prefix.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    });
    assert!(
        !leaked,
        "a set-password code is in the server's log:\n{log}"
    );
    for page in [
        "keys-1280.png",
        "keys-400.png",
        "keys-menu-1280.png",
        "keys-menu-400.png",
        "users-1280.png",
        "key-page-400.png",
        "create-dialog-1280.png",
        "users-400.png",
        "key-page-1280.png",
        "overview-1280.png",
        "overview-400.png",
        "create-form-400.png",
    ] {
        assert!(
            screenshots.join(page).exists(),
            "no screenshot {page}:\n{stdout}"
        );
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
