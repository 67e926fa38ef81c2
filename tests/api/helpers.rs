//! `spawn_app`: the real application on port 0 with a database of its own
//! (a fresh SQLite file, or a fresh PostgreSQL database), and a typed client.

use std::path::PathBuf;
use std::time::Duration;

use keyport::config::Settings;
use keyport::domain::Principal;
use keyport::service::keys::{self, CreatedKey, NewKeyRequest};
use keyport::service::tenants::{self, Tenant};
use keyport::service::users::{self, UserSummary as User};
use keyport::service::{Service, ServiceError};
use keyport::startup::Application;
use keyport::storage::Store;
use reqwest::Response;
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` once per backend, as
/// `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The master key every test on PostgreSQL gives Keyport (PostgreSQL needs
/// one; SQLite tests use the key the server creates beside the database).
pub const TEST_MASTER_KEY: &str = "a2V5cG9ydC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=";

/// `KEYPORT_MASTER_KEY` for a database at `url`, when it needs one.
pub fn master_key_env(url: &str) -> Vec<(String, String)> {
    if url.starts_with("postgres") {
        vec![("KEYPORT_MASTER_KEY".to_owned(), TEST_MASTER_KEY.to_owned())]
    } else {
        Vec::new()
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("KEYPORT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that belongs to one test and is removed when the test ends.
pub struct TestDatabase {
    pub url: String,
    backend: Backend,
    name: String,
    dir: Option<PathBuf>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let name = format!("keyport_test_{}", Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                let url = format!("sqlite://{}/keyport.db", dir.display());
                TestDatabase {
                    url,
                    backend,
                    name,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must be running on 127.0.0.1:5432 (see README)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create the test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDatabase {
                    url: format!("{base}/{name}"),
                    backend,
                    name,
                    dir: None,
                }
            }
        }
    }

    pub fn sqlite_dir(&self) -> Option<&PathBuf> {
        self.dir.as_ref()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                if let Some(dir) = &self.dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Backend::Postgres => {
                let name = self.name.clone();
                // Drop runs inside the test's runtime: do the async work on a
                // thread of its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async move {
                        use sqlx::Connection;
                        if let Ok(mut conn) =
                            sqlx::PgConnection::connect(&postgres_admin_url()).await
                        {
                            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub store: Store,
    pub settings: Settings,
    pub db: std::sync::Arc<TestDatabase>,
    /// The running application's (see [`TestApp::service`]).
    pub service: Service,
}

/// An integration ready to go: a tenant, a user and a key of that user.
pub struct Integration {
    pub tenant: Tenant,
    pub user: User,
    pub key: CreatedKey,
}

impl Integration {
    pub fn client_id(&self) -> &str {
        &self.key.key.client_id
    }
    pub fn secret(&self) -> &str {
        self.key.secret.expose()
    }
}

pub fn settings_for(url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("KEYPORT_DATABASE_URL".into(), url.to_owned()),
        ("KEYPORT_BIND".into(), "127.0.0.1:0".into()),
        ("KEYPORT_WORKERS".into(), "1".into()),
        ("KEYPORT_DATABASE_MAX_CONNECTIONS".into(), "5".into()),
    ];
    env.extend(master_key_env(url));
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Settings::load_from(None, env).expect("test settings load")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let db = std::sync::Arc::new(TestDatabase::create(backend).await);
    spawn_app_on(db, overrides).await
}

/// Starts another instance (or a restart) of `app` on its database: it
/// shares `app`'s issuer, as instances of one deployment do.
pub async fn spawn_sibling(app: &TestApp, overrides: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("KEYPORT_ISSUER", app.settings.tokens.issuer.as_str())];
    all.extend_from_slice(overrides);
    spawn_app_on(app.db.clone(), &all).await
}

/// Starts an application on an existing test database.
pub async fn spawn_app_on(db: std::sync::Arc<TestDatabase>, overrides: &[(&str, &str)]) -> TestApp {
    let settings = settings_for(&db.url, overrides);
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("connect to the test database");
    let app = Application::build_with_store(settings.clone(), store.clone())
        .await
        .expect("build the application");
    let port = app.port();
    // The issuer follows the port the OS picked unless a test set one.
    let settings = app.settings().clone();
    let service = app.service();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        store,
        settings,
        db,
        service,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The running application's service layer: what is changed through it
    /// is changed by this instance, whose credential cache forgets it at once
    /// (another process, like the CLI, is heard within a second).
    pub fn service(&self) -> Service {
        self.service.clone()
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        tenants::create_tenant(&self.service(), &Principal::operator(), name)
            .await
            .expect("create tenant")
    }

    pub async fn user(&self, tenant: &Tenant, email: &str, role: &str, permissions: &str) -> User {
        users::create_user(
            &self.service(),
            &Principal::operator(),
            users::NewUserRequest {
                tenant: Some(&tenant.id),
                email,
                role,
                permissions,
            },
        )
        .await
        .expect("create user")
        .user
    }

    pub async fn key(&self, email: &str, scopes: Option<&str>) -> CreatedKey {
        self.key_with(email, scopes, None, None).await
    }

    pub async fn key_with(
        &self,
        email: &str,
        scopes: Option<&str>,
        expires_in: Option<Duration>,
        token_ttl: Option<Duration>,
    ) -> CreatedKey {
        self.try_key(email, scopes, expires_in, token_ttl)
            .await
            .expect("create key")
    }

    /// Asks for a key as the operator's CLI would, returning the refusal.
    pub async fn try_key(
        &self,
        email: &str,
        scopes: Option<&str>,
        expires_in: Option<Duration>,
        token_ttl: Option<Duration>,
    ) -> Result<CreatedKey, ServiceError> {
        keys::create_key(
            &self.service(),
            &Principal::operator(),
            NewKeyRequest {
                owner_email: Some(email),
                name: "test key",
                scopes,
                expires_in,
                token_ttl,
                sigv4: false,
            },
        )
        .await
    }

    /// A fresh tenant with one user holding `permissions` and one key.
    pub async fn integration(&self, role: &str, permissions: &str) -> Integration {
        let suffix = Uuid::new_v4().simple().to_string();
        let tenant = self.tenant(&format!("tenant-{suffix}")).await;
        let user = self
            .user(
                &tenant,
                &format!("user-{suffix}@example.com"),
                role,
                permissions,
            )
            .await;
        let key = self.key(&user.email, None).await;
        Integration { tenant, user, key }
    }

    pub async fn request_token(&self, client_id: &str, secret: &str) -> Response {
        self.client
            .post(self.url("/oauth/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request")
    }

    /// A token for the integration's key; panics unless the server issues one.
    pub async fn token_for(&self, integration: &Integration) -> String {
        self.token_for_key(&integration.key).await
    }

    pub async fn token_for_key(&self, key: &CreatedKey) -> String {
        let response = self
            .request_token(&key.key.client_id, key.secret.expose())
            .await;
        assert_eq!(response.status(), 200, "token refused");
        let body: Value = response.json().await.expect("token json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    pub async fn push(
        &self,
        token: &str,
        collection: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/v1/webhooks/{collection}")))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("push request")
    }

    pub async fn pull(&self, token: &str, collection: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/api/v1/reports/{collection}{query}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("pull request")
    }

    /// Every record id visible to `token` in `collection`, following cursors.
    pub async fn pull_all_ids(&self, token: &str, collection: &str, page: u32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let query = match &cursor {
                Some(c) => format!("?limit={page}&cursor={c}"),
                None => format!("?limit={page}"),
            };
            let response = self.pull(token, collection, &query).await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("page json");
            for record in body["records"].as_array().expect("records") {
                ids.push(record["id"].as_str().expect("id").to_owned());
            }
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }
}

impl TestApp {
    pub async fn set_password(&self, email: &str, password: &str) {
        keyport::service::sessions::set_password(
            &self.service(),
            &Principal::operator(),
            email,
            password,
        )
        .await
        .expect("set password");
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/api/v1/session"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("sign-in request")
    }

    /// A session token for `email`, whose password is set to `password` first.
    pub async fn session_for(&self, email: &str, password: &str) -> String {
        self.set_password(email, password).await;
        let response = self.sign_in(email, password).await;
        assert_eq!(response.status(), 201, "sign-in refused");
        let body: Value = response.json().await.expect("session json");
        body["session_token"]
            .as_str()
            .expect("session_token")
            .to_owned()
    }

    /// A bodiless API call presenting `credential` as a bearer token.
    /// An unauthenticated GET of `path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request")
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, credential: &str) -> Response {
        self.api(method, path, credential)
            .send()
            .await
            .expect("API request")
    }

    /// A management API call presenting `credential` as a bearer token.
    pub fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(credential)
    }
}

/// How a credential is presented to the management API.
#[derive(Clone)]
pub enum Cred {
    /// `Authorization: Bearer` (a session, an access token, or a key).
    Bearer(String),
    /// `x-api-key: kps_…`.
    ApiKey(String),
}

impl TestApp {
    /// A request presenting `cred`.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        cred: &Cred,
    ) -> reqwest::RequestBuilder {
        match cred {
            Cred::Bearer(token) => self.api(method, path, token),
            Cred::ApiKey(secret) => self
                .client
                .request(method, self.url(path))
                .header("x-api-key", secret),
        }
    }

    /// `POST /api/v1/keys` with `body`, presenting `credential`; panics
    /// unless the key is created (201). The answer carries the secret.
    pub async fn create_key_over_http(&self, credential: &str, body: Value) -> Value {
        let response = self
            .api(reqwest::Method::POST, "/api/v1/keys", credential)
            .json(&body)
            .send()
            .await
            .expect("create-key request");
        let status = response.status();
        let created = json_body(response).await;
        assert_eq!(status, 201, "key refused: {created}");
        created
    }

    /// An access token for a key, narrowed to `scope` when given; panics
    /// unless the server issues one.
    pub async fn narrowed_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response = self
            .client
            .post(self.url("/oauth/token"))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .expect("token request");
        let status = response.status();
        let body = json_body(response).await;
        assert_eq!(status, 200, "token refused: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

/// The JSON body of a response, asserting it is JSON.
pub async fn json_body(response: Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// `keyport serve` as a process of its own, on the port the OS picked (read
/// from its `listening on port N` log line), its log lines collected;
/// killed when dropped.
pub struct ServedBinary {
    pub child: std::process::Child,
    pub port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServedBinary {
    /// A `keyport` command with the environment every served test needs:
    /// `url`'s database, port 0, `workers` workers, info logs.
    pub fn command(url: &str, workers: u32) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keyport"));
        command
            .env("KEYPORT_DATABASE_URL", url)
            .env("KEYPORT_BIND", "127.0.0.1:0")
            .env("KEYPORT_WORKERS", workers.to_string())
            .envs(master_key_env(url))
            .env("RUST_LOG", "info");
        command
    }

    /// Runs `command serve`, appending its log lines to `log`; panics with
    /// the log if it never says which port it listens on.
    pub fn start(
        mut command: std::process::Command,
        log: std::sync::Arc<std::sync::Mutex<String>>,
    ) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start keyport serve");
        let stderr = child.stderr.take().expect("stderr");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
                drop(log);
                if let Some(rest) = line.split("listening on port ").nth(1) {
                    let port = rest.split_whitespace().next().unwrap_or("").parse();
                    let _ = port_tx.send(port.unwrap_or(0u16));
                }
            }
        });
        let Ok(port) = port_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "keyport serve never said which port it listens on:\n{}",
                log.lock().unwrap_or_else(|e| e.into_inner())
            );
        };
        ServedBinary { child, port, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A plain-HTTP URL on the served port.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for ServedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every row of every table in `db`, as `(table, the row as text)`: what an
/// attacker holding a copy of the database reads.
pub async fn every_stored_row(db: &TestDatabase) -> Vec<(String, String)> {
    match db.sqlite_dir() {
        Some(dir) => {
            let path = dir.join("keyport.db");
            tokio::task::spawn_blocking(move || {
                use rusqlite::types::ValueRef;
                let connection = rusqlite::Connection::open(&path).expect("open the SQLite file");
                let tables: Vec<String> = connection
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .expect("list tables");
                let mut rows = Vec::new();
                for table in tables {
                    let mut statement = connection
                        .prepare(&format!("SELECT * FROM \"{table}\""))
                        .expect("select");
                    let columns = statement.column_count();
                    let mut cursor = statement.query([]).expect("query");
                    while let Some(row) = cursor.next().expect("row") {
                        let text: Vec<String> = (0..columns)
                            .map(|i| match row.get_ref(i).expect("value") {
                                ValueRef::Null => "null".to_owned(),
                                ValueRef::Integer(n) => n.to_string(),
                                ValueRef::Real(n) => n.to_string(),
                                ValueRef::Text(t) | ValueRef::Blob(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                            })
                            .collect();
                        rows.push((table.clone(), text.join(" | ")));
                    }
                }
                rows
            })
            .await
            .expect("scan")
        }
        None => {
            use sqlx::{Connection, Row};
            let mut connection = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut connection)
            .await
            .expect("list tables");
            let mut rows = Vec::new();
            for table in tables {
                let sql = format!("SELECT row_to_json(t)::text FROM \"{table}\" t");
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut connection)
                    .await
                    .expect("select")
                {
                    rows.push((table.clone(), row.get::<String, _>(0)));
                }
            }
            rows
        }
    }
}
