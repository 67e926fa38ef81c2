//! The `keyport` binary itself: admin commands, their JSON and human output,
//! their errors and exit codes, `migrate`, and `serve` answering a real
//! `curl`. Every test gets a database of its own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::Sent as _;
use crate::helpers::{Backend, TestDatabase, master_key_env};

const KEYPORT: &str = env!("CARGO_BIN_EXE_keyport");

/// One finished run of the binary.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(args: &[&str], output: std::process::Output) -> Run {
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "keyport {:?} exited with {:?}\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        self
    }

    fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    /// stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}): {}", self.describe())
        })
    }

    fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The binary, pointed at a database of its own.
/// The arguments of `keyport key create` for `email`'s key `name`.
fn key_create_args<'a>(email: &'a str, name: &'a str, options: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["key", "create", "--user", email, "--name", name];
    args.extend_from_slice(options);
    args
}

struct Keyport {
    db: TestDatabase,
    env: Vec<(String, String)>,
}

impl Keyport {
    async fn new(backend: Backend) -> Self {
        Self::with_env(backend, &[]).await
    }

    /// A migrated database: admin commands open an existing one and never
    /// create it, so the test makes it first as an operator would.
    async fn with_env(backend: Backend, env: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create(backend).await;
        let keyport = Self::on(db, env);
        keyport.run(&["migrate"]).await.assert_success();
        keyport
    }

    fn on(db: TestDatabase, env: &[(&str, &str)]) -> Self {
        let mut vars = vec![
            ("KEYPORT_DATABASE_URL".to_owned(), db.url.clone()),
            ("KEYPORT_BIND".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "KEYPORT_DATABASE_MAX_CONNECTIONS".to_owned(),
                "2".to_owned(),
            ),
            ("KEYPORT_WORKERS".to_owned(), "1".to_owned()),
        ];
        vars.extend(master_key_env(&db.url));
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Keyport { db, env: vars }
    }

    /// A command for the binary: the caller's KEYPORT_* variables are
    /// dropped so only this test's configuration applies.
    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(KEYPORT);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KEYPORT_") {
                command.env_remove(name);
            }
        }
        // The serve test reads the `listening on port N` info line.
        command.env("RUST_LOG", "info");
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::from(self.command());
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("keyport {args:?} did not finish within 60 s"))
            .expect("run the keyport binary");
        let run = Run::of(args, output);
        // Whatever the input, the binary never panics.
        assert!(!run.stderr.contains("panicked"), "{}", run.describe());
        assert!(run.code.is_some(), "killed by a signal: {}", run.describe());
        run
    }

    /// Runs `--json ARGS`, asserts success and returns the document.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&all).await.assert_success().json()
    }

    /// Runs `--json ARGS`, asserts it fails with exit code 1 and returns
    /// the error document (`{"error", "message"}`).
    async fn refusal(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.run(&all).await.assert_exit(1).json()
    }

    /// A database whose trusted issuers may be plain http on loopback (the
    /// JWKS URLs in these tests are never fetched).
    async fn for_exchange(backend: Backend) -> Self {
        Self::with_env(
            backend,
            &[
                ("KEYPORT_EXCHANGE_ALLOW_HTTP", "true"),
                ("KEYPORT_EXCHANGE_ALLOW_PRIVATE_TARGETS", "true"),
            ],
        )
        .await
    }

    /// `issuer add` for `tenant`: trusts `iss` for `audience`.
    async fn trust(&self, tenant: &str, iss: &str, audience: &str) -> Value {
        self.json(&[
            "issuer",
            "add",
            "--tenant",
            tenant,
            "--issuer",
            iss,
            "--jwks-url",
            "http://127.0.0.1:9/jwks.json",
            "--audience",
            audience,
        ])
        .await
    }

    async fn tenant(&self, name: &str) -> Value {
        self.json(&["tenant", "create", name]).await
    }

    async fn user(&self, tenant: &str, email: &str, role: &str, permissions: &str) -> Value {
        self.json(&[
            "user",
            "create",
            "--tenant",
            tenant,
            "--email",
            email,
            "--role",
            role,
            "--permissions",
            permissions,
        ])
        .await
    }

    async fn key(&self, email: &str, name: &str) -> Value {
        self.key_with(email, name, &[]).await
    }

    /// `keyport key create --user <email> --name <name> <options…>`, as run.
    async fn key_create(&self, email: &str, name: &str, options: &[&str]) -> Run {
        self.run(&key_create_args(email, name, options)).await
    }

    /// `keyport key create` with `options`, which must succeed: its JSON.
    async fn key_with(&self, email: &str, name: &str, options: &[&str]) -> Value {
        self.json(&key_create_args(email, name, options)).await
    }

    /// A tenant and an admin user with every permission; returns the email.
    async fn owner(&self) -> (Value, String) {
        let suffix = Uuid::new_v4().simple().to_string();
        let tenant = self.tenant(&format!("Acme {suffix}")).await;
        let email = format!("ops-{suffix}@example.com");
        self.user(
            str_of(&tenant, "id"),
            &email,
            "admin",
            "reports:read,webhooks:write,keys:manage",
        )
        .await;
        (tenant, email)
    }

    async fn keys_of(&self, email: &str) -> Vec<Value> {
        let listing = self.json(&["key", "list", "--user", email]).await;
        listing["keys"].as_array().expect("keys array").clone()
    }
}

