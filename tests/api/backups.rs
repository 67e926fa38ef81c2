//! `keyport backup` and `keyport restore`: a backup taken while a running
//! server takes pushes and key changes holds every write acknowledged before
//! it began, restores into a new server whose JWKS still verifies the old
//! server's tokens, and a restore with the wrong master key changes nothing.
//! Also the progress lines these long commands print, and `keyport
//! healthcheck`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use keyport::domain::Principal;
use keyport::service::keys;
use serde_json::{Value, json};

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TEST_MASTER_KEY, TestDatabase, json_body, spawn_app, spawn_app_on};

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport");

/// One finished run of the binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `keyport ARGS` with only `env` as its configuration (the caller's
/// KEYPORT_* variables are dropped); stdout and stderr are pipes, so not a
/// terminal.
async fn keyport(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(KEYPORT);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYPORT_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("keyport {args:?} did not finish within 120 s"))
        .expect("run the keyport binary");
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    run
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("file").permissions().mode() & 0o777
}

/// What the writer acknowledged before the backup began, and what it
/// wrote in all.
#[derive(Default)]
struct Acknowledged {
    records: Vec<String>,
    keys_created: Vec<(String, String)>,
    keys_revoked: Vec<(String, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_restores_everything_acknowledged_before_it_began() {
    let app = spawn_app(Backend::Sqlite).await;
    let integration = app
        .integration("admin", "reports:read webhooks:write keys:manage")
        .await;
    let email = integration.user.email.clone();
    let token = app.token_for(&integration).await;
    // Some bulk first, so the backup has pages to copy while writes go on.
    for batch in 0..4 {
        let records: Vec<Value> = (0..500).map(|n| json!({"batch": batch, "n": n})).collect();
        let response = app
            .push(&token, "orders", &Value::Array(records), None)
            .await;
        assert_eq!(response.status(), 201);
    }

    // The stream of writes: a push each round, a new key every third round
    // and a revocation every fifth, each noted as acknowledged before or
    // after the backup began.
    let backup_began = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(std::sync::Mutex::new(Acknowledged::default()));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (backup_began, stop, acknowledged, writes) = (
            backup_began.clone(),
            stop.clone(),
            acknowledged.clone(),
            writes.clone(),
        );
        let service = app.service();
        let client = app.client.clone();
        let push_url = app.url("/api/v1/webhooks/orders");
        let token = token.clone();
        tokio::spawn(async move {
            let mut created: Vec<(String, String)> = Vec::new();
            for round in 0..20_000u32 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let response = client
                    .post(&push_url)
                    .bearer_auth(&token)
                    .json(&json!({"round": round}))
                    .sent()
                    .await;
                assert_eq!(response.status(), 201, "push refused");
                let body: Value = response.json().await.expect("push json");
                let id = body["ids"][0].as_str().expect("id").to_owned();
                let before = !backup_began.load(Ordering::SeqCst);
                let mut key_change = None;
                if round % 3 == 0 {
                    let key = keys::create_key(
                        &service,
                        &Principal::operator(),
                        keys::NewKeyRequest {
                            owner_email: Some(&email),
                            name: "stream key",
                            scopes: Some("reports:read"),
                            expires_in: None,
                            token_ttl: None,
                            sigv4: false,
                        },
                    )
                    .await;
                    // The per-user limit refuses some: only acknowledged ones count.
                    if let Ok(key) = key {
                        let pair = (key.key.client_id.clone(), key.secret.expose().to_owned());
                        created.push(pair.clone());
                        key_change = Some((true, pair));
                    }
                } else if round % 5 == 0
                    && let Some(pair) = created.pop()
                {
                    keys::revoke_key(&service, &Principal::operator(), &pair.0)
                        .await
                        .expect("revoke");
                    key_change = Some((false, pair));
                }
                // Noted after each write was answered: "before" means the
                // answer came before the backup process was started.
                let before = before && !backup_began.load(Ordering::SeqCst);
                let mut noted = acknowledged.lock().unwrap();
                if let Some((_, (client_id, _))) = &key_change {
                    // A key revoked after the backup began may be revoked in
                    // it or not: only what was answered before is certain.
                    noted.keys_created.retain(|(c, _)| c != client_id);
                }
                if before {
                    noted.records.push(id);
                    match key_change {
                        Some((true, pair)) => noted.keys_created.push(pair),
                        Some((false, pair)) => noted.keys_revoked.push(pair),
                        None => {}
                    }
                }
                drop(noted);
                writes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Writes are going on when the backup starts, and still after it ends.
    while writes.load(Ordering::SeqCst) < 30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = app.db.sqlite_dir().expect("a SQLite test").clone();
    let backup_file = dir.join("backup.db");
    let env = [("KEYPORT_DATABASE_URL", app.db.url.as_str())];
    backup_began.store(true, Ordering::SeqCst);
    let run = keyport(&["backup", backup_file.to_str().unwrap()], &env).await;
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let after_backup = writes.load(Ordering::SeqCst);
    while writes.load(Ordering::SeqCst) < after_backup + 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer finished");
    assert_eq!(mode(&backup_file), 0o600, "a backup is for its owner only");
    assert!(!dir.join("backup.db.partial").exists());

    // Restoring into a new data directory: with the wrong master key, and
    // with none, it is refused, saying why, and nothing is written.
    let restored_db = Arc::new(TestDatabase::create(Backend::Sqlite).await);
    let restored_dir = restored_db.sqlite_dir().unwrap().clone();
    let restore_env = [("KEYPORT_DATABASE_URL", restored_db.url.as_str())];
    let wrong = keyport(
        &["restore", backup_file.to_str().unwrap()],
        &[restore_env[0], ("KEYPORT_MASTER_KEY", TEST_MASTER_KEY)],
    )
    .await;
    assert_eq!(wrong.code, Some(1), "{}", wrong.describe());
    assert!(
        wrong.stderr.contains("does not open the backup")
            && wrong.stderr.contains("nothing was changed"),
        "{}",
        wrong.describe()
    );
    assert!(!restored_dir.exists(), "a refused restore writes nothing");
    let wrong_json = keyport(
        &["--json", "restore", backup_file.to_str().unwrap()],
        &[restore_env[0], ("KEYPORT_MASTER_KEY", TEST_MASTER_KEY)],
    )
    .await;
    let doc: Value = serde_json::from_str(wrong_json.stdout.trim()).expect("one JSON document");
    assert_eq!(doc["error"], "wrong_master_key");
    let keyless = keyport(&["restore", backup_file.to_str().unwrap()], &restore_env).await;
    assert_eq!(keyless.code, Some(1), "{}", keyless.describe());
    assert!(
        keyless.stderr.contains("no master key is configured"),
        "{}",
        keyless.describe()
    );
    assert!(!restored_dir.exists(), "a refused restore writes nothing");

    // With the key the backup was taken with beside the new database.
    std::fs::create_dir_all(&restored_dir).unwrap();
    std::fs::copy(
        dir.join("keyport.master-key"),
        restored_dir.join("keyport.master-key"),
    )
    .unwrap();
    std::fs::set_permissions(
        restored_dir.join("keyport.master-key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let restored = keyport(&["restore", backup_file.to_str().unwrap()], &restore_env).await;
    assert_eq!(restored.code, Some(0), "{}", restored.describe());
    assert_eq!(mode(&restored_dir.join("keyport.db")), 0o600);
    // Restoring again would replace a database: refused.
    let again = keyport(&["restore", backup_file.to_str().unwrap()], &restore_env).await;
    assert_eq!(again.code, Some(1), "{}", again.describe());
    assert!(
        again.stderr.contains("already a database"),
        "{}",
        again.describe()
    );

    let new_app = spawn_app_on(
        restored_db,
        &[("KEYPORT_ISSUER", app.settings.tokens.issuer.as_str())],
    )
    .await;

    // The old server's token verifies against the new server's JWKS, and
    // the new server accepts it.
    let jwks: JwkSet =
        serde_json::from_value(json_body(new_app.get("/.well-known/jwks.json").await).await)
            .expect("a JWK set");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("the old server's signing key is published by the restored one");
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&new_app.settings.tokens.issuer]);
    validation.set_audience(&[&new_app.settings.tokens.audience]);
    jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the old token verifies against the restored JWKS");

    // Every acknowledged record is there.
    let present: std::collections::HashSet<String> = new_app
        .pull_all_ids(&token, "orders", 500)
        .await
        .into_iter()
        .collect();
    let noted = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(!noted.records.is_empty());
    for id in &noted.records {
        assert!(
            present.contains(id),
            "record {id} was acknowledged before the backup began"
        );
    }
    // Keys created before it get tokens; keys revoked before it do not.
    assert!(!noted.keys_created.is_empty() && !noted.keys_revoked.is_empty());
    let (created, revoked) = (noted.keys_created, noted.keys_revoked);
    for (client_id, secret) in &created {
        let response = new_app.request_token(client_id, secret).await;
        assert_eq!(
            response.status(),
            200,
            "key {client_id} was created before the backup"
        );
    }
    for (client_id, secret) in &revoked {
        let response = new_app.request_token(client_id, secret).await;
        assert_ne!(
            response.status(),
            200,
            "key {client_id} was revoked before the backup"
        );
    }
}

#[tokio::test]
async fn postgres_backups_are_refused_pointing_at_pg_dump() {
    let env = [
        (
            "KEYPORT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("KEYPORT_MASTER_KEY", TEST_MASTER_KEY),
    ];
    for command in ["backup", "restore"] {
        let run = keyport(&[command, "/nonexistent/backup.db"], &env).await;
        assert_eq!(run.code, Some(1), "{}", run.describe());
        assert!(
            run.stderr.contains("pg_dump") && run.stderr.contains("Backups and upgrades"),
            "{}",
            run.describe()
        );
        let json = keyport(&["--json", command, "/nonexistent/backup.db"], &env).await;
        let doc: Value = serde_json::from_str(json.stdout.trim()).expect("one JSON document");
        assert_eq!(doc["error"], "unsupported_backend");
    }
}

#[tokio::test]
async fn a_backup_never_replaces_a_file_and_a_restore_refuses_what_is_not_a_backup() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let env = [("KEYPORT_DATABASE_URL", db.url.as_str())];
    assert_eq!(keyport(&["migrate"], &env).await.code, Some(0));
    let dir = db.sqlite_dir().unwrap();
    let taken = dir.join("taken");
    std::fs::write(&taken, b"keep me").unwrap();
    let run = keyport(&["backup", taken.to_str().unwrap()], &env).await;
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(run.stderr.contains("never replaces"), "{}", run.describe());
    assert_eq!(std::fs::read(&taken).unwrap(), b"keep me");

    let other = TestDatabase::create(Backend::Sqlite).await;
    let run = keyport(
        &["restore", taken.to_str().unwrap()],
        &[("KEYPORT_DATABASE_URL", other.url.as_str())],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("is not a Keyport backup"),
        "{}",
        run.describe()
    );
    assert!(!other.sqlite_dir().unwrap().exists());
}

/// The plain lines a long command prints when stderr is not a terminal,
/// and the silence of `--json`.
#[tokio::test]
async fn long_commands_print_plain_progress_lines_and_nothing_extra_with_json() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let env = [("KEYPORT_DATABASE_URL", db.url.as_str())];
    let dir = db.sqlite_dir().unwrap().clone();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();

    let migrate = keyport(&["migrate"], &env).await;
    assert_eq!(migrate.code, Some(0), "{}", migrate.describe());
    let lines: Vec<&str> = migrate
        .stderr
        .lines()
        .filter(|l| l.starts_with("migrate: "))
        .collect();
    assert_eq!(
        lines.first(),
        Some(&format!("migrate: 0/{migrations} migrations (0%)").as_str())
    );
    assert!(
        lines.last().unwrap().starts_with(&format!(
            "migrate: {migrations}/{migrations} migrations (100%) in "
        )),
        "{}",
        migrate.describe()
    );

    // A signing key: a sealed value for the rotation to walk.
    let signing = keyport(&["signing-key", "rotate"], &env).await;
    assert_eq!(signing.code, Some(0), "{}", signing.describe());
    let file = dir.join("b1.db");
    let backup = keyport(&["backup", file.to_str().unwrap()], &env).await;
    assert_eq!(backup.code, Some(0), "{}", backup.describe());
    let end = backup
        .stderr
        .lines()
        .rfind(|l| l.starts_with("backup: "))
        .expect("a progress line");
    let pages = end
        .strip_prefix("backup: ")
        .and_then(|rest| rest.split_once('/'))
        .map(|(done, _)| done.to_owned())
        .unwrap();
    assert!(
        end.starts_with(&format!("backup: {pages}/{pages} pages (100%) in ")),
        "{end}"
    );

    let rotate = keyport(&["master-key", "rotate"], &env).await;
    assert_eq!(rotate.code, Some(0), "{}", rotate.describe());
    assert!(
        rotate
            .stderr
            .lines()
            .any(|l| l.starts_with("master-key rotate: ") && l.contains("values (100%) in ")),
        "{}",
        rotate.describe()
    );

    let other = TestDatabase::create(Backend::Sqlite).await;
    std::fs::create_dir_all(other.sqlite_dir().unwrap()).unwrap();
    std::fs::copy(
        dir.join("keyport.master-key"),
        other.sqlite_dir().unwrap().join("keyport.master-key"),
    )
    .unwrap();
    let restore_env = [("KEYPORT_DATABASE_URL", other.url.as_str())];
    let restore = keyport(&["restore", file.to_str().unwrap()], &restore_env).await;
    assert_eq!(restore.code, Some(0), "{}", restore.describe());
    let size = std::fs::metadata(&file).unwrap().len();
    let lines: Vec<&str> = restore
        .stderr
        .lines()
        .filter(|l| l.starts_with("restore: "))
        .collect();
    assert_eq!(
        lines.first(),
        Some(&format!("restore: 0/{size} bytes (0%)").as_str())
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("restore: {size}/{size} bytes (100%) in ")),
        "{}",
        restore.describe()
    );

    // With --json: stdout is one document and no progress line is printed.
    let quiet = TestDatabase::create(Backend::Sqlite).await;
    let quiet_env = [("KEYPORT_DATABASE_URL", quiet.url.as_str())];
    let file2 = dir.join("b2.db");
    for (args, environment) in [
        (vec!["--json", "migrate"], &quiet_env),
        (vec!["--json", "master-key", "rotate"], &quiet_env),
        (vec!["--json", "backup", file2.to_str().unwrap()], &env),
    ] {
        let run = keyport(&args, environment).await;
        assert_eq!(run.code, Some(0), "{}", run.describe());
        let doc: Value = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|_| panic!("one JSON document: {}", run.describe()));
        assert!(doc.is_object());
        for label in ["migrate: ", "backup: ", "restore: ", "master-key rotate: "] {
            assert!(
                !run.stderr.lines().any(|l| l.starts_with(label)),
                "{args:?} printed progress: {}",
                run.describe()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = app.url("/readyz");
    let ready = keyport(&["healthcheck", "--url", &url], &[]).await;
    assert_eq!(ready.code, Some(0), "{}", ready.describe());
    assert!(ready.stdout.contains("ready"), "{}", ready.describe());
    // Without --url it asks loopback at bind's port.
    let bind = format!("0.0.0.0:{}", app.port);
    let derived = keyport(&["--json", "healthcheck"], &[("KEYPORT_BIND", &bind)]).await;
    assert_eq!(derived.code, Some(0), "{}", derived.describe());
    let doc: Value = serde_json::from_str(derived.stdout.trim()).unwrap();
    assert_eq!(doc["url"], format!("http://127.0.0.1:{}/readyz", app.port));

    // Up but not ready: the database is gone, so /readyz answers 503.
    app.store.close().await;
    let not_ready = keyport(&["healthcheck", "--url", &url], &[]).await;
    assert_eq!(not_ready.code, Some(1), "{}", not_ready.describe());
    assert!(not_ready.stderr.contains("503"), "{}", not_ready.describe());

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = keyport(
        &[
            "--json",
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/readyz"),
        ],
        &[],
    )
    .await;
    assert_eq!(down.code, Some(1), "{}", down.describe());
    let doc: Value = serde_json::from_str(down.stdout.trim()).unwrap();
    assert_eq!(doc["error"], "not_ready");
}
