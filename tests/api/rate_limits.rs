//! Per-key rate limits on the report and webhook APIs: the exact 429
//! boundary and its headers, tokens (`kp_rl`) and the key presented
//! directly, two instances sharing one Redis allowance, Redis stopping
//! mid-run (served under the per-instance limit, and the metrics say so),
//! the company default and its cap on members, bad input through the API
//! and the CLI. Each test has its own Redis key prefix, so tests running
//! at once never share a bucket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::Sent as _;
use crate::helpers::{
    Backend, TestApp, claims_of, colleague, eventually, json_body, keyport, keyport_json, person,
    s, spawn_app_with, spawn_sibling, strings_in,
};

const REDIS: &str = "redis://127.0.0.1:6379";

/// Settings that count in the machine's Redis under a prefix of this
/// test's own. The timeout is generous: on a loaded test machine a slow
/// answer would otherwise be a fallback, and the shared-allowance checks
/// would count in memory.
fn redis_settings(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEYPORT_REDIS_URL", url.to_owned()),
        ("KEYPORT_REDIS_KEY_PREFIX", prefix.to_owned()),
        ("KEYPORT_REDIS_TIMEOUT_MS", "2000".to_owned()),
    ]
}

fn fresh_prefix() -> String {
    format!("keyport-test-{}:", Uuid::new_v4().simple())
}

