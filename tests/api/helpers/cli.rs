//! The `keyport` binary as the operator runs it, on a test's database.

use std::time::Duration;

use serde_json::Value;

use super::{TestApp, master_key_env};

/// The `keyport` binary cargo built for these tests.
pub const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport");

/// Runs the `keyport` binary on `app`'s database, with no other
/// `KEYPORT_*` variable of the test's environment: (exit code, stdout,
/// stderr). Panics if it panicked or ran past 60 s.
pub async fn keyport(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    keyport_at(&app.db.url, args).await
}

/// [`keyport`] on the database at `url`.
pub async fn keyport_at(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = tokio::process::Command::new(KEYPORT);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYPORT_") {
            command.env_remove(name);
        }
    }
    command
        .env("KEYPORT_DATABASE_URL", url)
        .envs(master_key_env(url))
        .env("KEYPORT_DATABASE_MAX_CONNECTIONS", "2")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("keyport finished within 60 s")
        .expect("run keyport");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    )
}

/// `keyport --json ARGS`, which must succeed: its output, parsed.
pub async fn keyport_json(app: &TestApp, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = keyport(app, &all).await;
    assert_eq!(code, Some(0), "keyport {args:?}: {stdout}{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}
