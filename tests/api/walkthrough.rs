//! The README's five-minute walkthrough, run as written: every shell block
//! of that section, in order, by bash, against the real `keyport serve` on a
//! fresh SQLite database. What the reader fills in (the client ID and secret
//! a block printed, the token an answer carried, the server's address) is
//! filled from the previous blocks' output. A README that no longer works
//! fails here.

use std::process::Command;

use serde_json::Value;

use crate::helpers::Sent as _;
use crate::helpers::{Backend, ServedBinary, TestDatabase};

/// The ```sh blocks of the section of `page` headed `title`.
fn shell_blocks(page: &str, title: &str) -> Vec<String> {
    let start = page
        .find(&format!("## {title}\n"))
        .unwrap_or_else(|| panic!("no section `{title}`"));
    let section = &page[start + title.len() + 4..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed code block");
        blocks.push(body[..close].to_owned());
        rest = &body[close + 4..];
    }
    blocks
}

/// Runs `script` with bash, `keyport` standing for the binary under test
/// and the database of `url` (and `TOKEN`, once a block set it); answers
/// stdout, failing on a non-zero exit.
fn run_block(script: &str, url: &str, token: Option<&str>) -> String {
    let prelude = format!(
        "set -euo pipefail\nshopt -s expand_aliases\nkeyport() {{ \"{}\" \"$@\"; }}\n",
        env!("CARGO_BIN_EXE_keyport")
    );
    // The walkthrough aliases the release build; the test runs the one it
    // was built with.
    let script = script.replace("alias keyport=target/release/keyport", "");
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .env("KEYPORT_DATABASE_URL", url)
        .envs(crate::helpers::master_key_env(url))
        .env("RUST_LOG", "warn")
        // The reader's shell keeps the `TOKEN` an earlier block set.
        .envs(token.map(|t| ("TOKEN", t)))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "a walkthrough block failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value printed after `label` (`client_id:     kpc_…`).
fn printed(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{label}` in:\n{output}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    run_walkthrough(include_str!("../../README.md")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_getting_started_walkthrough_runs_as_written() {
    run_walkthrough(include_str!("../../docs/src/getting-started.md")).await;
}

/// Runs the `Five-minute walkthrough` section of `page` on a fresh server.
async fn run_walkthrough(page: &str) {
    let blocks = shell_blocks(page, "Five-minute walkthrough");
    assert!(blocks.len() >= 4, "found {} blocks", blocks.len());

    let db = TestDatabase::create(Backend::Sqlite).await;
    std::fs::create_dir_all(db.sqlite_dir().expect("a SQLite folder")).expect("folder");
    let server = ServedBinary::start(ServedBinary::command(&db.url, 2), std::sync::Arc::default());
    let base = format!("http://127.0.0.1:{}", server.port);

    let mut client: Option<(String, String)> = None;
    let mut token: Option<String> = None;
    for (n, block) in blocks.iter().enumerate() {
        let mut script = block.replace("http://127.0.0.1:8080", &base);
        if let Some((id, secret)) = &client {
            script = script.replace("CLIENT_ID:CLIENT_SECRET", &format!("{id}:{secret}"));
        }
        if let Some(token) = &token {
            script = script.replace("TOKEN=eyJ…", &format!("TOKEN={token}"));
        } else {
            // The block that prints the token sets it from what it printed.
            script = script.replace("TOKEN=eyJ…", "");
        }
        let output = run_block(&script, &db.url, token.as_deref());
        if block.contains("keyport key create") {
            client = Some((
                printed(&output, "client_id:"),
                printed(&output, "client_secret:"),
            ));
        }
        if block.contains("grant_type=client_credentials") {
            let answer: Value = serde_json::from_str(output.trim())
                .unwrap_or_else(|_| panic!("block {n}: the token answer is not JSON: {output}"));
            assert_eq!(answer["token_type"], "Bearer", "{answer}");
            token = Some(answer["access_token"].as_str().expect("a token").to_owned());
        }
        if block.contains("/api/v1/webhooks/orders") {
            let lines: Vec<&str> = output.lines().collect();
            assert!(output.contains("\"count\":2"), "block {n}: {output}");
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("\"records\"") && l.contains("1001")),
                "block {n}: {output}"
            );
        }
    }
    assert!(
        client.is_some() && token.is_some(),
        "the walkthrough made no key or token"
    );

    // The walkthrough's last block gave the admin a password: the console's
    // sign-in takes it.
    let page = reqwest::Client::new()
        .get(format!("{base}/console/sign-in"))
        .sent()
        .await;
    assert_eq!(page.status(), 200);
    let signed_in = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-X", "POST", "-H", "content-type: application/json"])
        .arg("--data")
        .arg(r#"{"email":"ana@acme.io","password":"a long enough password"}"#)
        .arg(format!("{base}/api/v1/session"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&signed_in.stdout),
        "201",
        "the walkthrough's admin cannot sign in with the password it set"
    );
    drop(server);
}
