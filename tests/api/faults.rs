//! Faults: the server killed with SIGKILL in the middle of pushes, a
//! PostgreSQL outage, a read-only or full SQLite database, and two instances
//! sharing one database. Each test is bounded in time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyport::tokens::{KeyRing, SigningAlgorithm};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{
    Backend, READ_AND_PUSH, ServedBinary, TestApp, TestDatabase, json_body, spawn_app,
    spawn_app_on, spawn_app_with, spawn_sibling, status_and_json,
};

/// `keyport serve` as a child process; killed (SIGKILL) when dropped.
/// `keyport serve` on `database_url` with `env` on top.
fn start_server(database_url: &str, env: &[(&str, &str)]) -> ServedBinary {
    let mut command = ServedBinary::command(database_url, 2);
    command.envs(env.iter().copied());
    ServedBinary::start(command, Arc::default())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// How often each `seq` appears among the records of `collection`.
async fn seq_counts(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    collection: &str,
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/reports/{collection}?limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let response = http.get(url).bearer_auth(token).sent().await;
        assert_eq!(response.status(), 200);
        let page = json_body(response).await;
        for record in page["records"].as_array().unwrap() {
            let seq = record["data"]["seq"].as_str().unwrap().to_owned();
            *counts.entry(seq).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return counts,
        }
    }
}

/// Several clients push records (each with its own Idempotency-Key) until
/// the server is killed with SIGKILL mid-stream. After a restart on the same
/// database, every push that was not answered 2xx is retried, and a sample of
/// the answered ones re-sent: every push is then stored exactly once.
async fn answered_pushes_survive_kill_9_and_retries_store_each_once(backend: Backend) {
    let setup = spawn_app(backend).await;
    let integration = setup.integration("admin", READ_AND_PUSH).await;
    let http = http();
    let issuer = [("KEYPORT_ISSUER", setup.settings.tokens.issuer.as_str())];
    let mut server = start_server(&setup.db.url, &issuer);
    let token = server
        .token(&http, integration.client_id(), integration.secret())
        .await;

    let outcomes: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|client| {
            let (http, token, base) = (http.clone(), token.clone(), server.url(""));
            let (outcomes, answered, killed) = (
                Arc::clone(&outcomes),
                Arc::clone(&answered),
                Arc::clone(&killed),
            );
            tokio::spawn(async move {
                for n in 0.. {
                    if killed.load(Ordering::SeqCst) {
                        break;
                    }
                    let seq = format!("crash-{client}-{n}");
                    let ok = http
                        .post(format!("{base}/api/v1/webhooks/crash"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &seq)
                        .json(&json!({ "seq": seq }))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::CREATED);
                    outcomes.lock().unwrap().push((seq, ok));
                    if !ok {
                        break;
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::SeqCst) < 150 {
        assert!(
            Instant::now() < deadline,
            "pushes too slow:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_9();
    killed.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let unanswered: Vec<&String> = outcomes
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(s, _)| s)
        .collect();
    assert!(!unanswered.is_empty(), "every client saw the kill");

    let restarted = start_server(&setup.db.url, &issuer);
    let resend = |seq: String| {
        let (http, token, url) = (
            http.clone(),
            token.clone(),
            restarted.url("/api/v1/webhooks/crash"),
        );
        async move {
            let response = http
                .post(url)
                .bearer_auth(&token)
                .header("Idempotency-Key", &seq)
                .json(&json!({ "seq": seq }))
                .sent()
                .await;
            assert_eq!(response.status(), 201, "retry of {seq}");
            response.headers().contains_key("idempotent-replayed")
        }
    };
    let mut committed_but_unanswered = 0;
    for seq in &unanswered {
        if resend((*seq).clone()).await {
            committed_but_unanswered += 1;
        }
    }
    for (seq, _) in outcomes.iter().filter(|(_, ok)| *ok).step_by(10) {
        assert!(
            resend(seq.clone()).await,
            "{seq} was answered, so its retry is a replay"
        );
    }

    let counts = seq_counts(&http, &restarted.url(""), &token, "crash").await;
    for (seq, _) in &outcomes {
        assert_eq!(counts.get(seq), Some(&1), "{seq} is stored exactly once");
    }
    assert_eq!(counts.len(), outcomes.len(), "no record nobody pushed");
    eprintln!(
        "{backend:?}: {} pushes answered before the kill, {} unanswered ({} of them committed, replayed on retry)",
        outcomes.len() - unanswered.len(),
        unanswered.len(),
        committed_but_unanswered
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Up,
    /// New connections are closed at once.
    Refused,
    /// New connections are accepted and never answered.
    Blackholed,
    /// A partition: open connections stay open but carry nothing, and new
    /// ones are blackholed.
    Frozen,
}

/// A TCP proxy in front of PostgreSQL that can fail. Leaving `Up` closes
/// every connection it carries, except when `Frozen`.
pub(crate) struct FlakyProxy {
    pub(crate) port: u16,
    link: watch::Sender<Link>,
}

impl FlakyProxy {
    pub(crate) async fn start(target: String) -> FlakyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, watcher) = watch::channel(Link::Up);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut watcher = watcher.clone();
                let target = target.clone();
                let state = *watcher.borrow();
                tokio::spawn(async move {
                    match state {
                        Link::Up => {
                            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = watcher.wait_for(|l| *l != Link::Up) => {}
                            }
                            if *watcher.borrow() == Link::Frozen {
                                // Stop relaying but keep both sockets open.
                                let _ = watcher.wait_for(|l| *l == Link::Up).await;
                            }
                        }
                        Link::Refused => drop(inbound),
                        Link::Blackholed | Link::Frozen => {
                            // Hold the socket, read nothing, until the link is up.
                            let _ = watcher.wait_for(|l| *l == Link::Up).await;
                            drop(inbound);
                        }
                    }
                });
            }
        });
        FlakyProxy { port, link }
    }

    pub(crate) fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// `postgres://user@host:port/db` with host:port replaced; also returns the
/// original host:port.
pub(crate) fn through_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (host, db) = rest.split_once('/').unwrap();
    let at = if user.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{user}{at}127.0.0.1:{port}/{db}"),
        host.to_owned(),
    )
}