fn str_of<'a>(doc: &'a Value, field: &str) -> &'a str {
    doc[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` is not a string in {doc}"))
}

/// The value after `label` on a line of human output, e.g. `client_id:`.
fn labelled(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
}

fn key_with_client_id<'a>(keys: &'a [Value], client_id: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["client_id"] == client_id)
        .unwrap_or_else(|| panic!("{client_id} is not listed in {keys:?}"))
}

/// True when `text` holds a run of 64 hex digits, the shape of a SHA-256.
fn has_hex_digest(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run += 1;
            if run >= 64 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Every object key in `doc`, at any depth.
fn field_names(doc: &Value, out: &mut Vec<String>) {
    match doc {
        Value::Object(map) => {
            for (name, value) in map {
                out.push(name.clone());
                field_names(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| field_names(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------- tenants, users

async fn a_tenant_created_from_the_cli_reports_its_id(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let tenant = keyport.tenant("Acme Corp").await;
    assert_eq!(tenant["name"], "Acme Corp");
    let id = str_of(&tenant, "id");
    assert!(Uuid::parse_str(id).is_ok(), "tenant id is a UUID: {tenant}");

    let human = keyport.run(&["tenant", "create", "Globex"]).await;
    human.assert_success();
    assert!(
        human.stdout.contains("created tenant Globex ("),
        "{}",
        human.describe()
    );

    // Names are unique: a second Acme Corp is a conflict, not a crash.
    assert_eq!(
        keyport.refusal(&["tenant", "create", "Acme Corp"]).await["error"],
        "conflict"
    );
}

async fn a_user_is_created_in_a_tenant_named_by_name_or_by_id(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let tenant = keyport.tenant("Initech").await;
    let tenant_id = str_of(&tenant, "id");

    let by_name = keyport
        .user(
            "Initech",
            "peter@initech.example",
            "admin",
            "reports:read,webhooks:write",
        )
        .await;
    let by_id = keyport
        .user(
            tenant_id,
            "milton@initech.example",
            "member",
            "reports:read",
        )
        .await;

    for (user, email, role) in [
        (&by_name, "peter@initech.example", "admin"),
        (&by_id, "milton@initech.example", "member"),
    ] {
        assert!(Uuid::parse_str(str_of(user, "id")).is_ok(), "{user}");
        assert_eq!(user["tenant_id"], tenant_id, "{user}");
        assert_eq!(user["email"], email, "{user}");
        assert_eq!(user["role"], role, "{user}");
        assert_eq!(user["status"], "active", "{user}");
    }
    assert_eq!(
        by_name["permissions"],
        serde_json::json!(["reports:read", "webhooks:write"])
    );
    assert_eq!(by_id["permissions"], serde_json::json!(["reports:read"]));
    assert_ne!(by_name["id"], by_id["id"]);

    let human = keyport
        .run(&[
            "user",
            "create",
            "--tenant",
            "Initech",
            "--email",
            "bill@initech.example",
            "--role",
            "member",
        ])
        .await;
    human.assert_success();
    assert!(
        human
            .stdout
            .contains("created member bill@initech.example (")
            && human.stdout.contains("with permissions: none"),
        "{}",
        human.describe()
    );
}

// ---------------------------------------------------------------- keys

async fn a_created_key_carries_its_client_id_and_a_kps_secret_in_json(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (tenant, email) = keyport.owner().await;

    let created = keyport
        .key_with(
            &email,
            "ERP nightly sync",
            &[
                "--scopes",
                "reports:read,webhooks:write",
                "--expires-in",
                "30d",
                "--ttl",
                "600s",
            ],
        )
        .await;
    assert!(Uuid::parse_str(str_of(&created, "id")).is_ok(), "{created}");
    let client_id = str_of(&created, "client_id");
    let secret = str_of(&created, "client_secret");
    assert!(client_id.starts_with("kpc_"), "{created}");
    assert!(secret.starts_with("kps_"), "{created}");
    assert!(secret.len() > 32, "a secret with real entropy: {created}");
    assert!(!secret.contains(client_id) && !client_id.contains(secret));
    // The webhook-signing key derived from the secret, shown with it once.
    let whsec = str_of(&created, "webhook_signing_key");
    assert!(
        whsec.starts_with("whsec_") && whsec.len() == 50,
        "{created}"
    );
    assert_eq!(created["has_webhook_signing_key"], true);
    assert_eq!(created["name"], "ERP nightly sync");
    assert_eq!(created["owner_email"], email.as_str());
    assert_eq!(created["tenant_id"], tenant["id"]);
    assert_eq!(
        created["scopes"],
        serde_json::json!(["reports:read", "webhooks:write"])
    );
    assert_eq!(created["token_ttl_seconds"], 600);
    assert_eq!(created["status"], "active");
    let created_at = created["created_at"].as_i64().expect("created_at");
    assert_eq!(
        created["expires_at"].as_i64().expect("expires_at"),
        created_at + 30 * 86_400,
        "{created}"
    );

    // Without options the key inherits the owner's permissions and never expires.
    let plain = keyport.key(&email, "plain").await;
    assert_eq!(plain["scopes"], Value::Null, "{plain}");
    assert_eq!(plain["expires_at"], Value::Null, "{plain}");
    assert_eq!(plain["token_ttl_seconds"], Value::Null, "{plain}");
    assert_ne!(plain["client_secret"], created["client_secret"]);
    assert_ne!(plain["client_id"], created["client_id"]);
}

async fn key_create_sigv4_allows_signing_and_listings_say_which_keys_do(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let signing = keyport.key_with(&email, "SQL Account", &["--sigv4"]).await;
    assert_eq!(signing["sigv4"], true, "{signing}");
    let plain = keyport.key(&email, "plain").await;
    assert_eq!(plain["sigv4"], false, "{plain}");
    let keys = keyport.keys_of(&email).await;
    assert_eq!(
        key_with_client_id(&keys, str_of(&signing, "client_id"))["sigv4"],
        true
    );
    assert_eq!(
        key_with_client_id(&keys, str_of(&plain, "client_id"))["sigv4"],
        false
    );
    let listing = keyport.run(&["key", "list", "--user", &email]).await;
    listing.assert_success();
    let line = listing
        .stdout
        .lines()
        .find(|l| l.contains(str_of(&signing, "client_id")))
        .expect("the SigV4 key's line")
        .to_owned();
    assert!(line.ends_with(" sigv4"), "{line}");
    let human = keyport
        .run(&[
            "key", "create", "--user", &email, "--name", "human", "--sigv4",
        ])
        .await;
    human.assert_success();
    assert!(
        human
            .stdout
            .contains("curl --aws-sigv4 \"aws:amz:us-east-1:keyport\""),
        "{}",
        human.stdout
    );
    // Rolling keeps SigV4 allowed.
    keyport
        .json(&["key", "revoke", str_of(&plain, "client_id")])
        .await;
    let rolled = keyport
        .json(&["key", "roll", str_of(&signing, "client_id")])
        .await;
    assert_eq!(rolled["sigv4"], true, "{rolled}");
}

async fn without_json_key_create_shows_the_client_id_and_the_secret_once(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;

    let run = keyport
        .key_create(&email, "Billing export", &["--ttl", "10m"])
        .await;
    run.assert_success();
    let client_id = labelled(&run.stdout, "client_id:");
    let secret = labelled(&run.stdout, "client_secret:");
    assert!(client_id.starts_with("kpc_"), "{}", run.describe());
    assert!(secret.starts_with("kps_"), "{}", run.describe());
    assert_eq!(run.stdout.matches(&secret).count(), 1, "{}", run.describe());
    assert!(
        !run.stderr.contains(&secret),
        "the secret never reaches the log: {}",
        run.describe()
    );
    assert!(run.stdout.contains("Billing export"), "{}", run.describe());

    // The printed client ID is the stored key's, with the 10-minute lifetime.
    let keys = keyport.keys_of(&email).await;
    let listed = key_with_client_id(&keys, &client_id);
    assert_eq!(listed["token_ttl_seconds"], 600, "{listed}");
    assert_eq!(listed["status"], "active");
}

async fn key_listings_never_show_the_secret_or_its_digest(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (tenant, email) = keyport.owner().await;
    let (_, stranger) = keyport.owner().await;

    let kept = keyport.key(&email, "kept").await;
    let revoked = keyport.key(&email, "retired").await;
    let foreign = keyport.key(&stranger, "someone else's").await;
    keyport
        .json(&["key", "revoke", str_of(&revoked, "client_id")])
        .await;

    let secrets: Vec<String> = [&kept, &revoked, &foreign]
        .iter()
        .map(|k| str_of(k, "client_secret").to_owned())
        .collect();
    let digests: Vec<String> = secrets
        .iter()
        .map(|s| {
            keyport::domain::ClientSecret::parse(s)
                .expect("a printed secret parses")
                .digest()
                .to_hex()
        })
        .collect();

    let by_user = keyport
        .run(&["--json", "key", "list", "--user", &email])
        .await;
    let by_tenant_name = keyport
        .run(&["--json", "key", "list", "--tenant", str_of(&tenant, "name")])
        .await;
    let by_tenant_id = keyport
        .run(&["--json", "key", "list", "--tenant", str_of(&tenant, "id")])
        .await;
    let human = keyport.run(&["key", "list", "--user", &email]).await;
    let everything = keyport.run(&["--json", "key", "list"]).await;

    for run in [
        &by_user,
        &by_tenant_name,
        &by_tenant_id,
        &human,
        &everything,
    ] {
        run.assert_success();
        for (secret, digest) in secrets.iter().zip(&digests) {
            assert!(
                !run.output().contains(secret.as_str()),
                "secret listed: {}",
                run.describe()
            );
            assert!(
                !run.output().contains(digest.as_str()),
                "digest listed: {}",
                run.describe()
            );
        }
        assert!(!run.output().contains("kps_"), "{}", run.describe());
        assert!(
            !has_hex_digest(&run.output()),
            "a digest-like value: {}",
            run.describe()
        );
    }
    for run in [&by_user, &by_tenant_name, &by_tenant_id, &everything] {
        let mut names = Vec::new();
        field_names(&run.json(), &mut names);
        assert!(
            !names
                .iter()
                .any(|n| n.contains("secret") || n.contains("digest") || n.contains("hash")),
            "fields {names:?} in {}",
            run.describe()
        );
    }

    for run in [&by_user, &by_tenant_name, &by_tenant_id] {
        let keys = run.json()["keys"].as_array().expect("keys").clone();
        assert_eq!(
            keys.len(),
            2,
            "only this owner's tenant: {}",
            run.describe()
        );
        assert_eq!(
            key_with_client_id(&keys, str_of(&kept, "client_id"))["status"],
            "active"
        );
        let gone = key_with_client_id(&keys, str_of(&revoked, "client_id"));
        assert_eq!(gone["status"], "revoked", "{gone}");
        assert_eq!(gone["revoked_by"], "cli", "{gone}");
        assert!(
            !run.stdout.contains(str_of(&foreign, "client_id")),
            "{}",
            run.describe()
        );
    }
    let all = everything.json()["keys"].as_array().expect("keys").clone();
    assert_eq!(all.len(), 3, "{}", everything.describe());

    // The human listing names both keys with their status.
    let kept_line = human
        .stdout
        .lines()
        .find(|l| l.contains(str_of(&kept, "client_id")))
        .unwrap_or_else(|| panic!("{}", human.describe()));
    assert!(kept_line.contains("active"), "{kept_line}");
    let revoked_line = human
        .stdout
        .lines()
        .find(|l| l.contains(str_of(&revoked, "client_id")))
        .unwrap_or_else(|| panic!("{}", human.describe()));
    assert!(revoked_line.contains("revoked"), "{revoked_line}");
}

/// `at` (Unix seconds) as human output prints it, without the relative part.
fn rfc3339(at: &Value) -> String {
    let seconds = at
        .as_i64()
        .unwrap_or_else(|| panic!("not Unix seconds: {at}"));
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("a time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn human_output_shows_rfc3339_utc_times_with_a_hint_and_json_keeps_unix_seconds(
    backend: Backend,
) {
    let keyport = Keyport::new(backend).await;
    let (tenant, email) = keyport.owner().await;
    let key = keyport
        .key_with(&email, "dated", &["--expires-in", "90d"])
        .await;
    assert!(
        key["expires_at"].is_i64(),
        "--json keeps Unix seconds: {key}"
    );
    let listing = keyport.run(&["key", "list", "--user", &email]).await;
    listing.assert_success();
    let expires = format!("expires {}", rfc3339(&key["expires_at"]));
    assert!(
        listing.stdout.contains(&format!("{expires} (in 89 days)"))
            || listing.stdout.contains(&format!("{expires} (in 90 days)")),
        "{}",
        listing.describe()
    );
    let listed = keyport.json(&["key", "list", "--user", &email]).await;
    assert_eq!(
        listed["keys"][0]["expires_at"], key["expires_at"],
        "{listed}"
    );

    // The old key of a roll: when it stops working.
    let rolled = keyport
        .run(&["key", "roll", str_of(&key, "client_id"), "--grace", "3d"])
        .await;
    rolled.assert_success();
    let keys = keyport.keys_of(&email).await;
    let old = key_with_client_id(&keys, str_of(&key, "client_id"));
    let until = format!("keeps working until {} (in ", rfc3339(&old["expires_at"]));
    assert!(rolled.stdout.contains(&until), "{}", rolled.describe());
    assert!(
        !rolled.stdout.contains("Unix seconds"),
        "{}",
        rolled.describe()
    );

    // A new user's set-password token: until when.
    let user = keyport
        .run(&[
            "user",
            "create",
            "--tenant",
            str_of(&tenant, "id"),
            "--email",
            "dated@example.com",
            "--role",
            "member",
        ])
        .await;
    user.assert_success();
    let doc = keyport
        .run(&[
            "--json",
            "user",
            "create",
            "--tenant",
            str_of(&tenant, "id"),
            "--email",
            "dated2@example.com",
            "--role",
            "member",
        ])
        .await;
    assert!(
        doc.json()["set_password_expires_at"].is_i64(),
        "{}",
        doc.describe()
    );
    assert!(
        user.stdout.contains("Z (in "),
        "an RFC 3339 time and a hint: {}",
        user.describe()
    );
}

async fn tenants_and_their_users_are_listed_from_the_cli(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let empty = keyport.json(&["tenant", "list"]).await;
    assert_eq!(empty["tenants"], serde_json::json!([]), "{empty}");
    let (tenant, email) = keyport.owner().await;
    let other = keyport.tenant("Initech").await;

    let listed = keyport.json(&["tenant", "list"]).await;
    let names: Vec<&str> = listed["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| str_of(t, "name"))
        .collect();
    assert!(names.contains(&str_of(&tenant, "name")), "{listed}");
    assert!(names.contains(&"Initech"), "{listed}");
    let human = keyport.run(&["tenant", "list"]).await;
    human.assert_success();
    assert!(
        human
            .stdout
            .contains(&format!("{}  Initech  created ", str_of(&other, "id")))
            && human.stdout.contains("Z ("),
        "{}",
        human.describe()
    );

    let users = keyport
        .json(&["user", "list", "--tenant", str_of(&tenant, "id")])
        .await;
    assert_eq!(users["users"][0]["email"], email.as_str(), "{users}");
    assert_eq!(users["users"].as_array().map(Vec::len), Some(1), "{users}");
    let human = keyport.run(&["user", "list", "--tenant", "Initech"]).await;
    human.assert_success();
    assert!(
        human.stdout.contains("no users in Initech"),
        "{}",
        human.describe()
    );

    // input: a tenant that does not exist
    assert_eq!(
        keyport
            .refusal(&["user", "list", "--tenant", "Nowhere"])
            .await["error"],
        "not_found"
    );
}

async fn one_key_is_shown_by_id_or_client_id_without_its_secret(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let created = keyport
        .key_with(
            &email,
            "shown",
            &["--description", "nightly export", "--expires-in", "30d"],
        )
        .await;
    let client_id = str_of(&created, "client_id");
    for reference in [client_id, str_of(&created, "id")] {
        let shown = keyport.json(&["key", "show", reference]).await;
        assert_eq!(shown["client_id"], client_id, "{shown}");
        assert_eq!(shown["expires_at"], created["expires_at"], "{shown}");
        let human = keyport.run(&["key", "show", reference]).await;
        human.assert_success();
        assert!(
            human.stdout.contains(client_id)
                && human.stdout.contains("shown")
                && human.stdout.contains("nightly export")
                && human.stdout.contains(" (in "),
            "{}",
            human.describe()
        );
        assert!(!human.stdout.contains(str_of(&created, "client_secret")));
        assert!(
            !shown
                .to_string()
                .contains(str_of(&created, "client_secret"))
        );
    }
    // input: a client ID that does not exist
    assert_eq!(
        keyport.refusal(&["key", "show", "kpc_nothere"]).await["error"],
        "not_found"
    );
}

async fn a_key_is_revoked_by_client_id_and_revoking_it_twice_fails(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    // The owner's first key signs their webhooks, which guards it against
    // revocation; revoke a second one.
    keyport.key(&email, "webhook signer").await;
    let key = keyport.key(&email, "to revoke").await;
    let client_id = str_of(&key, "client_id");

    let revoked = keyport.json(&["key", "revoke", client_id]).await;
    assert_eq!(revoked["id"], key["id"], "{revoked}");
    assert_eq!(revoked["status"], "revoked", "{revoked}");
    assert_eq!(revoked["revoked_by"], "cli", "{revoked}");
    assert!(revoked["revoked_at"].as_i64().is_some(), "{revoked}");
    assert!(revoked.get("client_secret").is_none(), "{revoked}");

    let error = keyport.refusal(&["key", "revoke", client_id]).await;
    assert_eq!(error["error"], "conflict", "{error}");
    assert!(
        str_of(&error, "message").contains("already revoked")
            && str_of(&error, "message").contains(client_id),
        "{error}"
    );

    let human = keyport.run(&["key", "revoke", str_of(&key, "id")]).await;
    human.assert_exit(1);
    assert!(
        human.stderr.contains("already revoked"),
        "{}",
        human.describe()
    );

    // Still listed, as revoked: the row stays for the audit trail.
    let keys = keyport.keys_of(&email).await;
    assert_eq!(key_with_client_id(&keys, client_id)["status"], "revoked");
}

async fn a_key_is_deleted_by_id_and_an_unknown_key_is_a_clear_error(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    // The first key signs the owner's webhooks; delete the second.
    let kept = keyport.key(&email, "kept").await;
    let doomed = keyport.key(&email, "doomed").await;
    let id = str_of(&doomed, "id");

    let deleted = keyport.json(&["key", "delete", id]).await;
    assert_eq!(deleted["deleted"], true, "{deleted}");
    assert_eq!(deleted["id"], id, "{deleted}");
    assert_eq!(deleted["client_id"], doomed["client_id"], "{deleted}");

    let keys = keyport.keys_of(&email).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["id"], kept["id"]);

    // Deleting it again: exit 1 and a message naming the key.
    let again = keyport.run(&["key", "delete", id]).await;
    again.assert_exit(1);
    assert!(
        again.stderr.contains("no key") && again.stderr.contains(id),
        "{}",
        again.describe()
    );

    let unknown = "kpc_doesnotexist";
    let human = keyport.run(&["key", "delete", unknown]).await;
    human.assert_exit(1);
    assert!(human.stderr.contains(unknown), "{}", human.describe());
    assert_eq!(
        human.stderr.matches("no key with id").count(),
        1,
        "the message is printed once: {}",
        human.describe()
    );
    let error = keyport.refusal(&["key", "delete", unknown]).await;
    assert_eq!(error["error"], "not_found", "{error}");
    assert!(str_of(&error, "message").contains(unknown), "{error}");

    // The other key was not touched.
    assert_eq!(keyport.keys_of(&email).await.len(), 1);
}

async fn a_fourth_active_key_is_refused_with_a_clear_error(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    keyport.key(&email, "one").await;
    let second = keyport.key(&email, "two").await;
    keyport.key(&email, "three").await;

    let fourth = create_refused_by_the_limit(&keyport, &email, "four", 3).await;
    assert!(!fourth.to_string().contains("kps_"), "{fourth}");

    let human = keyport
        .run(&["key", "create", "--user", &email, "--name", "four"])
        .await;
    human.assert_exit(1);
    assert!(human.stderr.contains("active keys"), "{}", human.describe());
    assert_eq!(keyport.keys_of(&email).await.len(), 3);

    // Revoking one makes room.
    keyport
        .json(&["key", "revoke", str_of(&second, "client_id")])
        .await;
    let replacement = keyport.key(&email, "four").await;
    assert!(str_of(&replacement, "client_secret").starts_with("kps_"));
    let keys = keyport.keys_of(&email).await;
    assert_eq!(
        keys.iter().filter(|k| k["status"] == "active").count(),
        3,
        "{keys:?}"
    );
}

/// `key create --json` for a user already holding `active` keys: exit 1,
/// `key_limit_reached`, and a message naming the count.
async fn create_refused_by_the_limit(
    keyport: &Keyport,
    email: &str,
    name: &str,
    active: usize,
) -> Value {
    let error = keyport
        .refusal(&["key", "create", "--user", email, "--name", name])
        .await;
    assert_eq!(error["error"], "key_limit_reached", "{error}");
    assert!(
        str_of(&error, "message").contains(&format!("holds {active} active keys")),
        "{error}"
    );
    error
}

async fn a_configured_limit_of_one_active_key_refuses_the_second(backend: Backend) {
    let keyport = Keyport::with_env(backend, &[("KEYPORT_MAX_ACTIVE_KEYS_PER_USER", "1")]).await;
    let (_, email) = keyport.owner().await;
    keyport.key(&email, "only").await;

    create_refused_by_the_limit(&keyport, &email, "second", 1).await;
    assert_eq!(keyport.keys_of(&email).await.len(), 1);
}

// ---------------------------------------------------------------- bad input

async fn an_invalid_email_is_refused(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    keyport.tenant("Umbrella").await;
    let error = keyport
        .refusal(&[
            "user",
            "create",
            "--tenant",
            "Umbrella",
            "--email",
            "not-an-email",
            "--role",
            "admin",
        ])
        .await;
    assert_eq!(error["error"], "invalid_input", "{error}");
    assert!(
        str_of(&error, "message").contains("not-an-email"),
        "{error}"
    );

    let human = keyport
        .run(&[
            "user", "create", "--tenant", "Umbrella", "--email", "a@@b", "--role", "admin",
        ])
        .await;
    human.assert_exit(1);
    assert!(
        human
            .stderr
            .contains("error: `a@@b` is not an email address"),
        "{}",
        human.describe()
    );
    let keys = keyport
        .run(&["--json", "key", "list", "--tenant", "Umbrella"])
        .await;
    assert_eq!(keys.assert_success().json()["keys"], serde_json::json!([]));
}

async fn an_unknown_role_is_refused_by_the_argument_parser(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    keyport.tenant("Umbrella").await;
    let run = keyport
        .run(&[
            "user",
            "create",
            "--tenant",
            "Umbrella",
            "--email",
            "a@umbrella.example",
            "--role",
            "superuser",
        ])
        .await;
    run.assert_exit(2);
    assert!(
        run.stderr.contains("superuser")
            && run.stderr.contains("admin")
            && run.stderr.contains("member"),
        "names the bad value and the allowed ones: {}",
        run.describe()
    );
    // Nothing was created: the same email is free.
    keyport
        .user("Umbrella", "a@umbrella.example", "member", "")
        .await;
}

async fn an_unknown_tenant_is_refused(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let error = keyport
        .refusal(&[
            "user",
            "create",
            "--tenant",
            "Nobody Inc",
            "--email",
            "a@nobody.example",
            "--role",
            "admin",
        ])
        .await;
    assert_eq!(error["error"], "not_found", "{error}");
    assert!(str_of(&error, "message").contains("Nobody Inc"), "{error}");

    let listing = keyport
        .run(&["key", "list", "--tenant", "Nobody Inc"])
        .await;
    listing.assert_exit(1);
    assert!(
        listing.stderr.contains("Nobody Inc"),
        "{}",
        listing.describe()
    );

    assert_eq!(
        keyport
            .refusal(&[
                "key",
                "create",
                "--user",
                "ghost@nobody.example",
                "--name",
                "x"
            ])
            .await["error"],
        "not_found"
    );
}

async fn scopes_beyond_the_owners_permissions_are_refused(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let tenant = keyport.tenant("Hooli").await;
    keyport
        .user(
            str_of(&tenant, "id"),
            "gavin@hooli.example",
            "member",
            "reports:read",
        )
        .await;
    let run = keyport
        .run(&[
            "--json",
            "key",
            "create",
            "--user",
            "gavin@hooli.example",
            "--name",
            "greedy",
            "--scopes",
            "reports:read,webhooks:write",
        ])
        .await;
    run.assert_exit(1);
    let error = run.json();
    assert_eq!(error["error"], "invalid_input", "{error}");
    assert!(
        str_of(&error, "message").contains("webhooks:write"),
        "{error}"
    );
    assert!(!run.stdout.contains("kps_"), "{}", run.describe());
    assert!(keyport.keys_of("gavin@hooli.example").await.is_empty());

    // Within the permissions it works.
    let ok = keyport
        .key_with(
            "gavin@hooli.example",
            "modest",
            &["--scopes", "reports:read"],
        )
        .await;
    assert_eq!(ok["scopes"], serde_json::json!(["reports:read"]));
}

async fn unknown_or_mistyped_scopes_are_refused_listing_the_known_ones(backend: Backend) {
    let keyport = Keyport::for_exchange(backend).await;
    let (tenant, email) = keyport.owner().await;
    let tenant_id = str_of(&tenant, "id");
    let issuer = keyport
        .trust(tenant_id, "https://ci.example.com", "keyport-cli")
        .await;
    let issuer_id = str_of(&issuer, "id");
    // input → exit code → what the message must say
    let table: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![
                "user",
                "create",
                "--tenant",
                tenant_id,
                "--email",
                "dan@example.com",
                "--role",
                "member",
                "--permissions",
                "reports:read,foo:bar",
            ],
            1,
            "unknown scope `foo:bar`",
        ),
        (
            vec!["user", "set-permissions", &email, "Reports:Read"],
            1,
            "`Reports:Read` (did you mean reports:read?)",
        ),
        (
            vec![
                "key",
                "create",
                "--user",
                &email,
                "--name",
                "x",
                "--scopes",
                "reports:read,foo:bar",
            ],
            1,
            "unknown scope `foo:bar`",
        ),
        (
            vec![
                "issuer",
                "add-rule",
                "--tenant",
                tenant_id,
                issuer_id,
                "--claim",
                "sub=x",
                "--user",
                &email,
                "--scopes",
                "reports:read,report:write",
            ],
            1,
            "`report:write`",
        ),
    ];
    for (args, code, message) in table {
        let mut all = vec!["--json"];
        all.extend_from_slice(&args);
        let run = keyport.run(&all).await;
        run.assert_exit(code);
        let error = run.json();
        assert_eq!(error["error"], "invalid_input", "{}", run.describe());
        let text = str_of(&error, "message");
        assert!(text.contains(message), "{}", run.describe());
        assert!(
            text.contains("the scopes are reports:read, webhooks:write"),
            "lists the known scopes: {}",
            run.describe()
        );
    }
    // Nothing was granted.
    assert!(keyport.keys_of(&email).await.is_empty());
    let rules = keyport
        .json(&["issuer", "list", "--tenant", tenant_id])
        .await;
    assert_eq!(
        rules["issuers"][0]["rules"],
        serde_json::json!([]),
        "{rules}"
    );
}

async fn one_trusted_issuer_is_shown_with_its_rules(backend: Backend) {
    let keyport = Keyport::for_exchange(backend).await;
    let (tenant, email) = keyport.owner().await;
    let tenant_id = str_of(&tenant, "id");
    let issuer = keyport
        .trust(tenant_id, "https://ci.example.com", "keyport-show")
        .await;
    let issuer_id = str_of(&issuer, "id");
    let rule = keyport
        .json(&[
            "issuer",
            "add-rule",
            "--tenant",
            tenant_id,
            issuer_id,
            "--claim",
            "sub=main",
            "--user",
            &email,
            "--scopes",
            "reports:read",
        ])
        .await;
    let shown = keyport
        .json(&["issuer", "show", "--tenant", tenant_id, issuer_id])
        .await;
    assert_eq!(shown["id"], issuer_id, "{shown}");
    assert_eq!(shown["audience"], "keyport-show", "{shown}");
    assert_eq!(shown["rules"][0]["id"], rule["id"], "{shown}");
    let human = keyport
        .run(&["issuer", "show", "--tenant", tenant_id, issuer_id])
        .await;
    human.assert_success();
    assert!(
        human.stdout.contains("https://ci.example.com")
            && human
                .stdout
                .contains(&format!("rule {}", str_of(&rule, "id"))),
        "{}",
        human.describe()
    );
    // input: an id the tenant does not trust
    assert_eq!(
        keyport
            .refusal(&["issuer", "show", "--tenant", tenant_id, "nothere"])
            .await["error"],
        "not_found"
    );
}

async fn a_token_lifetime_above_the_maximum_is_refused(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let error = keyport
        .refusal(&[
            "key", "create", "--user", &email, "--name", "long", "--ttl", "7200s",
        ])
        .await;
    assert_eq!(error["error"], "invalid_input", "{error}");
    assert!(str_of(&error, "message").contains("3600"), "{error}");
    assert!(keyport.keys_of(&email).await.is_empty());

    // The maximum itself is allowed.
    let max = keyport
        .json(&[
            "key", "create", "--user", &email, "--name", "max", "--ttl", "1h",
        ])
        .await;
    assert_eq!(max["token_ttl_seconds"], 3600, "{max}");
}

async fn an_unknown_flag_is_refused_with_a_usage_error(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let run = keyport
        .run(&[
            "key", "create", "--user", &email, "--name", "x", "--colour", "blue",
        ])
        .await;
    run.assert_exit(2);
    assert!(run.stderr.contains("--colour"), "{}", run.describe());
    assert!(keyport.keys_of(&email).await.is_empty());
}

async fn an_unparseable_expiry_is_refused_with_a_usage_error(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let run = keyport
        .key_create(&email, "x", &["--expires-in", "soon"])
        .await;
    run.assert_exit(2);
    assert!(
        run.stderr.contains("soon") && run.stderr.contains("--expires-in"),
        "{}",
        run.describe()
    );
    assert!(keyport.keys_of(&email).await.is_empty());
}

/// Runs the binary in a new empty folder with none of the caller's
/// KEYPORT_* variables, so only the built-in defaults apply; returns the run
/// and the folder (removed by the caller).
async fn run_in_empty_folder(args: &[&str], env: &[(&str, &str)]) -> (Run, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("keyport-cli-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temp folder");
    let mut command = tokio::process::Command::new(KEYPORT);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYPORT_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .current_dir(&dir)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("keyport {args:?} did not finish within 60 s"))
        .expect("run the keyport binary");
    let run = Run::of(args, output);
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    (run, dir)
}

/// [`run_in_empty_folder`], the folder removed.
async fn run_without_a_database(args: &[&str], env: &[(&str, &str)]) -> Run {
    let (run, dir) = run_in_empty_folder(args, env).await;
    std::fs::remove_dir_all(&dir).ok();
    run
}

#[tokio::test]
async fn admin_commands_run_where_there_is_no_database_create_nothing_and_say_where_they_looked() {
    // input → exit code → what the output must say
    let table: &[(&[&str], &str)] = &[
        (
            &[
                "user",
                "create",
                "--tenant",
                "Acme",
                "--email",
                "ana@example.com",
                "--role",
                "member",
            ],
            "error: ",
        ),
        (&["tenant", "create", "Acme"], "error: "),
        (&["key", "list"], "error: "),
        (&["signing-key", "rotate"], "error: "),
        (
            &["--json", "key", "revoke", "kp_x"],
            "\"error\":\"no_database\"",
        ),
    ];
    for (args, shape) in table {
        // The built-in database_url, sqlite://data/keyport.db, from an empty folder.
        let (run, dir) = run_in_empty_folder(args, &[]).await;
        let made: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let looked = dir.join("data/keyport.db");
        std::fs::remove_dir_all(&dir).ok();
        run.assert_exit(1);
        assert!(made.is_empty(), "created {made:?}: {}", run.describe());
        let output = run.output();
        let where_ = format!("no database at {}", looked.display());
        for needle in [
            shape,
            where_.as_str(),
            "--config",
            "KEYPORT_DATABASE_URL",
            "keyport migrate",
        ] {
            assert!(
                output.contains(needle),
                "`{needle}` missing: {}",
                run.describe()
            );
        }
        if args[0] == "--json" {
            assert!(
                serde_json::from_str::<Value>(run.stdout.trim()).is_ok(),
                "{}",
                run.describe()
            );
        }
    }
    // `migrate` is the command that creates one.
    let (run, dir) = run_in_empty_folder(&["migrate"], &[]).await;
    let created = dir.join("data/keyport.db").is_file();
    std::fs::remove_dir_all(&dir).ok();
    run.assert_success();
    assert!(created, "{}", run.describe());
}

#[tokio::test]
async fn usage_errors_with_json_are_one_json_document_and_exit_2() {
    // input → exit code → what the message must say
    let table: &[(&[&str], i32, &str)] = &[
        (
            &[
                "--json",
                "key",
                "create",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--expires-in",
                "90",
            ],
            2,
            "did you mean 90d",
        ),
        (
            &[
                "key",
                "create",
                "--json",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--colour",
                "blue",
            ],
            2,
            "--colour",
        ),
        (
            &[
                "--json",
                "key",
                "create",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--rate",
                "600/week",
            ],
            2,
            "use s, min, h or d",
        ),
        (&["--json", "tenant"], 2, "a subcommand is needed"),
    ];
    for (args, code, message) in table {
        let run = run_without_a_database(args, &[]).await;
        run.assert_exit(*code);
        let error = run.json();
        assert_eq!(error["error"], "usage", "{}", run.describe());
        assert!(
            str_of(&error, "message").contains(message),
            "{}",
            run.describe()
        );
        assert!(
            !str_of(&error, "message").starts_with("error:"),
            "{}",
            run.describe()
        );
    }
    // Without --json the text stays clap's; help is still help.
    let run = run_without_a_database(&["key", "create", "--rate", "600/week"], &[]).await;
    run.assert_exit(2);
    assert!(
        run.stderr.contains("use s, min, h or d"),
        "{}",
        run.describe()
    );
    let run = run_without_a_database(&["--json", "key", "--help"], &[]).await;
    run.assert_success();
    assert!(run.stdout.contains("Usage:"), "{}", run.describe());
}

#[tokio::test]
async fn unknown_keyport_variables_are_warned_about_with_the_closest_known_name() {
    let env = [
        ("KEYPORT_TOKEN_TTL", "600"),
        ("KEYPORT_DATABSE_URL", "sqlite://elsewhere.db"),
        ("KEYPORT_DATABASE_URL", "sqlite://keyport.db"),
        ("KEYPORT_TOKEN_TTL_SECONDS", "600"),
        ("KEYPORT_WORKERS", "1"),
    ];
    let run = run_without_a_database(&["--json", "migrate"], &env).await;
    run.assert_success();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: KEYPORT_DATABSE_URL is not a Keyport setting; did you mean KEYPORT_DATABASE_URL?",
            "warning: KEYPORT_TOKEN_TTL is not a Keyport setting; did you mean KEYPORT_TOKEN_TTL_SECONDS?",
        ],
        "{}",
        run.describe()
    );
    // The real settings applied: the database is where KEYPORT_DATABASE_URL says.
    assert_eq!(run.json()["migrated"], true, "{}", run.describe());
}

#[tokio::test]
async fn durations_without_a_unit_or_below_zero_are_refused_with_a_hint() {
    // input → exit code → what the message must say
    let table: &[(&[&str], i32, &str)] = &[
        (&["--expires-in", "90"], 2, "did you mean 90d"),
        (&["--expires-in", "-5d"], 2, "a duration cannot be negative"),
        (&["--expires-in=-5d"], 2, "a duration cannot be negative"),
        (&["--expires-in", "-90"], 2, "a duration cannot be negative"),
        (
            &["--ttl", "600"],
            2,
            "did you mean 600d, 600h, 600m or 600s",
        ),
        (&["--ttl", "-10m"], 2, "a duration cannot be negative"),
        (&["--ttl", "ten"], 2, "use a number and a unit"),
        (&["--expires-in", ""], 2, "a duration is needed"),
    ];
    for (extra, code, message) in table {
        let mut args = vec!["key", "create", "--user", "ana@example.com", "--name", "x"];
        args.extend_from_slice(extra);
        let run = run_without_a_database(&args, &[]).await;
        run.assert_exit(*code);
        assert!(run.stderr.contains(message), "{}", run.describe());
    }
    for (grace, message) in [
        ("0", "did you mean 0d, 0h, 0m or 0s"),
        ("-1h", "a duration cannot be negative"),
    ] {
        let run = run_without_a_database(&["key", "roll", "kp_x", "--grace", grace], &[]).await;
        run.assert_exit(2);
        assert!(run.stderr.contains(message), "{}", run.describe());
    }
}

// ---------------------------------------------------------------- migrate, serve, help

async fn migrate_succeeds_on_a_fresh_database(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let run = keyport.run(&["--json", "migrate"]).await;
    run.assert_success();
    assert_eq!(run.json()["migrated"], true, "{}", run.describe());
    if let Some(dir) = keyport.db.sqlite_dir() {
        assert!(
            dir.join("keyport.db").is_file(),
            "the SQLite file was created"
        );
    }
    // Again: nothing pending is still a success, and the schema works.
    let again = keyport.run(&["migrate"]).await;
    again.assert_success();
    assert!(again.stdout.contains("up to date"), "{}", again.describe());
    keyport.owner().await;
}

/// A running `keyport serve`, killed when dropped (even when a test fails).
struct Server {
    child: Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    async fn start(keyport: &Keyport) -> Server {
        let mut child = keyport
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keyport serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let sink = std::sync::Arc::clone(&log);
        // Keep draining stderr for the server's whole life so it never blocks
        // on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
                let _ = lines_tx.send(line);
            }
        });
        let mut server = Server {
            child,
            port: 0,
            log,
        };
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines_rx.recv().await {
                if let Some((_, rest)) = line.split_once("listening on port ") {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    return digits.parse::<u16>().ok();
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(port)) if port != 0 => server.port = port,
            other => {
                let status = server.child.try_wait();
                panic!(
                    "no `listening on port N` line ({other:?}, process: {status:?}); log:\n{}",
                    server.log()
                );
            }
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn curl_token(server: &Server, client_id: &str, secret: &str) -> Value {
    let output = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-u",
            &format!("{client_id}:{secret}"),
            "-d",
            "grant_type=client_credentials",
            &server.url("/oauth/token"),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run curl (install the curl binary)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "curl failed ({}): {stdout} {}\nserver log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("curl got no JSON ({e}): {stdout}"))
}

async fn serve_starts_on_a_fresh_database_and_issues_tokens_to_curl(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    // SQLite: a file whose folders do not exist yet.
    let url = match db.sqlite_dir() {
        Some(dir) => {
            assert!(!dir.exists(), "the test folder starts absent");
            format!("sqlite://{}/nested/dir/keyport.db", dir.display())
        }
        None => db.url.clone(),
    };
    let sqlite_file = db.sqlite_dir().map(|d| d.join("nested/dir/keyport.db"));
    let keyport = Keyport::on(db, &[("KEYPORT_DATABASE_URL", url.as_str())]);

    let server = Server::start(&keyport).await;
    if let Some(file) = &sqlite_file {
        use std::os::unix::fs::PermissionsExt;
        assert!(file.is_file(), "serve created {}", file.display());
        // And the master key that seals its signing keys, beside it, owner-only.
        let master_key = file.with_file_name("keyport.master-key");
        let mode = std::fs::metadata(&master_key)
            .expect("serve created the master key beside the database")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", master_key.display());
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let health = client.get(server.url("/healthz")).sent().await;
    assert_eq!(health.status(), 200, "log:\n{}", server.log());
    let health: Value = health.json().await.expect("healthz JSON");
    assert_eq!(health["status"], "ok");

    // Keys made by the CLI while the server runs are honoured at once.
    let (_, email) = keyport.owner().await;
    // The first key signs the owner's webhooks; `key` is revoked below.
    let short = keyport
        .json(&[
            "key", "create", "--user", &email, "--name", "short", "--ttl", "2m",
        ])
        .await;
    let key = keyport
        .key_with(
            &email,
            "curl",
            &["--scopes", "reports:read", "--ttl", "600s"],
        )
        .await;

    let token = curl_token(
        &server,
        str_of(&key, "client_id"),
        str_of(&key, "client_secret"),
    )
    .await;
    assert_eq!(token["token_type"], "Bearer", "{token}");
    assert_eq!(token["expires_in"], 600, "{token}");
    assert_eq!(token["scope"], "reports:read", "{token}");
    let access_token = str_of(&token, "access_token");
    assert_eq!(access_token.split('.').count(), 3, "a JWT: {token}");

    let short_token = curl_token(
        &server,
        str_of(&short, "client_id"),
        str_of(&short, "client_secret"),
    )
    .await;
    assert_eq!(short_token["expires_in"], 120, "{short_token}");

    // A revoked key is refused by the running server: another process, so
    // within a second (its credential cache hears of the change).
    keyport
        .json(&["key", "revoke", str_of(&key, "client_id")])
        .await;
    let revoked_at = std::time::Instant::now();
    let refused = loop {
        let answer = curl_token(
            &server,
            str_of(&key, "client_id"),
            str_of(&key, "client_secret"),
        )
        .await;
        if answer.get("access_token").is_none() || revoked_at.elapsed() > Duration::from_secs(1) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused["error"], "invalid_client", "{refused}");

    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !log.contains(str_of(&key, "client_secret")),
        "secrets stay out of the log: {log}"
    );
    drop(server);
}

#[tokio::test]
async fn key_create_help_documents_expiry_and_token_lifetime() {
    let output = tokio::process::Command::new(KEYPORT)
        .args(["key", "create", "--help"])
        .output()
        .await
        .expect("run keyport --help");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for needle in ["--expires-in", "--ttl", "--user", "--name", "--scopes"] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("30d"), "an example duration:\n{stdout}");
}

async fn the_lifecycle_commands_follow_the_api_rules(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (tenant, email) = keyport.owner().await;
    let first = keyport.key(&email, "first").await;
    let second = keyport.key(&email, "second").await;
    assert_eq!(first["signs_webhooks"], true, "{first}");

    // The marked key cannot be deleted, as over HTTP, until the mark moves.
    let refused = keyport
        .run(&["key", "delete", str_of(&first, "client_id")])
        .await;
    refused.assert_exit(1);
    assert!(
        refused.stderr.contains("signs webhooks"),
        "{}",
        refused.describe()
    );
    let marked = keyport
        .json(&["key", "mark-webhook-signing", str_of(&second, "client_id")])
        .await;
    assert_eq!(marked["signs_webhooks"], true, "{marked}");
    // Revocation always works; had `first` still held the mark, it would
    // have moved to `second`.
    keyport
        .json(&["key", "revoke", str_of(&first, "client_id")])
        .await;

    let disabled = keyport.json(&["user", "disable", &email]).await;
    assert_eq!(disabled["status"], "disabled", "{disabled}");
    let blocked = keyport
        .run(&["key", "create", "--user", &email, "--name", "third"])
        .await;
    blocked.assert_exit(1);
    assert!(
        blocked.stderr.contains("disabled"),
        "{}",
        blocked.describe()
    );
    let enabled = keyport.json(&["user", "enable", &email]).await;
    assert_eq!(enabled["status"], "active", "{enabled}");

    let unlocked = keyport.json(&["user", "unlock", &email]).await;
    assert_eq!(unlocked["unlocked"], true, "{unlocked}");
    let policy = keyport
        .json(&[
            "tenant",
            "set-policy",
            str_of(&tenant, "id"),
            "--api-only-users",
        ])
        .await;
    assert_eq!(policy["api_only_users"], true, "{policy}");

    let rotated = keyport.json(&["signing-key", "rotate"]).await;
    let again = keyport.json(&["signing-key", "rotate"]).await;
    assert!(rotated["kid"].is_string(), "{rotated}");
    assert_ne!(
        rotated["kid"], again["kid"],
        "each rotation makes a new key"
    );
}

/// Token-exchange trust from the CLI: an issuer and a rule added, listed
/// and removed; a malformed condition and an http issuer (not allowed by
/// default) are refused with exit code 1 and a clear message.
async fn trusted_issuers_and_rules_are_managed_from_the_cli(backend: Backend) {
    let keyport = Keyport::for_exchange(backend).await;
    keyport.tenant("Acme").await;
    keyport
        .user("Acme", "deployer@acme.example", "member", "reports:read")
        .await;
    let issuer = keyport
        .trust("Acme", "https://token.actions.example.com", "keyport-acme")
        .await;
    let issuer_id = str_of(&issuer, "id").to_owned();
    let rule = keyport
        .json(&[
            "issuer",
            "add-rule",
            "--tenant",
            "Acme",
            &issuer_id,
            "--claim",
            "sub~repo:acme/erp:ref:refs/heads/*",
            "--claim",
            "repository_owner=acme",
            "--user",
            "deployer@acme.example",
            "--scopes",
            "reports:read",
        ])
        .await;
    assert_eq!(
        rule["conditions"][0]["matches"], "repo:acme/erp:ref:refs/heads/*",
        "{rule}"
    );
    assert_eq!(rule["conditions"][1]["equals"], "acme", "{rule}");
    let listed = keyport.json(&["issuer", "list", "--tenant", "Acme"]).await;
    assert_eq!(
        listed["issuers"][0]["rules"][0]["id"], rule["id"],
        "{listed}"
    );

    let malformed = keyport
        .run(&[
            "--json",
            "issuer",
            "add-rule",
            "--tenant",
            "Acme",
            &issuer_id,
            "--claim",
            "no-operator",
            "--user",
            "deployer@acme.example",
            "--scopes",
            "reports:read",
        ])
        .await;
    malformed.assert_exit(1);
    assert!(
        malformed.output().contains("NAME=VALUE"),
        "{}",
        malformed.describe()
    );

    keyport
        .json(&[
            "issuer",
            "remove-rule",
            "--tenant",
            "Acme",
            &issuer_id,
            str_of(&rule, "id"),
        ])
        .await;
    keyport
        .json(&["issuer", "remove", "--tenant", "Acme", &issuer_id])
        .await;
    let listed = keyport.json(&["issuer", "list", "--tenant", "Acme"]).await;
    assert_eq!(listed["issuers"], serde_json::json!([]), "{listed}");

    let strict = Keyport::new(backend).await;
    strict.tenant("Beta").await;
    assert_eq!(
        strict
            .refusal(&[
                "issuer",
                "add",
                "--tenant",
                "Beta",
                "--issuer",
                "http://issuer.example.com",
                "--jwks-url",
                "https://issuer.example.com/jwks",
                "--audience",
                "a"
            ])
            .await["error"],
        "invalid_input"
    );
}

/// `key create --no-secret --public-key FILE` and `key public-key
/// add|list|remove`: no secret is printed, public keys rotate, and the last
/// one of a key without a secret stays.
async fn public_keys_are_managed_from_the_cli_and_a_key_can_have_no_secret(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let dir = std::env::temp_dir().join(format!("keyport-cli-jwk-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwk_file = |name: &str, kid: &str| {
        let (key, _) =
            keyport::tokens::SigningKey::generate(keyport::tokens::SigningAlgorithm::Es256)
                .unwrap();
        let mut jwk = serde_json::to_value(&key.jwk).unwrap();
        jwk["kid"] = serde_json::json!(kid);
        let path = dir.join(name);
        std::fs::write(&path, jwk.to_string()).unwrap();
        path.display().to_string()
    };
    let first = jwk_file("first.json", "first");
    let second = jwk_file("second.json", "second");

    let created = keyport
        .key_with(&email, "jwt only", &["--no-secret", "--public-key", &first])
        .await;
    assert!(created.get("client_secret").is_none(), "{created}");
    assert_eq!(
        created["auth_methods"],
        serde_json::json!(["private_key_jwt"]),
        "{created}"
    );
    let client_id = str_of(&created, "client_id").to_owned();
    let first_thumbprint = created["public_keys"][0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let human = keyport
        .key_create(&email, "human", &["--no-secret", "--public-key", &second])
        .await;
    human.assert_success();
    assert!(!human.stdout.contains("kps_"), "{}", human.describe());
    assert!(
        human.stdout.contains("private_key_jwt"),
        "{}",
        human.describe()
    );

    let added = keyport
        .json(&["key", "public-key", "add", &client_id, &second])
        .await;
    assert_eq!(added["kid"], "second", "{added}");
    let listed = keyport
        .json(&["key", "public-key", "list", &client_id])
        .await;
    assert_eq!(
        listed["public_keys"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    keyport
        .json(&["key", "public-key", "remove", &client_id, &first_thumbprint])
        .await;
    let last = keyport
        .run(&[
            "key",
            "public-key",
            "remove",
            &client_id,
            str_of(&added, "thumbprint"),
        ])
        .await;
    assert_ne!(last.code, Some(0), "{}", last.describe());
    assert!(
        last.output().contains("last public key"),
        "{}",
        last.describe()
    );
    // A thumbprint is base64url: one in 64 starts with `-`, and is still
    // taken as the thumbprint (here one that no public key has).
    let hyphen = keyport
        .run(&[
            "key",
            "public-key",
            "remove",
            &client_id,
            "-kynAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .await;
    assert_eq!(hyphen.code, Some(1), "{}", hyphen.describe());
    assert!(
        hyphen.output().contains("-kynAAAA") && !hyphen.output().contains("unexpected argument"),
        "{}",
        hyphen.describe()
    );
    let not_json = keyport
        .run(&[
            "key",
            "public-key",
            "add",
            &client_id,
            &dir.join("missing.json").display().to_string(),
        ])
        .await;
    assert_ne!(not_json.code, Some(0), "{}", not_json.describe());
    assert!(
        not_json.output().contains("cannot read"),
        "{}",
        not_json.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn key_create_and_update_set_require_dpop_and_listings_show_it(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let bound = keyport.key_with(&email, "bound", &["--require-dpop"]).await;
    assert_eq!(bound["require_dpop"], true, "{bound}");
    let client_id = str_of(&bound, "client_id").to_owned();
    let listing = keyport.run(&["key", "list", "--user", &email]).await;
    listing.assert_success();
    let line = listing
        .stdout
        .lines()
        .find(|l| l.contains(&client_id))
        .expect("the key's line")
        .to_owned();
    assert!(line.ends_with(" require_dpop"), "{line}");
    let updated = keyport
        .json(&["key", "update", &client_id, "--no-require-dpop"])
        .await;
    assert_eq!(updated["require_dpop"], false, "{updated}");
    let keys = keyport.keys_of(&email).await;
    assert_eq!(key_with_client_id(&keys, &client_id)["require_dpop"], false);
    let updated = keyport
        .json(&["key", "update", &client_id, "--require-dpop"])
        .await;
    assert_eq!(updated["require_dpop"], true, "{updated}");
    // Rolling keeps the requirement.
    let rolled = keyport.json(&["key", "roll", &client_id]).await;
    assert_eq!(rolled["require_dpop"], true, "{rolled}");
}

// ---------------------------------------------------------------- one convention

/// Lists are comma-separated, yes/no settings are switches, and `--json`
/// means something only where a result is printed: the other forms are
/// usage errors (exit 2) that name the form meant, before any database.
#[tokio::test]
async fn the_other_forms_of_lists_and_switches_are_refused_with_the_one_meant() {
    const K: &str = "kpc_x";
    // input → exit code → what the message must say
    let table: &[(&[&str], i32, &str)] = &[
        (
            &[
                "key",
                "create",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--scopes",
                "reports:read webhooks:write",
            ],
            2,
            "a list is comma-separated: did you mean reports:read,webhooks:write?",
        ),
        (
            &[
                "key",
                "create",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--allow",
                "10.0.0.0/8 192.168.0.0/16",
            ],
            2,
            "did you mean 10.0.0.0/8,192.168.0.0/16?",
        ),
        (
            &[
                "key",
                "update",
                K,
                "--allow",
                "10.0.0.0/8, 192.168.0.0/16 172.16.0.0/12",
            ],
            2,
            "did you mean 10.0.0.0/8,192.168.0.0/16,172.16.0.0/12?",
        ),
        (
            &[
                "user",
                "create",
                "--tenant",
                "T",
                "--email",
                "a@example.com",
                "--role",
                "member",
                "--permissions",
                "reports:read webhooks:write",
            ],
            2,
            "did you mean reports:read,webhooks:write?",
        ),
        (
            &[
                "user",
                "set-permissions",
                "a@example.com",
                "reports:read webhooks:write",
            ],
            2,
            "did you mean reports:read,webhooks:write?",
        ),
        (
            &[
                "issuer",
                "add-rule",
                "--tenant",
                "T",
                "ISS",
                "--claim",
                "sub=x",
                "--user",
                "a@example.com",
                "--scopes",
                "reports:read webhooks:write",
            ],
            2,
            "did you mean reports:read,webhooks:write?",
        ),
        (
            &["key", "update", K, "--require-dpop", "false"],
            2,
            "--require-dpop is a switch and takes no value; did you mean --no-require-dpop?",
        ),
        (
            &["key", "update", K, "--require-dpop", "true"],
            2,
            "did you mean --require-dpop?",
        ),
        (
            &["key", "update", K, "--require-dpop=false"],
            2,
            "did you mean --no-require-dpop?",
        ),
        (
            &["key", "update", K, "--require-dpop", "--no-require-dpop"],
            2,
            "cannot be used with",
        ),
        (
            &[
                "key",
                "create",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--require-dpop",
                "yes",
            ],
            2,
            "did you mean --require-dpop?",
        ),
        (
            &[
                "key",
                "create",
                "--user",
                "a@example.com",
                "--name",
                "x",
                "--sigv4",
                "false",
            ],
            2,
            "did you mean no --sigv4 at all?",
        ),
        (
            &["tenant", "set-policy", "T", "--api-only-users", "true"],
            2,
            "did you mean --api-only-users?",
        ),
        (
            &["tenant", "set-policy", "T", "--api-only-users", "false"],
            2,
            "did you mean --no-api-only-users?",
        ),
        (
            &[
                "tenant",
                "set-policy",
                "T",
                "--api-only-users",
                "--no-api-only-users",
            ],
            2,
            "cannot be used with",
        ),
        (
            &["serve", "--json"],
            2,
            "--json is for the admin commands' results",
        ),
        (
            &["--json", "serve"],
            2,
            "--json is for the admin commands' results",
        ),
    ];
    for (args, code, message) in table {
        let (run, dir) = run_in_empty_folder(args, &[]).await;
        let made = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        std::fs::remove_dir_all(&dir).ok();
        run.assert_exit(*code);
        // stderr, or stdout as JSON where `--json` was given.
        assert!(run.output().contains(message), "{}", run.describe());
        assert_eq!(made, 0, "nothing is created: {}", run.describe());
    }
    // With --json, the same refusal as one JSON document.
    let (run, dir) = run_in_empty_folder(
        &["--json", "key", "update", K, "--require-dpop", "false"],
        &[],
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
    run.assert_exit(2);
    let error = run.json();
    assert_eq!(error["error"], "usage", "{}", run.describe());
    assert!(
        str_of(&error, "message").contains("did you mean --no-require-dpop?"),
        "{}",
        run.describe()
    );
}

/// Every option and argument of every command says what it is.
#[test]
fn every_option_and_argument_of_every_command_has_help() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&keyport::cli::Cli::command(), "keyport", &mut missing);
    assert!(missing.is_empty(), "no help for {missing:?}");
}

/// Every command that names a user takes the id or the email, and a
/// trusted issuer its id or its `iss`; a label is one per `--label`.
async fn references_take_the_id_or_the_name_people_know(backend: Backend) {
    let keyport = Keyport::for_exchange(backend).await;
    let (tenant, email) = keyport.owner().await;
    let tenant_id = str_of(&tenant, "id");
    let users = keyport.json(&["user", "list", "--tenant", tenant_id]).await;
    let user_id = str_of(&users["users"][0], "id").to_owned();

    // A user by id, in every user command and where keys name their owner.
    let disabled = keyport.json(&["user", "disable", &user_id]).await;
    assert_eq!(disabled["email"], email.as_str(), "{disabled}");
    assert_eq!(disabled["status"], "disabled", "{disabled}");
    keyport.json(&["user", "enable", &user_id]).await;
    keyport.json(&["user", "unlock", &user_id]).await;
    let set = keyport
        .json(&[
            "user",
            "set-permissions",
            &user_id,
            "reports:read,keys:manage",
        ])
        .await;
    assert_eq!(set["email"], email.as_str(), "{set}");
    let key = keyport
        .json(&["key", "create", "--user", &user_id, "--name", "by id"])
        .await;
    assert_eq!(key["owner_email"], email.as_str(), "{key}");
    let listed = keyport.json(&["key", "list", "--user", &user_id]).await;
    assert_eq!(listed["keys"][0]["client_id"], key["client_id"], "{listed}");
    assert_eq!(
        keyport
            .refusal(&["user", "disable", "0190aaaa-0000-7000-8000-000000000000"])
            .await["error"],
        "not_found"
    );

    // A trusted issuer by its `iss`.
    let iss = "https://ci.example.com";
    let issuer = keyport.trust(tenant_id, iss, "keyport-refs").await;
    let rule = keyport
        .json(&[
            "issuer",
            "add-rule",
            "--tenant",
            tenant_id,
            iss,
            "--claim",
            "sub=main",
            "--user",
            &user_id,
            "--scopes",
            "reports:read",
        ])
        .await;
    let shown = keyport
        .json(&["issuer", "show", "--tenant", tenant_id, &format!("{iss}/")])
        .await;
    assert_eq!(shown["id"], issuer["id"], "{shown}");
    assert_eq!(shown["rules"][0]["id"], rule["id"], "{shown}");
    keyport
        .json(&[
            "issuer",
            "remove-rule",
            "--tenant",
            tenant_id,
            iss,
            str_of(&rule, "id"),
        ])
        .await;
    keyport
        .json(&["issuer", "remove", "--tenant", tenant_id, iss])
        .await;
    let listed = keyport
        .json(&["issuer", "list", "--tenant", tenant_id])
        .await;
    assert_eq!(listed["issuers"], serde_json::json!([]), "{listed}");

    // One label per --label.
    let labels = keyport
        .run(&[
            "--json",
            "key",
            "update",
            str_of(&key, "client_id"),
            "--label",
            "env=prod,team=erp",
        ])
        .await;
    labels.assert_exit(1);
    assert!(
        str_of(&labels.json(), "message")
            .contains("one label per --label: did you mean --label env=prod --label team=erp?"),
        "{}",
        labels.describe()
    );
    // The switch pair turns a policy on and off.
    let on = keyport
        .json(&["tenant", "set-policy", tenant_id, "--api-only-users"])
        .await;
    assert_eq!(on["api_only_users"], true, "{on}");
    let off = keyport
        .json(&["tenant", "set-policy", tenant_id, "--no-api-only-users"])
        .await;
    assert_eq!(off["api_only_users"], false, "{off}");
}

/// The hint after `key create` names the configured issuer's token
/// endpoint; with none configured it says so instead of guessing one.
async fn the_token_hint_names_the_configured_issuer_or_says_there_is_none(backend: Backend) {
    let configured =
        Keyport::with_env(backend, &[("KEYPORT_ISSUER", "https://auth.example.com")]).await;
    let (_, email) = configured.owner().await;
    let run = configured
        .run(&[
            "key", "create", "--user", &email, "--name", "hinted", "--sigv4",
        ])
        .await;
    run.assert_success();
    assert!(
        run.stdout
            .contains("-d grant_type=client_credentials https://auth.example.com/oauth/token")
            && run
                .stdout
                .contains("https://auth.example.com/api/v1/whoami")
            && !run.stdout.contains("No issuer is configured"),
        "{}",
        run.describe()
    );

    let unconfigured = Keyport::new(backend).await;
    let (_, email) = unconfigured.owner().await;
    let run = unconfigured
        .run(&["key", "create", "--user", &email, "--name", "hinted"])
        .await;
    run.assert_success();
    assert!(
        run.stdout
            .contains("-d grant_type=client_credentials <issuer>/oauth/token")
            && run.stdout.contains(
                "No issuer is configured, so <issuer> stands for the URL clients reach Keyport \
                 at: set `issuer` (KEYPORT_ISSUER) to it."
            ),
        "{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("http://127.0.0.1"),
        "{}",
        run.describe()
    );
}

/// An owner at the key limit can roll a key: the successor replaces it,
/// and the old key in its grace period no longer counts.
async fn a_key_is_rolled_at_the_key_limit_and_the_limit_still_holds(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let first = keyport.key(&email, "one").await;
    keyport.key(&email, "two").await;
    keyport.key(&email, "three").await;

    let rolled = keyport
        .json(&["key", "roll", str_of(&first, "client_id")])
        .await;
    assert!(
        str_of(&rolled, "client_secret").starts_with("kps_"),
        "{rolled}"
    );
    let keys = keyport.keys_of(&email).await;
    let old = key_with_client_id(&keys, str_of(&first, "client_id"));
    assert_eq!(old["rolled_to"], rolled["client_id"], "{old}");
    // Still three that count: a fourth is refused.
    create_refused_by_the_limit(&keyport, &email, "four", 3).await;
}

/// `key create --tls-client-auth SUBJECT --tls-client-certificate FILE` and
/// `key update` with a new list (a PEM file or a thumbprint), then
/// `--no-tls-client-auth`: RFC 8705's methods from the command line.
async fn certificate_methods_are_set_and_rotated_from_the_cli(backend: Backend) {
    let keyport = Keyport::new(backend).await;
    let (_, email) = keyport.owner().await;
    let dir = std::env::temp_dir().join(format!("keyport-cli-cert-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let certificate = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![format!("{name}.example.com")])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        let thumbprint = keyport::domain::CertificateThumbprint::of(cert.der()).to_string();
        (path.display().to_string(), thumbprint)
    };
    let (first_file, first) = certificate("first");
    let (second_file, second) = certificate("second");

    let created = keyport
        .key_with(
            &email,
            "erp",
            &[
                "--no-secret",
                "--tls-client-auth",
                "san_dns:erp.example.com",
                "--tls-client-certificate",
                &first_file,
            ],
        )
        .await;
    assert!(created.get("client_secret").is_none(), "{created}");
    assert_eq!(
        created["auth_methods"],
        serde_json::json!(["tls_client_auth", "self_signed_tls_client_auth"]),
        "{created}"
    );
    assert_eq!(
        created["tls_client_certificates"],
        serde_json::json!([first])
    );
    let client_id = str_of(&created, "client_id").to_owned();

    let updated = keyport
        .json(&[
            "key",
            "update",
            &client_id,
            "--tls-client-certificate",
            &first,
            "--tls-client-certificate",
            &second_file,
            "--no-tls-client-auth",
        ])
        .await;
    assert_eq!(
        updated["tls_client_certificates"],
        serde_json::json!([first, second]),
        "{updated}"
    );
    assert!(updated["tls_client_auth"].is_null(), "{updated}");

    let refused = keyport
        .run(&["key", "update", &client_id, "--tls-client-auth", "dns:erp"])
        .await;
    assert_ne!(refused.code, Some(0), "{}", refused.describe());
    assert!(
        refused.output().contains("san_dns"),
        "{}",
        refused.describe()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

crate::on_both_backends!(
    certificate_methods_are_set_and_rotated_from_the_cli,
    key_create_and_update_set_require_dpop_and_listings_show_it,
    trusted_issuers_and_rules_are_managed_from_the_cli,
    public_keys_are_managed_from_the_cli_and_a_key_can_have_no_secret,
    key_create_sigv4_allows_signing_and_listings_say_which_keys_do,
    the_lifecycle_commands_follow_the_api_rules,
    a_tenant_created_from_the_cli_reports_its_id,
    a_user_is_created_in_a_tenant_named_by_name_or_by_id,
    a_created_key_carries_its_client_id_and_a_kps_secret_in_json,
    without_json_key_create_shows_the_client_id_and_the_secret_once,
    key_listings_never_show_the_secret_or_its_digest,
    a_key_is_revoked_by_client_id_and_revoking_it_twice_fails,
    a_key_is_deleted_by_id_and_an_unknown_key_is_a_clear_error,
    a_fourth_active_key_is_refused_with_a_clear_error,
    a_configured_limit_of_one_active_key_refuses_the_second,
    an_invalid_email_is_refused,
    an_unknown_role_is_refused_by_the_argument_parser,
    an_unknown_tenant_is_refused,
    scopes_beyond_the_owners_permissions_are_refused,
    a_token_lifetime_above_the_maximum_is_refused,
    unknown_or_mistyped_scopes_are_refused_listing_the_known_ones,
    tenants_and_their_users_are_listed_from_the_cli,
    one_key_is_shown_by_id_or_client_id_without_its_secret,
    one_trusted_issuer_is_shown_with_its_rules,
    human_output_shows_rfc3339_utc_times_with_a_hint_and_json_keeps_unix_seconds,
    an_unknown_flag_is_refused_with_a_usage_error,
    an_unparseable_expiry_is_refused_with_a_usage_error,
    migrate_succeeds_on_a_fresh_database,
    serve_starts_on_a_fresh_database_and_issues_tokens_to_curl,
    references_take_the_id_or_the_name_people_know,
    the_token_hint_names_the_configured_issuer_or_says_there_is_none,
    a_key_is_rolled_at_the_key_limit_and_the_limit_still_holds,
);
