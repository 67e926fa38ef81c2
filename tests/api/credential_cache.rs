//! The credential cache across processes: separate `keyport serve`
//! processes on one database, and the CLI. A change made through one
//! instance or the CLI reaches the other within one second (each test
//! measures and prints the delay); an instance whose listening connection
//! is killed reads the database until it listens again, then trusts its
//! cache again without a restart; a database that goes away under load gets
//! 503s, never a token it should not give.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use keyport::domain::Principal;
use keyport::service::Service;
use keyport::service::keys::{self, CreatedKey, NewKeyRequest};
use keyport::service::tenants::{self, Tenant};
use keyport::service::users;
use keyport::storage::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::faults::{FlakyProxy, Link, through_proxy};
use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, READ_AND_PUSH, ServedBinary, TestApp, TestDatabase, json_body, keyport_at,
    settings_for, spawn_app_with, status_and_json,
};

/// What every served instance here shares: one issuer, and no throttling of
/// the refusals the tests provoke on purpose.
const SERVE_ENV: &[(&str, &str)] = &[
    ("KEYPORT_ISSUER", "http://keyport.test"),
    ("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "100000"),
];

/// The promise: a change is seen by every other instance within this.
const WITHIN: Duration = Duration::from_secs(1);

fn serve(url: &str, log: Arc<Mutex<String>>) -> ServedBinary {
    let mut command = ServedBinary::command(url, 2);
    command.envs(SERVE_ENV.iter().copied());
    ServedBinary::start(command, log)
}

/// The service layer in this test process, on the same database: a process
/// other than every served instance, like the CLI.
async fn outside_service(db: &TestDatabase) -> Service {
    let settings = settings_for(&db.url, &[]);
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("connect and migrate");
    Service::new(store, Arc::new(settings))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Runs the `keyport` binary on `url`'s database (only this test's
/// configuration applies); panics unless it succeeds.
async fn cli(url: &str, args: &[&str]) {
    let (code, stdout, stderr) = keyport_at(url, args).await;
    assert_eq!(code, Some(0), "keyport {args:?}: {stdout}{stderr}");
}

async fn new_key(service: &Service, email: &str, expires_in: Option<Duration>) -> CreatedKey {
    keys::create_key(
        service,
        &Principal::operator(),
        NewKeyRequest {
            owner_email: Some(email),
            name: "cached",
            scopes: None,
            expires_in,
            token_ttl: None,
            sigv4: false,
        },
    )
    .await
    .expect("create key")
}

async fn new_user(service: &Service, tenant: &Tenant, email: &str, role: &str) {
    users::create_user(
        service,
        &Principal::operator(),
        users::NewUserRequest {
            tenant: Some(&tenant.id),
            email,
            role,
            permissions: "reports:read webhooks:write keys:manage",
        },
    )
    .await
    .expect("create user");
}

/// A token request to `server` for `key`, narrowed to `scope` if given.
async fn token(
    http: &reqwest::Client,
    server: &ServedBinary,
    key: &CreatedKey,
    scope: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let response = http
        .post(server.url("/oauth/token"))
        .basic_auth(&key.key.client_id, Some(key.secret.expose()))
        .form(&form)
        .sent()
        .await;
    status_and_json(response).await
}

/// The claims of a JWT, unverified (the server that issued it is trusted
/// here; only `kp_rl` is read).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `keyport_credential_cache_lookups_total{result=…}` and
/// `keyport_credential_cache_trusted` from `/metrics`.
async fn cache_metrics(http: &reqwest::Client, server: &ServedBinary) -> (u64, u64, u64, u64) {
    let text = http
        .get(server.url("/metrics"))
        .sent()
        .await
        .text()
        .await
        .expect("text");
    let value = |series: &str| crate::helpers::metric(&text, series);
    (
        value("keyport_credential_cache_lookups_total{result=\"hit\"}"),
        value("keyport_credential_cache_lookups_total{result=\"miss\"}"),
        value("keyport_credential_cache_lookups_total{result=\"bypass\"}"),
        value("keyport_credential_cache_trusted"),
    )
}

/// `/readyz`'s `credential_cache` (`trusted`, `bypassed`, `off`).
async fn cache_state(http: &reqwest::Client, server: &ServedBinary) -> String {
    match http.get(server.url("/readyz")).send().await {
        Ok(response) => json_body(response).await["credential_cache"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        Err(_) => String::new(),
    }
}

/// Waits (at most 20 s: start-up) until `server` trusts its cache.
async fn until_trusted(http: &reqwest::Client, server: &ServedBinary) {
    let started = Instant::now();
    while cache_state(http, server).await != "trusted" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the cache was never trusted:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances serving one database, both trusting their caches, and a
/// company whose admin holds a token from instance A.
struct TwoInstances {
    db: TestDatabase,
    outside: Service,
    tenant: Tenant,
    a: ServedBinary,
    b: ServedBinary,
    http: reqwest::Client,
    admin_token: String,
}

impl TwoInstances {
    async fn start(backend: Backend, company: &str, admin_email: &str) -> TwoInstances {
        let db = TestDatabase::create(backend).await;
        let outside = outside_service(&db).await;
        let tenant = tenants::create_tenant(&outside, &Principal::operator(), company)
            .await
            .expect("tenant");
        new_user(&outside, &tenant, admin_email, "admin").await;
        let admin_key = new_key(&outside, admin_email, None).await;
        let a = serve(&db.url, Arc::default());
        let b = serve(&db.url, Arc::default());
        let http = http();
        until_trusted(&http, &a).await;
        until_trusted(&http, &b).await;
        let (status, body) = token(&http, &a, &admin_key, None).await;
        assert_eq!(status, 200, "{body}");
        let admin_token = body["access_token"].as_str().expect("token").to_owned();
        TwoInstances {
            db,
            outside,
            tenant,
            a,
            b,
            http,
            admin_token,
        }
    }
}

/// Asks `server` every 10 ms until `seen` holds for its answer; the time
/// from `since` to the first such answer.
async fn delay_until(
    since: Instant,
    what: &str,
    mut ask: impl AsyncFnMut() -> (u16, Value),
    seen: impl Fn(u16, &Value) -> bool,
) -> Duration {
    loop {
        let (status, body) = ask().await;
        if seen(status, &body) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{what}: never seen within 10 s (last answer {status} {body})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

enum Through {
    /// An HTTP call to instance A, with the admin's token.
    InstanceA(Method, String, Option<Value>),
    /// The `keyport` CLI, as the operator.
    Cli(Vec<String>),
    /// Nothing: a key of this owner, made just before, expires by itself.
    Expiry(String),
}

/// Keys revoked, disabled, deleted or expired, and owners disabled or given
/// fewer permissions, through instance A or through the CLI, and a company
/// default rate changed: instance B, which had the key in its cache, stops
/// giving it tokens (or gives the new rate) within one second.
async fn changes_through_one_instance_or_the_cli_reach_the_other_within_a_second(backend: Backend) {
    let TwoInstances {
        db,
        outside,
        tenant,
        a,
        b,
        http,
        admin_token,
    } = TwoInstances::start(backend, "Cached Co", "admin@cached.test").await;

    let mut scenarios: Vec<(&str, CreatedKey, Through)> = Vec::new();
    for (n, what) in [
        "key revoked through A",
        "key disabled through A",
        "key deleted through A",
        "owner loses a permission through A",
        "key revoked through the CLI",
        "key disabled through the CLI",
        "key deleted through the CLI",
        "owner disabled through the CLI",
        "owner loses a permission through the CLI",
        "key expired",
    ]
    .into_iter()
    .enumerate()
    {
        // Each its own owner, so no change touches another scenario's key.
        let email = format!("owner{n}@cached.test");
        new_user(&outside, &tenant, &email, "member").await;
        // The owner's first key signs their webhooks (and so may not be
        // deleted); the scenario's key is the second. The expiring key is
        // made again just before its turn (below).
        new_key(&outside, &email, None).await;
        let key = new_key(&outside, &email, None).await;
        let id = key.key.id.clone();
        let client_id = key.key.client_id.clone();
        let user_id = key.key.owner_id.clone();
        let cli = |args: &[&str]| Through::Cli(args.iter().map(|s| s.to_string()).collect());
        let through = match what {
            "key revoked through A" => {
                Through::InstanceA(Method::POST, format!("/api/v1/keys/{id}/revoke"), None)
            }
            "key disabled through A" => {
                Through::InstanceA(Method::POST, format!("/api/v1/keys/{id}/disable"), None)
            }
            "key deleted through A" => Through::InstanceA(
                Method::DELETE,
                format!("/api/v1/keys/{id}"),
                Some(json!({"confirm": key.key.deletion_phrase()})),
            ),
            "owner loses a permission through A" => Through::InstanceA(
                Method::PATCH,
                format!("/api/v1/users/{user_id}"),
                Some(json!({"permissions": ["webhooks:write"]})),
            ),
            "key revoked through the CLI" => cli(&["key", "revoke", &client_id]),
            "key disabled through the CLI" => cli(&["key", "disable", &client_id]),
            "key deleted through the CLI" => cli(&["key", "delete", &client_id]),
            "owner disabled through the CLI" => cli(&["user", "disable", &email]),
            "owner loses a permission through the CLI" => {
                cli(&["user", "set-permissions", &email, "webhooks:write"])
            }
            "key expired" => Through::Expiry(email),
            other => unreachable!("{other}"),
        };
        scenarios.push((what, key, through));
    }
    // The company's default rate, set by its admin through A: the `kp_rl`
    // of B's tokens for a key without a rate of its own follows it.
    new_user(&outside, &tenant, "rated@cached.test", "member").await;
    let rated = new_key(&outside, "rated@cached.test", None).await;
    scenarios.push((
        "company default rate changed through A",
        rated,
        Through::InstanceA(
            Method::PUT,
            "/api/v1/tenant/policy".to_owned(),
            Some(json!({"default_rate_limit": {"requests": 7, "per_seconds": 60}})),
        ),
    ));

    let mut delays = Vec::new();
    for (what, key, through) in &mut scenarios {
        if let Through::Expiry(email) = through {
            // Whole seconds: it expires 2 to 3 s from now.
            *key = new_key(&outside, email, Some(Duration::from_secs(3))).await;
        }
        let (what, key) = (*what, &*key);
        let scope = (what.contains("permission")).then_some("reports:read");
        // Warm-up: B reads the key once, then answers from memory.
        for _ in 0..2 {
            let (status, body) = token(&http, &b, key, scope).await;
            assert_eq!(status, 200, "{what}: before the change: {body}");
        }
        // B may still be hearing of the previous scenario's change (a
        // SQLite counter bump names no key, so B forgets every key when its
        // poll sees it): a key read after that is answered from memory.
        let mut from_memory = false;
        for _ in 0..20 {
            let (hits, misses, _, trusted) = cache_metrics(&http, &b).await;
            assert_eq!(trusted, 1, "{what}: B trusts its cache");
            let (status, body) = token(&http, &b, key, scope).await;
            assert_eq!(status, 200, "{what}: {body}");
            let (hits_after, misses_after, _, _) = cache_metrics(&http, &b).await;
            if (hits_after - hits, misses_after - misses) == (1, 0) {
                from_memory = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            from_memory,
            "{what}: a token request for a key read before is answered from memory"
        );
        let changed_at = match through {
            Through::InstanceA(method, path, body) => {
                let mut request = http
                    .request(method.clone(), a.url(path))
                    .bearer_auth(&admin_token);
                if let Some(body) = body {
                    request = request.json(body);
                }
                let response = request.sent().await;
                let status = response.status();
                assert!(status.is_success(), "{what}: {}", json_body(response).await);
                Instant::now()
            }
            Through::Cli(args) => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                cli(&db.url, &args).await;
                Instant::now()
            }
            Through::Expiry(_) => {
                let expires_at = key.key.expires_at.expect("an expiring key");
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("clock")
                    .as_secs_f64();
                let until = Duration::from_secs_f64((expires_at as f64 - now).max(0.0));
                tokio::time::sleep(until).await;
                Instant::now()
            }
        };
        let delay = delay_until(
            changed_at,
            what,
            async || token(&http, &b, key, scope).await,
            |status, body| {
                if what == "company default rate changed through A" {
                    status == 200
                        && claims(body["access_token"].as_str().unwrap_or(""))["kp_rl"]["requests"]
                            == 7
                } else {
                    status != 200
                }
            },
        )
        .await;
        eprintln!("{backend:?}: {what}: seen by instance B after {delay:?}");
        delays.push((what, delay));
    }
    for (what, delay) in &delays {
        assert!(
            *delay <= WITHIN,
            "{backend:?}: {what}: instance B took {delay:?}, over {WITHIN:?}"
        );
    }
    let worst = delays.iter().map(|(_, d)| *d).max().unwrap_or_default();
    eprintln!(
        "{backend:?}: slowest of {} changes seen by the other instance after {worst:?}",
        delays.len()
    );
}

/// A revocation whose notification is lost: logged and numbered in the
/// change log like any other (migration 0020), but never notified, as
/// happens to a change committed while an instance is not listening.
async fn revoke_with_notification_lost(db: &TestDatabase, client_id: &str) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut tx = connection.begin().await.expect("begin");
    for sql in [
        "ALTER TABLE credential_change_log DISABLE TRIGGER credential_change_log_sequenced",
        "UPDATE api_keys SET revoked_at = 1, revoked_by = 'test' WHERE client_id = $1",
        "UPDATE credential_change_log l SET seq = s.seq + n.rank \
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS rank FROM credential_change_log \
               WHERE seq IS NULL) n, credential_change_seq s WHERE l.id = n.id",
        "UPDATE credential_change_seq SET seq = (SELECT max(seq) FROM credential_change_log)",
        "ALTER TABLE credential_change_log ENABLE TRIGGER credential_change_log_sequenced",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .expect(sql);
    }
    tx.commit().await.expect("commit");
}

/// The listening connection of instance B killed with
/// `pg_terminate_backend`, after a revocation B did not hear: B catches up
/// from the change log (one query), so it refuses the revoked key within a
/// second, and keeps answering the other key from memory (nothing is
/// forgotten wholesale); then it listens again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_listening_connection_catches_up_from_the_change_log() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let (_, (doomed, steady)) = member_with_two_keys(&db, "Listening Co", "m@listening.test").await;
    let log: Arc<Mutex<String>> = Arc::default();
    let b = serve(&db.url, Arc::clone(&log));
    let http = http();
    until_trusted(&http, &b).await;
    for key in [&doomed, &steady, &doomed] {
        assert_eq!(token(&http, &b, key, None).await.0, 200);
    }

    // Not notified, the revocation is not seen: B answers from memory,
    // without reading the database. (This is what the notification is for.)
    revoke_with_notification_lost(&db, &doomed.key.client_id).await;
    assert_eq!(
        token(&http, &b, &doomed, None).await.0,
        200,
        "a change not notified is not seen while the cache is trusted"
    );

    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let name = keyport::storage::credential_listener_name(b.child.id());
    let old_pid: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .expect("B's listening connection is there, named");
    let catch_ups = catch_up_count(&http, &b).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(old_pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);
    let killed_at = Instant::now();

    // B answers correctly: the revoked key is refused (caught up from the
    // log), the other still gets tokens, from memory.
    let delay = delay_until(
        killed_at,
        "the revocation not notified, after the kill",
        async || token(&http, &b, &doomed, None).await,
        |status, _| status == 401,
    )
    .await;
    eprintln!("the connection killed: the revocation not notified refused after {delay:?}");
    assert!(delay <= WITHIN, "took {delay:?}");
    let (status, body) = token(&http, &b, &doomed, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (hits, misses, _, _) = cache_metrics(&http, &b).await;
    assert_eq!(token(&http, &b, &steady, None).await.0, 200);
    let (hits_after, misses_after, _, _) = cache_metrics(&http, &b).await;
    assert_eq!(
        (hits_after, misses_after),
        (hits + 1, misses),
        "the other key still answered from memory"
    );
    assert!(
        catch_up_count(&http, &b).await > catch_ups,
        "caught up from the log"
    );

    // Listening again, on a new connection, and trusted again: no restart.
    let started = Instant::now();
    let new_pid: i32 = loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .expect("query");
        if let Some(pid) = pid.filter(|p| *p != old_pid) {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never listened again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    until_trusted(&http, &b).await;
    eprintln!(
        "listening again (backend {old_pid} -> {new_pid}) and trusted after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(cache_metrics(&http, &b).await.3, 1);
    let (hits, _, _, _) = cache_metrics(&http, &b).await;
    for _ in 0..3 {
        assert_eq!(token(&http, &b, &steady, None).await.0, 200);
    }
    let (hits_after, _, _, _) = cache_metrics(&http, &b).await;
    assert!(hits_after >= hits + 2, "answered from memory again");
    let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        log.contains("lost the connection that listens for credential changes"),
        "{log}"
    );
    assert!(b.child.id() > 0, "the same process throughout");
}

/// `keyport_credential_cache_catch_ups_total{result="ok"}` from `/metrics`.
async fn catch_up_count(http: &reqwest::Client, server: &ServedBinary) -> u64 {
    let text = http
        .get(server.url("/metrics"))
        .sent()
        .await
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| {
            line.strip_prefix("keyport_credential_cache_catch_ups_total{result=\"ok\"}")
        })
        .and_then(|rest| rest.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// No heartbeat ever arrives (a listening connection late or gone): the
/// cache's lease lapses again and again, and each lapse costs one read of
/// the change log for every lookup waiting, never one database read per
/// lookup; a revocation made by another process meanwhile is still seen
/// within the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_lapsed_lease_costs_one_catch_up_not_one_read_per_request() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let (outside, (doomed, steady)) =
        member_with_two_keys(&db, "Lapsing Co", "m@lapsing.test").await;
    let lease = Duration::from_millis(300);
    let cache = keyport::service::credential_cache::CredentialCache::new(100, lease);
    let alive = Arc::new(());
    assert!(cache.follow_change_log(&outside.store, Arc::downgrade(&alive)));

    // Sixteen lookups at a time for 1.5 s: five lease lapses at least.
    let lookups = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let round = (0..16).map(|n| {
            let key = if n % 2 == 0 { &doomed } else { &steady };
            cache.key_by_client_id(&outside.store, &key.key.client_id)
        });
        for found in futures_util::future::join_all(round).await {
            let found = found.expect("lookup").expect("known");
            assert!(found.check(keyport::domain::now()).is_ok());
            lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lookups = lookups.into_inner();
    let (ok, failed) = cache.catch_ups();
    eprintln!(
        "{lookups} lookups over {:?} with no heartbeat: {ok} catch-ups, {} database reads",
        started.elapsed(),
        cache.bypasses()
    );
    assert_eq!(cache.bypasses(), 0, "no lookup read the database");
    assert_eq!(failed, 0);
    let lapses = u64::try_from(started.elapsed().as_millis() / lease.as_millis()).unwrap();
    assert!(
        ok >= 2 && ok <= 2 * (lapses + 2),
        "{ok} catch-ups for {lapses} lapses of the lease"
    );
    assert!(lookups > 10 * ok, "{lookups} lookups, {ok} catch-ups");

    // Another process revokes a key: seen within the lease.
    keys::revoke_key(&outside, &Principal::operator(), &doomed.key.client_id)
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    loop {
        let found = cache
            .key_by_client_id(&outside.store, &doomed.key.client_id)
            .await
            .expect("lookup")
            .expect("known");
        if found.check(keyport::domain::now()).is_err() {
            break;
        }
        assert!(
            revoked_at.elapsed() <= WITHIN,
            "the revocation was not seen within the lease"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("the revocation seen after {:?}", revoked_at.elapsed());
    drop(alive);
}

/// Every connection of the shared pool busy (request queries stuck behind
/// a lock, as slow queries hold them under load) and no heartbeat at all:
/// the cache still renews its lease from the change log, which it reads on
/// a connection of its own, so lookups of held keys keep answering from
/// memory at once instead of queueing for the pool with the requests; a
/// revocation made meanwhile by another process is still seen within the
/// lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_catch_up_never_waits_behind_a_saturated_pool() {
    use sqlx::Connection;
    let db = TestDatabase::create(Backend::Postgres).await;
    let (_, (doomed, steady)) = member_with_two_keys(&db, "Busy Co", "m@busy.test").await;
    let settings = settings_for(
        &db.url,
        &[
            ("KEYPORT_DATABASE_MAX_CONNECTIONS", "2"),
            ("KEYPORT_DATABASE_TIMEOUT_SECONDS", "2"),
        ],
    );
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("connect");
    let lease = Duration::from_secs(1);
    let cache = keyport::service::credential_cache::CredentialCache::new(100, lease);
    let alive = Arc::new(());
    assert!(cache.follow_change_log(&store, Arc::downgrade(&alive)));
    for key in [&doomed, &steady] {
        let found = cache
            .key_by_client_id(&store, &key.key.client_id)
            .await
            .expect("lookup");
        assert!(found.is_some(), "held from now on");
    }

    // Every query that reads a company waits behind this lock: key reads
    // through the pool hang, holding its two connections, and more queue.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let stuck: Vec<_> = (0..4)
        .map(|n| {
            let (cache, store) = (cache.clone(), store.clone());
            tokio::spawn(async move {
                // Unknown client IDs: read from the database, through the pool.
                let _ = cache
                    .key_by_client_id(&store, &format!("kpc_unknown{n}"))
                    .await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bypasses = cache.bypasses();

    // Held keys, for three leases: answered at once, none read the pool.
    let (catch_ups, _) = cache.catch_ups();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut lookups = 0;
    while started.elapsed() < 3 * lease {
        let asked = Instant::now();
        let found = cache
            .key_by_client_id(&store, &steady.key.client_id)
            .await
            .expect("lookup")
            .expect("known");
        slowest = slowest.max(asked.elapsed());
        assert!(found.check(keyport::domain::now()).is_ok());
        lookups += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (catch_ups_after, failed) = cache.catch_ups();
    eprintln!(
        "pool saturated for {:?}: {lookups} lookups of a held key, the slowest {slowest:?}, \
         {} catch-ups",
        started.elapsed(),
        catch_ups_after - catch_ups
    );
    assert_eq!(failed, 0);
    assert!(catch_ups_after >= catch_ups + 3, "the lease was renewed");
    assert_eq!(cache.bypasses(), bypasses, "no held key read the pool");
    assert!(slowest < lease, "a lookup of a held key waited {slowest:?}");

    // Another process revokes a key (a write the lock does not hold up):
    // within the lease the cache stops answering for it from memory (it
    // then needs the database, which the lock holds up: no answer rather
    // than a wrong one), the pool still saturated.
    let mut other = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("UPDATE api_keys SET revoked_at = 1, revoked_by = 'test' WHERE client_id = $1")
        .bind(&doomed.key.client_id)
        .execute(&mut other)
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    let forgotten_after = loop {
        let asked = revoked_at.elapsed();
        match cache.key_by_client_id(&store, &doomed.key.client_id).await {
            Ok(Some(found)) if found.check(keyport::domain::now()).is_ok() => {
                assert!(
                    asked <= WITHIN,
                    "the revocation was not seen within the lease"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => break asked,
        }
    };
    eprintln!("the revocation seen after {forgotten_after:?}, the pool saturated");
    assert!(forgotten_after <= WITHIN, "took {forgotten_after:?}");
    assert_eq!(cache.bypasses(), bypasses, "no lookup bypassed the cache");

    lock.rollback().await.expect("unlock");
    for task in stuck {
        task.await.expect("the stuck lookups end");
    }
    drop(alive);
}

/// The change log (migration 0020): numbers are given in commit order
/// (a transaction that wrote first but commits last gets the later number),
/// a rolled-back change takes none, and a reader that asks for changes
/// after a pruned number is told to forget everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_change_log_numbers_changes_in_commit_order_without_gaps() {
    use keyport::storage::CredentialChange;
    use sqlx::Connection;
    let db = TestDatabase::create(Backend::Postgres).await;
    let outside = outside_service(&db).await;
    let store = &outside.store;
    let tenant = tenants::create_tenant(&outside, &Principal::operator(), "Log Co")
        .await
        .expect("tenant");
    new_user(&outside, &tenant, "m@log.test", "member").await;
    let first = store.credential_changes_since(None).await.expect("read");
    assert_eq!(first.changes, None, "no number known: forget everything");
    let a = new_key(&outside, "m@log.test", None).await;
    let b = new_key(&outside, "m@log.test", None).await;
    let start = store
        .credential_changes_since(Some(first.latest))
        .await
        .expect("read");
    assert_eq!(
        start.changes.as_deref(),
        Some(
            &[
                CredentialChange::Key(a.key.client_id.clone()),
                CredentialChange::Key(b.key.client_id.clone())
            ][..]
        )
    );
    let key = |key: &CreatedKey| CredentialChange::Key(key.key.client_id.clone());
    let since = async |n: i64| {
        let read = store.credential_changes_since(Some(n)).await.expect("read");
        (read.latest - n, read.changes.expect("complete"))
    };

    // Rolled back: no number taken.
    let mut one = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut two = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let revoke = "UPDATE api_keys SET revoked_at = 1 WHERE client_id = $1";
    let mut tx = one.begin().await.expect("begin");
    sqlx::query(revoke)
        .bind(&a.key.client_id)
        .execute(&mut *tx)
        .await
        .expect("revoke");
    tx.rollback().await.expect("rollback");
    assert_eq!(since(start.latest).await, (0, vec![]));

    // A writes first, B commits first: B gets the first number.
    let mut tx_a = one.begin().await.expect("begin");
    sqlx::query(revoke)
        .bind(&a.key.client_id)
        .execute(&mut *tx_a)
        .await
        .expect("revoke a");
    let mut tx_b = two.begin().await.expect("begin");
    sqlx::query(revoke)
        .bind(&b.key.client_id)
        .execute(&mut *tx_b)
        .await
        .expect("revoke b");
    tx_b.commit().await.expect("commit b");
    assert_eq!(since(start.latest).await, (1, vec![key(&b)]));
    tx_a.commit().await.expect("commit a");
    assert_eq!(since(start.latest).await, (2, vec![key(&b), key(&a)]));
    assert_eq!(since(start.latest + 1).await, (1, vec![key(&a)]));

    // Pruned: whoever asks for what is gone forgets everything; whoever is
    // up to date is told there is nothing new.
    let latest = start.latest + 2;
    assert!(
        store
            .prune_credential_change_log(i64::MAX)
            .await
            .expect("prune")
            >= 4
    );
    let pruned = store
        .credential_changes_since(Some(start.latest))
        .await
        .expect("read");
    assert_eq!((pruned.latest, pruned.changes), (latest, None));
    assert_eq!(since(latest).await, (0, vec![]));
    // A number from the future (a database restored to an older state).
    let restored = store
        .credential_changes_since(Some(latest + 5))
        .await
        .expect("read");
    assert_eq!(restored.changes, None);
}

/// A company with a member and two keys, made outside the server, and a
/// proxy between PostgreSQL and the server a test starts on `proxied`,
/// which the test cuts to stand in for an outage.
struct BehindProxy {
    outside: Service,
    keys: (CreatedKey, CreatedKey),
    proxy: FlakyProxy,
    proxied: String,
}

/// A company with a member `email` holding two keys, made outside any
/// server.
async fn member_with_two_keys(
    db: &TestDatabase,
    company: &str,
    email: &str,
) -> (Service, (CreatedKey, CreatedKey)) {
    let outside = outside_service(db).await;
    let tenant = tenants::create_tenant(&outside, &Principal::operator(), company)
        .await
        .expect("tenant");
    new_user(&outside, &tenant, email, "member").await;
    let keys = (
        new_key(&outside, email, None).await,
        new_key(&outside, email, None).await,
    );
    (outside, keys)
}

async fn behind_proxy(db: &TestDatabase, company: &str, email: &str) -> BehindProxy {
    let (outside, keys) = member_with_two_keys(db, company, email).await;
    let (_, target) = through_proxy(&db.url, 0);
    let proxy = FlakyProxy::start(target).await;
    let proxied = through_proxy(&db.url, proxy.port).0;
    BehindProxy {
        outside,
        keys,
        proxy,
        proxied,
    }
}

/// PostgreSQL going away under load and coming back (every connection
/// closed and new ones refused, as a restart does; a proxy stands in for
/// restarting the machine's PostgreSQL, which other tests share): B answers
/// only 200, 401 and 503, never a token for a key revoked (by another
/// process) while B could not hear, and serves from memory again once the
/// database is back, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gone_under_load_answers_503_and_never_a_token_it_should_not() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let BehindProxy {
        outside,
        keys: (doomed, steady),
        proxy,
        proxied,
    } = behind_proxy(&db, "Outage Co", "m@outage.test").await;
    let mut command = ServedBinary::command(&proxied, 2);
    command
        .envs(SERVE_ENV.iter().copied())
        .env("KEYPORT_DATABASE_TIMEOUT_SECONDS", "1")
        // A partition, not an outage: the database stays up for the other
        // process, which revokes meanwhile. Held keys answering through an
        // outage (the default) would be wrong here; the strict rule is kept.
        .env("KEYPORT_CREDENTIAL_CACHE_SERVE_STALE_SECONDS", "0");
    let b = ServedBinary::start(command, Arc::default());
    let http = http();
    until_trusted(&http, &b).await;

    // Load: four clients asking for tokens for both keys, until told to stop.
    let answers: Arc<Mutex<Vec<(Instant, bool, u16)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b = Arc::new(b);
    let doomed = Arc::new(doomed);
    let steady = Arc::new(steady);
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let (b, answers, stop, http) = (
                Arc::clone(&b),
                Arc::clone(&answers),
                Arc::clone(&stop),
                http.clone(),
            );
            let key = Arc::clone(if n % 2 == 0 { &doomed } else { &steady });
            let is_doomed = n % 2 == 0;
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let sent = Instant::now();
                    let status = token(&http, &b, &key, None).await.0;
                    answers.lock().unwrap().push((sent, is_doomed, status));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.set(Link::Refused);
    let down_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another process revokes the key meanwhile; B cannot hear of it.
    keys::revoke_key(&outside, &Principal::operator(), &doomed.key.client_id)
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set(Link::Up);
    let up_at = Instant::now();
    let started = Instant::now();
    loop {
        let steady_back = token(&http, &b, &steady, None).await.0 == 200;
        if steady_back && cache_state(&http, &b).await == "trusted" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "B never recovered:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "database back: B serves from memory again {:?} after",
        up_at.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for client in clients {
        client.await.expect("client");
    }

    let answers = answers.lock().unwrap().clone();
    let count = |f: &dyn Fn(&(Instant, bool, u16)) -> bool| answers.iter().filter(|a| f(a)).count();
    eprintln!(
        "{} answers: {} x 200, {} x 401, {} x 503 ({} while down)",
        answers.len(),
        count(&|a| a.2 == 200),
        count(&|a| a.2 == 401),
        count(&|a| a.2 == 503),
        count(&|a| a.0 >= down_at && a.0 < up_at && a.2 == 503),
    );
    for (sent, is_doomed, status) in &answers {
        assert!(
            matches!(status, 200 | 401 | 503),
            "only 200, 401 or 503: got {status}"
        );
        if *is_doomed && *sent >= revoked_at {
            assert_ne!(
                *status, 200,
                "a token for a key revoked while B could not hear"
            );
        }
        if *status == 401 {
            assert!(
                *is_doomed && *sent >= revoked_at,
                "401 only for the revoked key"
            );
        }
    }
    assert!(
        count(&|a| a.0 >= down_at && a.0 < up_at && a.2 == 503) > 0,
        "the outage was seen"
    );
    assert!(
        count(&|a| a.0 >= revoked_at && a.1 && a.2 == 401) > 0,
        "the revoked key was refused after the outage"
    );
    assert!(
        count(&|a| a.0 >= up_at && !a.1 && a.2 == 200) > 0,
        "tokens again after the outage"
    );
}

/// PostgreSQL down for this instance (every connection closed and new ones
/// refused, as a restart does; a proxy stands in, since the machine's
/// PostgreSQL is shared with other tests): once the probe has found it down,
/// a key the cache holds keeps getting tokens (nothing can be revoked while
/// the database is down), a key it does not hold gets 503 with
/// `Retry-After` at once instead of after the pool's timeout, and service
/// returns when the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_an_outage_held_keys_get_tokens_and_others_503_at_once() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let BehindProxy {
        outside,
        keys: (held, unheld),
        proxy,
        proxied,
    } = behind_proxy(&db, "Restart Co", "m@restart.test").await;
    // The pool's timeout is the default (5 s): what a 503 would wait for
    // without the breaker.
    let pool_timeout = Duration::from_secs(5);
    let mut command = ServedBinary::command(&proxied, 2);
    command.envs(SERVE_ENV.iter().copied());
    let b = ServedBinary::start(command, Arc::default());
    let http = http();
    until_trusted(&http, &b).await;
    assert_eq!(token(&http, &b, &held, None).await.0, 200);

    proxy.set(Link::Refused);
    let down_at = Instant::now();
    // The probe finds it down (within a few of its 100 ms rounds).
    let timed = async |key: &CreatedKey| {
        let sent = Instant::now();
        let response = http
            .post(b.url("/oauth/token"))
            .basic_auth(&key.key.client_id, Some(key.secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .sent()
            .await;
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status().as_u16();
        (status, retry_after, sent.elapsed())
    };
    // The moment the link drops, before the probe may have said so (it
    // runs every 100 ms): a held key is answered from memory, not by a read
    // of the database that just went away.
    while !b
        .log()
        .contains("lost the connection that listens for credential changes")
    {
        assert!(
            down_at.elapsed() < Duration::from_secs(10),
            "the lost connection was never noticed:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        timed(&held).await.0,
        200,
        "a held key just after the link dropped"
    );
    while !b.log().contains("the database is down") {
        assert!(
            down_at.elapsed() < Duration::from_secs(10),
            "the outage was never noticed:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("the outage known after {:?}", down_at.elapsed());
    let mut slowest_503 = Duration::ZERO;
    let mut held_tokens = 0;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(1500) {
        let (status, retry_after, took) = timed(&unheld).await;
        assert_eq!(
            (status, retry_after.as_deref()),
            (503, Some("1")),
            "a key not held: 503 with Retry-After"
        );
        slowest_503 = slowest_503.max(took);
        let (status, _, _) = timed(&held).await;
        assert_eq!(
            status,
            200,
            "a held key gets tokens through the outage:\n{}",
            b.log()
        );
        held_tokens += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "during the outage: {held_tokens} tokens for the held key; the slowest 503 took \
         {slowest_503:?} (the pool's timeout is {pool_timeout:?})"
    );
    assert!(
        slowest_503 < pool_timeout / 2,
        "503s wait for the pool: {slowest_503:?}"
    );

    proxy.set(Link::Up);
    let up_at = Instant::now();
    loop {
        if timed(&unheld).await.0 == 200 && cache_state(&http, &b).await == "trusted" {
            break;
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(15),
            "never recovered:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("service back {:?} after the database", up_at.elapsed());
    assert_eq!(token(&http, &b, &held, None).await.0, 200);
    // A revocation after the outage is seen again.
    keys::revoke_key(&outside, &Principal::operator(), &held.key.client_id)
        .await
        .expect("revoke");
    let revoked_at = Instant::now();
    let delay = delay_until(
        revoked_at,
        "a revocation after the outage",
        async || token(&http, &b, &held, None).await,
        |status, _| status == 401,
    )
    .await;
    assert!(delay <= WITHIN, "{delay:?}");
}

/// The cache's (hits, misses) for each of up to five tries of `ask`, until
/// one is `hits` hits and no miss. A cache that stopped trusting itself for a
/// moment (a late heartbeat on a busy machine) reads the database instead,
/// so a few tries are allowed; one that never answers from memory misses on
/// every try, and the caller's check of the last try fails.
async fn from_memory<F, Fut>(app: &TestApp, hits: u64, ask: F) -> Vec<(u64, u64)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (hits_before, misses_before) = app_lookups(app).await;
        ask().await;
        let (hits_after, misses_after) = app_lookups(app).await;
        seen.push((hits_after - hits_before, misses_after - misses_before));
        if seen.last() == Some(&(hits, 0)) {
            break;
        }
    }
    seen
}

/// `/metrics` of an in-process app: hits and misses.
async fn app_lookups(app: &TestApp) -> (u64, u64) {
    let text = app.get("/metrics").await.text().await.expect("metrics");
    let value = |series: &str| crate::helpers::metric(&text, series);
    (
        value("keyport_credential_cache_lookups_total{result=\"hit\"}"),
        value("keyport_credential_cache_lookups_total{result=\"miss\"}"),
    )
}

/// The instance that makes a change refuses at once: its own cache forgets
/// before it answers. The SQLite poll is slowed to a second here, so only
/// that forgetting can explain an immediate refusal.
async fn the_instance_that_makes_a_change_shows_it_at_once(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("KEYPORT_CREDENTIAL_CACHE_SQLITE_POLL_MS", "1000")],
    )
    .await;
    let started = Instant::now();
    while app.get("/readyz").await.status() != 200
        || json_body(app.get("/readyz").await).await["credential_cache"] != "trusted"
    {
        assert!(started.elapsed() < Duration::from_secs(10), "never trusted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let service = app.service();
    let integration = app.integration("member", READ_AND_PUSH).await;
    let email = integration.user.email.clone();
    let revoked = app.key(&email, None).await;
    let disabled = app.key(&email, None).await;
    let warm = |key: &CreatedKey| {
        let (id, secret) = (key.key.client_id.clone(), key.secret.expose().to_owned());
        let app = &app;
        async move {
            for _ in 0..2 {
                assert_eq!(app.request_token(&id, &secret).await.status(), 200);
            }
        }
    };
    for key in [&integration.key, &revoked, &disabled] {
        warm(key).await;
    }
    // Held, it is answered from memory.
    let seen = from_memory(&app, 2, || warm(&revoked)).await;
    assert_eq!(
        seen.last(),
        Some(&(2, 0)),
        "from memory: (hits, misses) per try {seen:?}"
    );

    keys::revoke_key(&service, &Principal::operator(), &revoked.key.client_id)
        .await
        .expect("revoke");
    app.token_answer(
        &revoked.key.client_id,
        revoked.secret.expose(),
        401,
        "the revoking instance refuses at once",
    )
    .await;

    keys::disable_key(&service, &Principal::operator(), &disabled.key.client_id)
        .await
        .expect("disable");
    let refused = app
        .request_token(&disabled.key.client_id, disabled.secret.expose())
        .await;
    assert_eq!(
        json_body(refused).await["error_description"],
        "the key is disabled"
    );

    users::change_user(
        &service,
        &Principal::operator(),
        &email,
        users::UserChange {
            role: None,
            permissions: Some("webhooks:write"),
        },
    )
    .await
    .expect("fewer permissions");
    let narrowed = app
        .request_scoped_token(
            integration.client_id(),
            integration.secret(),
            "reports:read",
        )
        .await;
    assert_eq!(narrowed.status(), 400, "the permission is gone at once");

    users::set_user_status(
        &service,
        &Principal::operator(),
        &email,
        keyport::domain::UserStatus::Disabled,
    )
    .await
    .expect("disable the owner");
    let refused = app
        .request_token(integration.client_id(), integration.secret())
        .await;
    assert_eq!(
        json_body(refused).await["error_description"],
        "the key's owner is disabled"
    );
}

/// A client ID the cache remembers as unknown works as soon as another
/// process creates a key with it (the insertion is announced too), within a
/// second; and an unknown client ID asked again is answered from memory.
async fn an_unknown_client_id_remembered_is_forgotten_when_another_process_creates_it(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "100000")]).await;
    let integration = app.integration("member", "reports:read").await;
    let started = Instant::now();
    while json_body(app.get("/readyz").await).await["credential_cache"] != "trusted" {
        assert!(started.elapsed() < Duration::from_secs(10), "never trusted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client_id = keyport::domain::ClientId::generate().to_string();
    let secret = keyport::domain::ClientSecret::generate();
    assert_eq!(app.token_status(&client_id, secret.expose()).await, 401);
    // Asked again, it is answered from memory.
    let seen = from_memory(&app, 1, || async {
        assert_eq!(app.token_status(&client_id, secret.expose()).await, 401);
    })
    .await;
    assert_eq!(
        seen.last(),
        Some(&(1, 0)),
        "the unknown client ID is remembered: (hits, misses) per try {seen:?}"
    );

    // Another process (this test, on a connection of its own) inserts it.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.db.url).await.expect("connect");
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'made elsewhere', 1, 1)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&integration.tenant.id)
    .bind(&integration.user.id)
    .bind(&client_id)
    .bind(secret.digest().to_hex())
    .execute(&pool)
    .await
    .expect("insert the key");
    pool.close().await;
    let created = Instant::now();
    let delay = delay_until(
        created,
        "the key made elsewhere",
        async || {
            let response = app.request_token(&client_id, secret.expose()).await;
            status_and_json(response).await
        },
        |status, _| status == 200,
    )
    .await;
    eprintln!(
        "{backend:?}: a client ID remembered as unknown works {delay:?} after its key was made elsewhere"
    );
    assert!(delay <= WITHIN, "{delay:?}");
}

/// A signed `GET /api/v1/whoami` to `server` with `key`'s SigV4 secret.
async fn signed_whoami(
    http: &reqwest::Client,
    server: &ServedBinary,
    key: &CreatedKey,
) -> (u16, Value) {
    let mut request = http.get(server.url("/api/v1/whoami"));
    for (name, value) in crate::sigv4::signed_get_headers(
        &key.key.client_id,
        key.secret.expose(),
        server.port,
        "/api/v1/whoami",
    ) {
        request = request.header(name, value);
    }
    status_and_json(request.sent().await).await
}

/// SigV4 keys revoked through instance A, disabled through the CLI, or
/// whose owner is disabled through the CLI: instance B, which answered the
/// key's signed requests from its credential cache (no database read),
/// refuses them within one second, with the refusal's code.
async fn a_sigv4_key_changed_elsewhere_is_refused_by_the_other_instance_within_a_second(
    backend: Backend,
) {
    let TwoInstances {
        db,
        outside,
        tenant,
        a,
        b,
        http,
        admin_token,
    } = TwoInstances::start(backend, "Signed Co", "admin@signed.test").await;

    let mut delays = Vec::new();
    for (n, (what, code)) in [
        ("key revoked through A", "key_revoked"),
        ("key disabled through the CLI", "key_disabled"),
        ("owner disabled through the CLI", "owner_disabled"),
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("signer{n}@signed.test");
        new_user(&outside, &tenant, &email, "member").await;
        new_key(&outside, &email, None).await;
        let key = keys::create_key(
            &outside,
            &Principal::operator(),
            NewKeyRequest {
                owner_email: Some(&email),
                name: "signs",
                scopes: None,
                expires_in: None,
                token_ttl: None,
                sigv4: true,
            },
        )
        .await
        .expect("create a SigV4 key");
        // The first signed request derives the signing key, the next reads
        // the key into the cache; after that B answers from memory (once B
        // has heard of the previous scenario's change).
        let mut from_memory = false;
        for _ in 0..20 {
            let (hits, misses, _, trusted) = cache_metrics(&http, &b).await;
            assert_eq!(trusted, 1, "{what}: B trusts its cache");
            let (status, body) = signed_whoami(&http, &b, &key).await;
            assert_eq!(status, 200, "{what}: before the change: {body}");
            let (hits_after, misses_after, _, _) = cache_metrics(&http, &b).await;
            if (hits_after - hits, misses_after - misses) == (1, 0) {
                from_memory = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            from_memory,
            "{what}: a signed request for a key read before is answered from memory"
        );
        let id = key.key.id.clone();
        let client_id = key.key.client_id.clone();
        match what {
            "key revoked through A" => {
                let response = http
                    .post(a.url(&format!("/api/v1/keys/{id}/revoke")))
                    .bearer_auth(&admin_token)
                    .sent()
                    .await;
                assert!(
                    response.status().is_success(),
                    "{what}: {}",
                    json_body(response).await
                );
            }
            "key disabled through the CLI" => cli(&db.url, &["key", "disable", &client_id]).await,
            "owner disabled through the CLI" => cli(&db.url, &["user", "disable", &email]).await,
            other => unreachable!("{other}"),
        }
        let changed_at = Instant::now();
        let delay = delay_until(
            changed_at,
            what,
            async || signed_whoami(&http, &b, &key).await,
            |status, body| status != 200 && body["error"] == code,
        )
        .await;
        eprintln!("{backend:?}: SigV4, {what}: refused by instance B after {delay:?}");
        delays.push((what, delay));
    }
    for (what, delay) in &delays {
        assert!(
            *delay <= WITHIN,
            "{backend:?}: SigV4, {what}: instance B took {delay:?}, over {WITHIN:?}"
        );
    }
}

crate::on_both_backends!(
    a_sigv4_key_changed_elsewhere_is_refused_by_the_other_instance_within_a_second,
    changes_through_one_instance_or_the_cli_reach_the_other_within_a_second,
    the_instance_that_makes_a_change_shows_it_at_once,
    an_unknown_client_id_remembered_is_forgotten_when_another_process_creates_it,
);