fn borrowed<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// How a call presents the key.
enum As<'a> {
    Token(&'a str),
    Key(&'a str),
}

/// A request to a report or webhook endpoint, as `who`.
async fn call(app: &TestApp, who: &As<'_>, endpoint: &str) -> Response {
    let (method, path) = match endpoint {
        "push" => (Method::POST, "/api/v1/webhooks/orders"),
        "pull" => (Method::GET, "/api/v1/reports/orders"),
        "pull_one" => (
            Method::GET,
            "/api/v1/reports/orders/0196f3a0-0000-7000-8000-000000000001",
        ),
        other => (Method::GET, other),
    };
    let mut request = app.client.request(method.clone(), app.url(path));
    request = match who {
        As::Token(token) => request.bearer_auth(token),
        As::Key(secret) => request.header("x-api-key", *secret),
    };
    if method == Method::POST {
        request = request.json(&json!({"order": 1}));
    }
    request.sent().await
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// `(r, t)` of the `RateLimit` header.
fn remaining_and_reset(response: &Response) -> (u64, u64) {
    let value = header(response, "ratelimit").expect("a RateLimit header");
    let mut r = None;
    let mut t = None;
    for part in value.split(';').skip(1) {
        match part.split_once('=') {
            Some(("r", v)) => r = v.parse().ok(),
            Some(("t", v)) => t = v.parse().ok(),
            _ => {}
        }
    }
    assert!(value.starts_with("\"key\";"), "{value}");
    (r.expect("r"), t.expect("t"))
}

/// `t` is rounded up from a backlog that shrinks while the test runs: it
/// is `expected`, or one less after a slow second.
fn assert_reset_near(t: u64, expected: u64) {
    assert!(
        (expected.saturating_sub(1)..=expected).contains(&t),
        "t={t}, expected about {expected}"
    );
}

/// A value of the text exposition at `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn create_key(app: &TestApp, session: &str, body: Value) -> (u16, Value) {
    app.send_json(Method::POST, "/api/v1/keys", session, &body)
        .await
}

async fn patch_key(app: &TestApp, session: &str, key: &str, body: Value) -> (u16, Value) {
    app.send_json(
        Method::PATCH,
        &format!("/api/v1/keys/{key}"),
        session,
        &body,
    )
    .await
}

async fn set_policy(app: &TestApp, session: &str, body: Value) -> (u16, Value) {
    app.send_json(Method::PUT, "/api/v1/tenant/policy", session, &body)
        .await
}

async fn token(app: &TestApp, key: &Value) -> String {
    app.narrowed_token(s(key, "client_id"), s(key, "client_secret"), None)
        .await
}

// --- the boundary ------------------------------------------------------------

/// With `settings` (memory, or Redis): a burst of 3 a minute is three
/// answers whose headers count down, then 429 with Retry-After on every
/// limited endpoint, and nothing on the others.
async fn the_burst_and_the_429_boundary(app: &TestApp) {
    let ana = person(app, "admin").await;
    let (status, key) = create_key(
        app,
        &ana.session,
        json!({"name": "ERP", "rate_limit": {"requests": 3, "per_seconds": 60}}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(
        key["rate_limit"],
        json!({"requests": 3, "per_seconds": 60, "burst": 3, "source": "key"})
    );
    let token = token(app, &key).await;
    assert_eq!(
        claims_of(&token)["kp_rl"],
        json!({"requests": 3, "per_seconds": 60, "burst": 3})
    );
    let who = As::Token(&token);

    for (n, endpoint) in ["pull", "push", "pull"].into_iter().enumerate() {
        let response = call(app, &who, endpoint).await;
        assert!(
            response.status().is_success(),
            "request {n} ({endpoint}): {}",
            response.status()
        );
        assert_eq!(
            header(&response, "ratelimit-policy"),
            Some(r#""key";q=3;w=60"#)
        );
        let (r, t) = remaining_and_reset(&response);
        assert_eq!(r, 2 - n as u64, "request {n}");
        assert_reset_near(t, 20 * (n as u64 + 1));
        assert_eq!(header(&response, "retry-after"), None);
    }
    for endpoint in ["push", "pull", "pull_one"] {
        let response = call(app, &who, endpoint).await;
        assert_eq!(response.status(), 429, "{endpoint}");
        let retry_after: u64 = header(&response, "retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((19..=20).contains(&retry_after), "{retry_after}");
        assert_eq!(
            header(&response, "ratelimit-policy"),
            Some(r#""key";q=3;w=60"#)
        );
        let (r, t) = remaining_and_reset(&response);
        assert_eq!(r, 0);
        assert_reset_near(t, 60);
        let body = json_body(response).await;
        assert_eq!(body["error"], "rate_limited", "{body}");
        assert!(
            s(&body, "message").contains("3 requests per 60 s (burst 3)"),
            "{body}"
        );
    }
    // Only reports and webhooks are limited; a session has no key to limit.
    let whoami = call(app, &who, "/api/v1/whoami").await;
    assert_eq!(whoami.status(), 200);
    assert_eq!(header(&whoami, "ratelimit"), None);
    let as_person = call(app, &As::Token(&ana.session), "pull").await;
    assert_eq!(as_person.status(), 200);
    assert_eq!(header(&as_person, "ratelimit"), None);
    assert!(metric(app, "keyport_rate_limit_refused_total").await >= 3.0);

    // The allowance comes back with time: one a second here.
    let (_, quick) = create_key(
        app,
        &ana.session,
        json!({"name": "quick", "rate_limit": {"requests": 1, "per_seconds": 1}}),
    )
    .await;
    let quick = As::Key(s(&quick, "client_secret"));
    assert_eq!(call(app, &quick, "pull").await.status(), 200);
    let refused = call(app, &quick, "pull").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(app, &quick, "pull").await.status(), 200);
}

async fn a_burst_is_served_and_the_next_request_is_refused_with_retry_after(backend: Backend) {
    let in_memory = spawn_app_with(backend, &[]).await;
    the_burst_and_the_429_boundary(&in_memory).await;
    assert_eq!(
        metric(&in_memory, "keyport_rate_limit_redis_available").await,
        0.0,
        "no Redis configured"
    );

    let prefix = fresh_prefix();
    let settings = redis_settings(REDIS, &prefix);
    let with_redis = spawn_app_with(backend, &borrowed(&settings)).await;
    the_burst_and_the_429_boundary(&with_redis).await;
    assert_eq!(
        metric(&with_redis, "keyport_rate_limit_fallbacks_total").await,
        0.0,
        "every check answered by Redis"
    );
    assert_eq!(
        metric(&with_redis, "keyport_rate_limit_redis_available").await,
        1.0
    );
}

// --- tokens and the key itself ------------------------------------------------

async fn a_key_presented_directly_shares_its_tokens_allowance(backend: Backend) {
    let prefix = fresh_prefix();
    let settings = redis_settings(REDIS, &prefix);
    let app = spawn_app_with(backend, &borrowed(&settings)).await;
    let ana = person(&app, "admin").await;
    let (_, key) = create_key(
        &app,
        &ana.session,
        json!({"name": "both ways", "rate_limit": {"requests": 2, "per_seconds": 60, "burst": 2}}),
    )
    .await;
    let token = token(&app, &key).await;
    let direct = As::Key(s(&key, "client_secret"));

    let first = call(&app, &direct, "pull").await;
    assert_eq!(first.status(), 200);
    assert_eq!(remaining_and_reset(&first).0, 1);
    let second = call(&app, &As::Token(&token), "push").await;
    assert_eq!(second.status(), 201);
    assert_eq!(remaining_and_reset(&second).0, 0, "one allowance for both");
    assert_eq!(call(&app, &direct, "pull").await.status(), 429);
    assert_eq!(call(&app, &As::Token(&token), "pull").await.status(), 429);

    // A new rate reaches the key presented directly at once (it is read
    // with the key), with a full burst of its own; the token keeps the
    // rate it was issued with, and its spent bucket.
    let (status, changed) = patch_key(
        &app,
        &ana.session,
        s(&key, "id"),
        json!({"rate_limit": {"requests": 600, "per_seconds": 60, "burst": 100}}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let now_direct = call(&app, &direct, "pull").await;
    assert_eq!(now_direct.status(), 200, "a new rate, a full burst");
    assert_eq!(
        header(&now_direct, "ratelimit-policy"),
        Some(r#""key";q=600;w=60"#)
    );
    assert_eq!(remaining_and_reset(&now_direct).0, 99);
    let old_token = call(&app, &As::Token(&token), "pull").await;
    assert_eq!(old_token.status(), 429);
    assert_eq!(
        header(&old_token, "ratelimit-policy"),
        Some(r#""key";q=2;w=60"#)
    );
    let new_token = self::token(&app, &key).await;
    assert_eq!(
        claims_of(&new_token)["kp_rl"],
        json!({"requests": 600, "per_seconds": 60, "burst": 100})
    );

    // The counters live in Redis under this test's prefix, by client ID
    // and rate.
    let client = redis::Client::open(REDIS).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    for rate in ["2:60:2", "600:60:100"] {
        let stored: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}rl:{}:{rate}", s(&key, "client_id")))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(stored.is_some(), "the key's bucket at {rate} is in Redis");
    }

    // Without a rate, nothing is counted and no header is sent.
    let (status, unlimited) = patch_key(
        &app,
        &ana.session,
        s(&key, "id"),
        json!({"rate_limit": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(unlimited["rate_limit"], Value::Null);
    let free = call(&app, &direct, "pull").await;
    assert_eq!(free.status(), 200);
    assert_eq!(header(&free, "ratelimit"), None);
    assert_eq!(header(&free, "ratelimit-policy"), None);
    let free_token = self::token(&app, &key).await;
    assert_eq!(claims_of(&free_token).get("kp_rl"), None);
}

// --- instances ------------------------------------------------------------------

async fn two_instances_sharing_one_redis_share_one_allowance(backend: Backend) {
    let prefix = fresh_prefix();
    let settings = redis_settings(REDIS, &prefix);
    let first = spawn_app_with(backend, &borrowed(&settings)).await;
    let second = spawn_sibling(&first, &borrowed(&settings)).await;
    let ana = person(&first, "admin").await;
    let (_, key) = create_key(
        &first,
        &ana.session,
        json!({"name": "shared", "rate_limit": {"requests": 4, "per_seconds": 60}}),
    )
    .await;
    let token = token(&first, &key).await;
    let who = As::Token(&token);
    for (n, app) in [&first, &second, &first, &second].into_iter().enumerate() {
        let response = call(app, &who, "pull").await;
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(
            remaining_and_reset(&response).0,
            3 - n as u64,
            "request {n}"
        );
    }
    assert_eq!(call(&second, &who, "pull").await.status(), 429);
    assert_eq!(call(&first, &who, "push").await.status(), 429);

    // Without Redis each instance counts alone: two instances allow twice
    // the burst (README, "Rate limits").
    let alone = spawn_app_with(backend, &[]).await;
    let beside = spawn_sibling(&alone, &[]).await;
    let bob = person(&alone, "admin").await;
    let (_, key) = create_key(
        &alone,
        &bob.session,
        json!({"name": "alone", "rate_limit": {"requests": 2, "per_seconds": 60}}),
    )
    .await;
    let direct = As::Key(s(&key, "client_secret"));
    for app in [&alone, &beside] {
        assert_eq!(call(app, &direct, "pull").await.status(), 200);
        assert_eq!(call(app, &direct, "pull").await.status(), 200);
        assert_eq!(call(app, &direct, "pull").await.status(), 429);
    }
}

/// A TCP proxy in front of the machine's Redis that the test can stop:
/// the machine's Redis keeps running for everyone else.
struct RedisProxy {
    port: u16,
    accepting: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl RedisProxy {
    async fn start(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let tracked = Arc::clone(&connections);
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut redis) = TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                    }
                });
                tracked.lock().unwrap().push(relay);
            }
        });
        RedisProxy {
            port,
            accepting,
            connections,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes the listener and every relayed connection: to Keyport, Redis
    /// is gone (connections reset, new ones refused).
    async fn stop(self) {
        self.accepting.abort();
        let _ = self.accepting.await;
        let relays: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        for relay in relays {
            relay.abort();
            let _ = relay.await;
        }
    }
}

async fn when_redis_stops_requests_are_limited_per_instance_and_the_metrics_say_so(
    backend: Backend,
) {
    let proxy = RedisProxy::start(0).await;
    let port = proxy.port;
    let prefix = fresh_prefix();
    let settings = redis_settings(&proxy.url(), &prefix);
    let app = spawn_app_with(backend, &borrowed(&settings)).await;
    let ana = person(&app, "admin").await;
    let (_, key) = create_key(
        &app,
        &ana.session,
        json!({"name": "steady", "rate_limit": {"requests": 3, "per_seconds": 60}}),
    )
    .await;
    let token = token(&app, &key).await;
    let who = As::Token(&token);
    for expected in [2, 1] {
        let response = call(&app, &who, "pull").await;
        assert_eq!(response.status(), 200);
        assert_eq!(remaining_and_reset(&response).0, expected);
    }
    assert_eq!(
        metric(&app, "keyport_rate_limit_redis_available").await,
        1.0
    );
    assert_eq!(
        metric(&app, "keyport_rate_limit_fallbacks_total").await,
        0.0
    );

    proxy.stop().await;
    // Never refused because Redis is gone: this instance counts alone,
    // from a full burst, and still refuses past it.
    for expected in [2, 1, 0] {
        let response = call(&app, &who, "pull").await;
        assert_eq!(response.status(), 200, "served without Redis");
        assert_eq!(remaining_and_reset(&response).0, expected);
    }
    let refused = call(&app, &who, "push").await;
    assert_eq!(refused.status(), 429, "the per-instance limit holds");
    assert!(header(&refused, "retry-after").is_some());
    assert!(metric(&app, "keyport_rate_limit_fallbacks_total").await >= 4.0);
    assert_eq!(
        metric(&app, "keyport_rate_limit_redis_available").await,
        0.0
    );

    // Redis back (on the same address): within a few seconds the checks
    // are Redis's again, and its count had one request left.
    let proxy = RedisProxy::start(port).await;
    eventually(Duration::from_secs(10), "Redis answers again", || async {
        call(&app, &who, "pull").await;
        metric(&app, "keyport_rate_limit_redis_available").await == 1.0
    })
    .await;
    proxy.stop().await;
}

// --- the company default ------------------------------------------------------

async fn the_company_default_limits_keys_without_a_rate_and_caps_members(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let admin = person(&app, "admin").await;
    let member = colleague(&app, &admin.tenant, "member").await;

    let (status, policy) = set_policy(
        &app,
        &admin.session,
        json!({"default_rate_limit": {"requests": 2, "per_seconds": 60}}),
    )
    .await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(
        policy,
        json!({"api_only_users": false,
               "default_rate_limit": {"requests": 2, "per_seconds": 60, "burst": 2}})
    );
    let (status, refused) = set_policy(
        &app,
        &member.session,
        json!({"default_rate_limit": {"requests": 1000, "per_seconds": 1}}),
    )
    .await;
    assert_eq!(status, 403, "only admins set the policy: {refused}");
    assert_eq!(refused["error"], "insufficient_scope");

    // A key without its own rate follows the default.
    let (_, follows) = create_key(&app, &member.session, json!({"name": "follows"})).await;
    assert_eq!(
        follows["rate_limit"],
        json!({"requests": 2, "per_seconds": 60, "burst": 2, "source": "default"})
    );
    let token = token(&app, &follows).await;
    assert_eq!(
        claims_of(&token)["kp_rl"],
        json!({"requests": 2, "per_seconds": 60, "burst": 2})
    );
    let who = As::Token(&token);
    assert_eq!(call(&app, &who, "pull").await.status(), 200);
    assert_eq!(call(&app, &who, "push").await.status(), 201);
    assert_eq!(call(&app, &who, "pull").await.status(), 429);

    // Members stay within the default; admins may go beyond it.
    for rate in [
        json!({"requests": 3, "per_seconds": 60, "burst": 2}),
        json!({"requests": 2, "per_seconds": 60, "burst": 3}),
        json!({"requests": 1, "per_seconds": 1}),
    ] {
        let (status, refused) = create_key(
            &app,
            &member.session,
            json!({"name": "greedy", "rate_limit": rate}),
        )
        .await;
        assert_eq!(status, 403, "{rate}: {refused}");
        assert_eq!(refused["error"], "forbidden");
        assert!(
            s(&refused, "message").contains("at most the company's default rate"),
            "{refused}"
        );
    }
    let (status, modest) = create_key(
        &app,
        &member.session,
        json!({"name": "modest", "rate_limit": {"requests": 1, "per_seconds": 60}}),
    )
    .await;
    assert_eq!(status, 201, "{modest}");
    assert_eq!(modest["rate_limit"]["source"], "key");
    let (status, _) = patch_key(
        &app,
        &member.session,
        s(&modest, "id"),
        json!({"rate_limit": {"requests": 100, "per_seconds": 60}}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, back) = patch_key(
        &app,
        &member.session,
        s(&modest, "id"),
        json!({"rate_limit": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(back["rate_limit"]["source"], "default");
    let (status, generous) = create_key(
        &app,
        &admin.session,
        json!({"name": "generous", "rate_limit": {"requests": 7, "per_seconds": 60}}),
    )
    .await;
    assert_eq!(status, 201, "{generous}");
    // An admin may raise a member's key too.
    let (status, raised) = patch_key(
        &app,
        &admin.session,
        s(&modest, "id"),
        json!({"rate_limit": {"requests": 50, "per_seconds": 60}}),
    )
    .await;
    assert_eq!(status, 200, "{raised}");
    assert_eq!(raised["rate_limit"]["requests"], 50);

    // A rolled key keeps its own rate.
    let rolled = app
        .api(
            Method::POST,
            &format!("/api/v1/keys/{}/roll", s(&generous, "id")),
            &admin.session,
        )
        .sent()
        .await;
    assert_eq!(rolled.status(), 201);
    let successor = json_body(rolled).await;
    assert_eq!(
        successor["rate_limit"],
        json!({"requests": 7, "per_seconds": 60, "burst": 7, "source": "key"})
    );

    // The listing says which rate is whose.
    let listed = app.get_json("/api/v1/keys", &admin.session).await;
    let sources: Vec<(&str, &Value)> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (s(k, "name"), &k["rate_limit"]["source"]))
        .collect();
    assert!(
        sources.contains(&("follows", &json!("default"))),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("generous", &json!("key"))),
        "{sources:?}"
    );

    // Without a default, keys without a rate are unlimited, and so are
    // their new tokens.
    let (status, policy) =
        set_policy(&app, &admin.session, json!({"default_rate_limit": null})).await;
    assert_eq!(status, 200);
    assert_eq!(policy["default_rate_limit"], Value::Null);
    let shown = app
        .get_json(
            &format!("/api/v1/keys/{}", s(&follows, "id")),
            &member.session,
        )
        .await;
    assert_eq!(shown["rate_limit"], Value::Null);
    let free = self::token(&app, &follows).await;
    assert_eq!(claims_of(&free).get("kp_rl"), None);
    for _ in 0..5 {
        let response = call(&app, &As::Token(&free), "pull").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit"), None);
    }
    let audit = app
        .get_json("/api/v1/audit?action=tenant.set_policy", &admin.session)
        .await;
    let details = strings_in(&audit, "events", "detail");
    assert_eq!(
        details,
        [
            "default_rate_limit=[2 requests per 60 s (burst 2)]",
            "default_rate_limit=none"
        ]
    );
}

// --- bad input ----------------------------------------------------------------

async fn bad_rates_are_refused_with_a_clear_message(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let ana = person(&app, "admin").await;
    let cases = [
        (
            json!({"requests": 0, "per_seconds": 60}),
            "at least 1 request per period, not 0",
        ),
        (json!({"requests": -5, "per_seconds": 60}), "not -5"),
        (
            json!({"requests": 10, "per_seconds": 0}),
            "at least 1 second, not 0",
        ),
        (json!({"requests": 10, "per_seconds": -60}), "not -60"),
        (
            json!({"requests": 10, "per_seconds": 60, "burst": 0}),
            "burst must allow at least 1 request, not 0",
        ),
        (
            json!({"requests": 10, "per_seconds": 60, "burst": -2}),
            "not -2",
        ),
        (
            json!({"requests": 2_000_000, "per_seconds": 60}),
            "at most 1000000 requests",
        ),
        (
            json!({"requests": 10, "per_seconds": 100_000}),
            "at most 86400 seconds",
        ),
        (
            json!({"requests": 10, "per_seconds": 60, "burst": 20_000}),
            "at most 10000",
        ),
        (
            json!({"requests": "ten", "per_seconds": 60}),
            "invalid type",
        ),
        (json!({"requests": 1.5, "per_seconds": 60}), "invalid type"),
        (json!({"requests": 10}), "missing field `per_seconds`"),
        (
            json!({"requests": 10, "per_seconds": 60, "window": 1}),
            "unknown field `window`",
        ),
        (json!(600), "invalid type"),
    ];
    for (rate, says) in &cases {
        let (status, answer) = create_key(
            &app,
            &ana.session,
            json!({"name": "bad", "rate_limit": rate}),
        )
        .await;
        assert_eq!(status, 422, "{rate}: {answer}");
        assert_eq!(answer["error"], "invalid_input", "{rate}: {answer}");
        assert!(s(&answer, "message").contains(says), "{rate}: {answer}");
    }
    let listed = app.get_json("/api/v1/keys", &ana.session).await;
    assert_eq!(listed["keys"], json!([]), "nothing was created");

    let (_, key) = create_key(&app, &ana.session, json!({"name": "fine"})).await;
    for (rate, says) in &cases[..5] {
        let (status, answer) = patch_key(
            &app,
            &ana.session,
            s(&key, "id"),
            json!({"rate_limit": rate}),
        )
        .await;
        assert_eq!(status, 422, "{rate}: {answer}");
        assert!(
            s(&answer, "message").starts_with("rate_limit: "),
            "{answer}"
        );
        assert!(s(&answer, "message").contains(says), "{rate}: {answer}");
        let (status, answer) =
            set_policy(&app, &ana.session, json!({"default_rate_limit": rate})).await;
        assert_eq!(status, 422, "{rate}: {answer}");
        assert!(
            s(&answer, "message").starts_with("default_rate_limit: "),
            "{answer}"
        );
        assert!(s(&answer, "message").contains(says), "{rate}: {answer}");
    }
    let (status, answer) = set_policy(&app, &ana.session, json!({})).await;
    assert_eq!(status, 422);
    assert!(
        s(&answer, "message").contains("nothing to change"),
        "{answer}"
    );
    let (status, answer) = patch_key(&app, &ana.session, s(&key, "id"), json!({})).await;
    assert_eq!(status, 422);
    assert!(s(&answer, "message").contains("rate_limit"), "{answer}");
    let shown = app
        .get_json(&format!("/api/v1/keys/{}", s(&key, "id")), &ana.session)
        .await;
    assert_eq!(shown["rate_limit"], Value::Null, "nothing was changed");
}

// --- the CLI ------------------------------------------------------------------

async fn the_cli_sets_changes_and_removes_rates(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let ana = person(&app, "admin").await;
    let tenant = ana.tenant.id.as_str();
    let key = keyport_json(
        &app,
        &[
            "key", "create", "--user", &ana.email, "--name", "ERP", "--rate", "600/min", "--burst",
            "100",
        ],
    )
    .await;
    assert_eq!(
        key["rate_limit"],
        json!({"requests": 600, "per_seconds": 60, "burst": 100, "source": "key"})
    );
    let id = s(&key, "client_id");
    let (_, human, _) = keyport(&app, &["key", "list", "--user", &ana.email]).await;
    assert!(human.contains("rate=600/60s,burst=100(own)"), "{human}");

    // The rate reaches tokens.
    let token = app.narrowed_token(id, s(&key, "client_secret"), None).await;
    assert_eq!(
        claims_of(&token)["kp_rl"],
        json!({"requests": 600, "per_seconds": 60, "burst": 100})
    );

    let changed = keyport_json(&app, &["key", "update", id, "--rate", "5/10s"]).await;
    assert_eq!(
        changed["rate_limit"],
        json!({"requests": 5, "per_seconds": 10, "burst": 5, "source": "key"})
    );
    let policy = keyport_json(
        &app,
        &[
            "tenant",
            "set-policy",
            tenant,
            "--default-rate",
            "100/h",
            "--default-burst",
            "10",
        ],
    )
    .await;
    assert_eq!(
        policy["default_rate_limit"],
        json!({"requests": 100, "per_seconds": 3600, "burst": 10})
    );
    assert_eq!(policy["api_only_users"], false, "left as it was");
    let removed = keyport_json(&app, &["key", "update", id, "--no-rate"]).await;
    assert_eq!(
        removed["rate_limit"],
        json!({"requests": 100, "per_seconds": 3600, "burst": 10, "source": "default"})
    );
    let (_, human, _) = keyport(&app, &["key", "list", "--user", &ana.email]).await;
    assert!(
        human.contains("rate=100/3600s,burst=10(company default)"),
        "{human}"
    );
    let policy = keyport_json(&app, &["tenant", "set-policy", tenant, "--no-default-rate"]).await;
    assert_eq!(policy["default_rate_limit"], Value::Null);
    let listed = keyport_json(&app, &["key", "list", "--user", &ana.email]).await;
    assert_eq!(listed["keys"][0]["rate_limit"], Value::Null);

    // Malformed rates are usage errors (exit 2); values the rules refuse
    // exit 1; both say why.
    for (args, code, says) in [
        (
            vec!["key", "update", id, "--rate", "0/min"],
            2,
            "at least 1 request",
        ),
        (vec!["key", "update", id, "--rate", "-5/min"], 2, "not -5"),
        (vec!["key", "update", id, "--rate", "600"], 2, "not a rate"),
        (
            vec!["key", "update", id, "--rate", "10/fortnight"],
            2,
            "not a period",
        ),
        (
            vec!["key", "update", id, "--rate", "10/2d"],
            2,
            "at most 86400 seconds",
        ),
        (vec!["key", "update", id, "--burst", "5"], 2, "--rate"),
        (
            vec!["key", "update", id, "--rate", "5/min", "--no-rate"],
            2,
            "cannot be used with",
        ),
        (
            vec!["key", "update", id, "--rate", "5/min", "--burst", "0"],
            1,
            "burst must allow at least 1 request, not 0",
        ),
        (
            vec!["key", "update", id, "--rate", "5/min", "--burst", "-3"],
            1,
            "not -3",
        ),
        (
            vec!["key", "update", id, "--rate", "5/min", "--burst", "many"],
            2,
            "invalid digit",
        ),
        (vec!["tenant", "set-policy", tenant], 2, "required"),
        (
            vec!["tenant", "set-policy", tenant, "--default-rate", "0/s"],
            2,
            "at least 1 request",
        ),
        (
            vec![
                "tenant",
                "set-policy",
                tenant,
                "--default-rate",
                "5/s",
                "--default-burst",
                "20000",
            ],
            1,
            "at most 10000",
        ),
    ] {
        let (got, stdout, stderr) = keyport(&app, &args).await;
        assert_eq!(got, Some(code), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (code, stdout, _) = keyport(
        &app,
        &[
            "--json", "key", "update", id, "--rate", "5/min", "--burst", "0",
        ],
    )
    .await;
    assert_eq!(code, Some(1));
    let refusal: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(refusal["error"], "invalid_input", "{refusal}");
}

crate::on_both_backends!(
    a_burst_is_served_and_the_next_request_is_refused_with_retry_after,
    a_key_presented_directly_shares_its_tokens_allowance,
    two_instances_sharing_one_redis_share_one_allowance,
    when_redis_stops_requests_are_limited_per_instance_and_the_metrics_say_so,
    the_company_default_limits_keys_without_a_rate_and_caps_members,
    bad_rates_are_refused_with_a_clear_message,
    the_cli_sets_changes_and_removes_rates,
);