struct Timed {
    status: StatusCode,
    retry_after: bool,
    body: Value,
    took: Duration,
}

async fn timed(request: reqwest::RequestBuilder) -> Timed {
    let started = Instant::now();
    let response = request.sent().await;
    let took = started.elapsed();
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let text = response.text().await.unwrap();
    Timed {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
    }
}

/// While PostgreSQL cannot be reached (connections refused; accepted and
/// never answered; or a partition where open connections go silent),
/// requests that need it get 503 with Retry-After within
/// about the database timeout (1 s here), routes that do not need it keep
/// working, and once it is back service returns with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_quickly_and_service_returns_without_restart() {
    let mut db = TestDatabase::create(Backend::Postgres).await;
    let (probe, target) = through_proxy(&db.url, 0);
    assert!(probe.contains("127.0.0.1:0/"), "{probe}");
    let proxy = FlakyProxy::start(target).await;
    db.url = through_proxy(&db.url, proxy.port).0;
    let app = spawn_app_on(
        Arc::new(db),
        &[
            ("KEYPORT_DATABASE_TIMEOUT_SECONDS", "1"),
            ("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "1000"),
            // The token request must need the database here; held keys
            // answering through an outage are
            // `credential_cache.rs::postgres_through_an_outage_…`.
            ("KEYPORT_CREDENTIAL_CACHE_SERVE_STALE_SECONDS", "0"),
        ],
    )
    .await;
    let integration = app.integration("admin", READ_AND_PUSH).await;
    let token = app.token_for(&integration).await;
    assert_eq!(
        app.push(&token, "outage", &json!({"n": 0}), None)
            .await
            .status(),
        201
    );

    for outage in [Link::Refused, Link::Blackholed, Link::Frozen] {
        proxy.set(outage);
        let push = || {
            app.client
                .post(app.url("/api/v1/webhooks/outage"))
                .bearer_auth(&token)
                .json(&json!({"n": 1}))
        };
        // The token request goes last (see below).
        let needs_database = [
            ("push", push(), "unavailable"),
            (
                "report",
                app.client
                    .get(app.url("/api/v1/reports/outage"))
                    .bearer_auth(&token),
                "unavailable",
            ),
            ("readyz", app.client.get(app.url("/readyz")), "unavailable"),
            (
                "token request",
                client_credentials(
                    &app.client,
                    app.url("/oauth/token"),
                    integration.client_id(),
                    integration.secret(),
                ),
                "temporarily_unavailable",
            ),
        ];
        for (what, request, code) in needs_database {
            let mut answer = timed(request.try_clone().expect("a plain request")).await;
            // A key the instance read before may be answered from its
            // credential cache until its lease lapses (a second here), as
            // for a change made elsewhere meanwhile: the refusals above now
            // come at once, so the token request may arrive before that.
            let lease_ends = Instant::now() + Duration::from_secs(3);
            while what == "token request" && answer.status == 200 && Instant::now() < lease_ends {
                tokio::time::sleep(Duration::from_millis(100)).await;
                answer = timed(request.try_clone().expect("a plain request")).await;
            }
            eprintln!(
                "{outage:?}: {what} answered {} in {:?}",
                answer.status, answer.took
            );
            assert_eq!(answer.status, 503, "{outage:?}: {what}: {}", answer.body);
            assert!(answer.retry_after, "{outage:?}: {what} has Retry-After");
            assert_eq!(answer.body["error"], code, "{outage:?}: {what}");
            assert!(
                answer.took < Duration::from_millis(2500),
                "{outage:?}: {what} took {:?}",
                answer.took
            );
        }
        for (what, path) in [
            ("healthz", "/healthz"),
            ("JWKS", "/.well-known/jwks.json"),
            ("metadata", "/.well-known/oauth-authorization-server"),
        ] {
            let answer = timed(app.client.get(app.url(path))).await;
            assert_eq!(answer.status, 200, "{outage:?}: {what}");
            assert!(
                answer.took < Duration::from_millis(500),
                "{outage:?}: {what}"
            );
        }
        // Token validation needs no database: a bad token is still a 401.
        let answer = timed(
            app.client
                .get(app.url("/api/v1/reports/outage"))
                .bearer_auth(format!("{token}x")),
        )
        .await;
        assert_eq!(answer.status, 401, "{outage:?}: bad token");

        proxy.set(Link::Up);
        let back = Instant::now();
        loop {
            let answer = timed(push()).await;
            if answer.status == 201 {
                break;
            }
            assert_eq!(answer.status, 503, "{outage:?}: while recovering");
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "{outage:?}: no recovery within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{outage:?}: pushes work again {:?} after the link is up",
            back.elapsed()
        );
        // Token requests and readiness come back too, within the same
        // bound: the breaker's probe (every 100 ms) may lift a little after
        // the first write got through.
        loop {
            let token = app
                .token_status(integration.client_id(), integration.secret())
                .await;
            let ready = app.get("/readyz").await.status().as_u16();
            if (token, ready) == (200, 200) {
                break;
            }
            assert!(
                [200, 503].contains(&token) && [200, 503].contains(&ready),
                "{outage:?}: token {token}, readyz {ready} while recovering"
            );
            assert!(
                back.elapsed() < Duration::from_secs(5),
                "{outage:?}: tokens {token}, readyz {ready} 5 s after the link is up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn sqlite_file(app: &TestApp) -> PathBuf {
    app.db
        .sqlite_dir()
        .expect("a SQLite test database")
        .join("keyport.db")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn integrity_check(path: &Path) -> (String, i64) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let check: (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let records: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM records")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (check.0, records.0)
}

/// A SQLite database that cannot be written (file 0444 in a 0555 folder; as
/// root, which ignores permissions, opened with `mode=ro` as well): the
/// server starts, reads and token requests work, writes get a clean 503
/// JSON answer, and the file is intact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_database_serves_reads_and_refuses_writes_cleanly() {
    let setup = spawn_app(Backend::Sqlite).await;
    let integration = setup.integration("admin", READ_AND_PUSH).await;
    let password = "read-only passphrase 42";
    setup.set_password(&integration.user.email, password).await;
    let token = setup.token_for(&integration).await;
    for n in 0..3 {
        let pushed = setup.push(&token, "kept", &json!({"n": n}), None).await;
        assert_eq!(pushed.status(), 201);
    }
    // The last connection to close checkpoints the WAL into the file.
    setup.store.close().await;
    let file = sqlite_file(&setup);
    let dir = file.parent().unwrap().to_owned();
    set_mode(&file, 0o444);
    set_mode(&dir, 0o555);
    let permissions_bind = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .is_err();
    let url = if permissions_bind {
        format!("sqlite://{}", file.display())
    } else {
        // Root ignores file permissions: ask SQLite for read-only instead.
        format!("sqlite://{}?mode=ro", file.display())
    };

    let issuer = [("KEYPORT_ISSUER", setup.settings.tokens.issuer.as_str())];
    let server = start_server(&url, &issuer);
    let http = http();
    let ready = http.get(server.url("/readyz")).sent().await;
    assert_eq!(ready.status(), 200, "{}", server.log());
    let pulled = http
        .get(server.url("/api/v1/reports/kept"))
        .bearer_auth(&token)
        .sent()
        .await;
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        json_body(pulled).await["records"].as_array().unwrap().len(),
        3
    );
    let fresh = server
        .token(&http, integration.client_id(), integration.secret())
        .await;

    let writes = [
        (
            "push",
            http.post(server.url("/api/v1/webhooks/kept"))
                .bearer_auth(&fresh)
                .json(&json!({"n": 99})),
        ),
        (
            "sign-in",
            http.post(server.url("/api/v1/session"))
                .json(&json!({"email": integration.user.email, "password": password})),
        ),
    ];
    for (what, request) in writes {
        let answer = timed(request).await;
        assert_eq!(answer.status, 503, "{what}: {}", answer.body);
        assert_eq!(answer.body["error"], "unavailable", "{what}");
        assert!(answer.retry_after, "{what}");
    }
    // Still up, still reading.
    let again = http
        .get(server.url("/api/v1/reports/kept"))
        .bearer_auth(&fresh)
        .sent()
        .await;
    assert_eq!(again.status(), 200);
    assert!(
        server.log().contains("readonly"),
        "the log names the cause:\n{}",
        server.log()
    );
    drop(server);

    set_mode(&dir, 0o755);
    set_mode(&file, 0o644);
    assert_eq!(integrity_check(&file).await, ("ok".to_owned(), 3));
}

/// Unmounts (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(at.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A full disk (a 2 MiB tmpfs): pushes past the space get a clean 503, every
/// push answered 201 is readable, and once there is room again pushes work
/// with no restart. Needs permission to mount a tmpfs (root, as on CI): it
/// fails rather than skips elsewhere, so a green run always means it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_pushes_cleanly_and_recovers_without_restart() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let tmpfs = Tmpfs::mount(db.sqlite_dir().unwrap(), "2m")
        .expect("cannot mount a tmpfs: this test needs root (as CI has)");
    let app = spawn_app_on(Arc::new(db), &[]).await;
    let integration = app.integration("admin", READ_AND_PUSH).await;
    let token = app.token_for(&integration).await;
    let filler = "x".repeat(100 * 1024);
    let mut stored = 0;
    let mut refused = None;
    for n in 0..40 {
        let answer = timed(
            app.client
                .post(app.url("/api/v1/webhooks/fill"))
                .bearer_auth(&token)
                .json(&json!({"seq": format!("fill-{n}"), "filler": filler})),
        )
        .await;
        if answer.status == 201 {
            stored += 1;
        } else {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a 2 MiB disk fills up");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["error"], "unavailable");
    assert!(refused.retry_after);
    assert!(stored > 0, "some pushes fit");
    eprintln!("disk full after {stored} pushes of 100 KiB");

    let counts = seq_counts(&app.client, &app.address, &token, "fill").await;
    assert_eq!(counts.len(), stored, "every answered push is readable");
    assert!(counts.values().all(|c| *c == 1));

    tmpfs.resize("16m");
    let back = Instant::now();
    loop {
        let answer = timed(
            app.client
                .post(app.url("/api/v1/webhooks/fill"))
                .bearer_auth(&token)
                .json(&json!({"seq": "after", "filler": "small"})),
        )
        .await;
        if answer.status == 201 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.store.close().await;
    assert_eq!(
        integrity_check(&sqlite_file(&app)).await,
        ("ok".to_owned(), stored as i64 + 1)
    );
}

/// Two instances on one database: tokens of one validate at the other, a
/// key revoked through one gets no token from the other within a second
/// (from the one that revoked it, at once), a token revoked
/// through one is refused by the other within the refresh interval, a signing-key
/// rotation is published by both within the refresh interval, and
/// concurrent key creations through both never exceed the limit.
async fn two_instances_on_one_database_agree(backend: Backend) {
    let refresh = [
        ("KEYPORT_SIGNING_KEY_REFRESH_SECONDS", "1"),
        ("KEYPORT_REVOCATION_REFRESH_SECONDS", "1"),
    ];
    let a = spawn_app_with(backend, &refresh).await;
    let b = spawn_sibling(&a, &refresh).await;
    let integration = a
        .integration("admin", "reports:read webhooks:write keys:manage")
        .await;
    let email = integration.user.email.clone();

    let from_a = a.token_for(&integration).await;
    let from_b = b.token_for(&integration).await;
    assert_eq!(
        b.push(&from_a, "both", &json!({"n": 1}), None)
            .await
            .status(),
        201
    );
    assert_eq!(a.pull(&from_b, "both", "").await.status(), 200);

    // Revocation through A: refused by A at once, by B (which holds the key
    // in its credential cache) within a second.
    let session = a.session_for(&email, "two instances passphrase").await;
    let victim = a.key(&email, None).await;
    for _ in 0..2 {
        assert_eq!(
            b.token_status(&victim.key.client_id, victim.secret.expose())
                .await,
            200
        );
    }
    let revoked = a
        .api(
            Method::POST,
            &format!("/api/v1/keys/{}/revoke", victim.key.id),
            &session,
        )
        .sent()
        .await;
    assert_eq!(revoked.status(), 200);
    let revoked_at = Instant::now();
    a.token_answer(
        &victim.key.client_id,
        victim.secret.expose(),
        401,
        "refused at once where it was revoked",
    )
    .await;
    loop {
        let refused = b
            .request_token(&victim.key.client_id, victim.secret.expose())
            .await;
        if refused.status() == 401 {
            assert_eq!(json_body(refused).await["error"], "invalid_client");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "B still gives the key revoked through A tokens after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "{backend:?}: key revocation seen by the other instance after {:?}",
        revoked_at.elapsed()
    );

    // A token revoked (RFC 7009) through A is refused by B within the
    // revocation refresh interval (1 s).
    let doomed = a.token_for(&integration).await;
    assert_eq!(b.pull(&doomed, "both", "").await.status(), 200);
    let revoked = a.token_call("/oauth/revoke", &integration, &doomed).await;
    assert_eq!(revoked.status(), 200);
    let revoked_at = Instant::now();
    while b.pull(&doomed, "both", "").await.status() != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "B still accepts a token revoked through A"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{backend:?}: token revocation seen by the other instance after {:?}",
        revoked_at.elapsed()
    );

    // Rotation through A's store: B publishes the new key and signs with it
    // within the refresh interval (1 s), and A accepts what B signs.
    let new_kid = KeyRing::rotate(&a.store, SigningAlgorithm::Es256)
        .await
        .unwrap();
    let rotated = Instant::now();
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    loop {
        let jwks = json_body(b.client.get(b.url("/.well-known/jwks.json")).sent().await).await;
        let published = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == new_kid.as_str());
        if published && kid_of(&b.token_for(&integration).await) == new_kid {
            break;
        }
        assert!(
            rotated.elapsed() < Duration::from_secs(3),
            "B did not pick up the rotation within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{backend:?}: rotation published by the other instance after {:?}",
        rotated.elapsed()
    );
    let signed_by_new = b.token_for(&integration).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while a.pull(&signed_by_new, "both", "").await.status() != 200 {
        assert!(Instant::now() < deadline, "A never accepted the new key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.pull(&from_a, "both", "").await.status(),
        200,
        "tokens of the retired key stay valid"
    );

    // 20 concurrent creations through both instances; one key is active, the
    // limit is 3: exactly two are created.
    let creations = (0..20).map(|n| {
        let app = if n % 2 == 0 { &a } else { &b };
        let request = app
            .api(Method::POST, "/api/v1/keys", &session)
            .json(&json!({"name": format!("race {n}")}));
        async move {
            let response = request.sent().await;
            status_and_json(response).await
        }
    });
    let results = futures_util::future::join_all(creations).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results
        .iter()
        .filter(|(s, body)| *s == 409 && body["error"] == "key_limit_reached")
        .count();
    assert_eq!(
        (created, refused),
        (2, 18),
        "{:?}",
        results
            .iter()
            .map(|(s, b)| (s, &b["error"]))
            .collect::<Vec<_>>()
    );
    let listed = json_body(a.api(Method::GET, "/api/v1/keys", &session).sent().await).await;
    let active = listed["keys"]
        .as_array()
        .expect("a key list")
        .iter()
        .filter(|k| k["status"] == "active")
        .count();
    assert_eq!(active, 3);
}

crate::on_both_backends!(
    answered_pushes_survive_kill_9_and_retries_store_each_once,
    two_instances_on_one_database_agree,
);
