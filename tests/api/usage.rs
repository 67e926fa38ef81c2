//! Key usage: what each key did per hour (tokens issued, direct uses,
//! refusals by reason, its busiest minute, its addresses), counted in
//! memory and written in batches, read back through
//! `GET /api/v1/keys/{id}/usage` and `GET /api/v1/usage`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use keyport::storage::UsageCount;

use crate::helpers::{
    Backend, Person, ServedBinary, TestApp, colleague, eventually, person, s, spawn_app,
    spawn_app_with, spawn_sibling, status_and_json, without_request_id,
};

/// Writes what the application counted, as its background task does every
/// `usage_flush_seconds`: tests need not wait for the next tick.
async fn flush(app: &TestApp) {
    app.service.usage_counts.flush(&app.service.store).await;
}

async fn usage(app: &TestApp, credential: &str, path: &str) -> (u16, Value) {
    status_and_json(app.call(Method::GET, path, credential).await).await
}

/// A key of `owner`'s made over HTTP (the answer holds its secret).
async fn key_of(app: &TestApp, owner: &Person, body: Value) -> Value {
    app.create_key_over_http(&owner.session, body).await
}

async fn token_request(app: &TestApp, client_id: &str, secret: &str) -> u16 {
    app.request_token(client_id, secret).await.status().as_u16()
}

/// `n` refusals of `client_id` for a wrong (but well-formed) secret.
async fn wrong_secrets(app: &TestApp, client_id: &str, wrong_secret: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(token_request(app, client_id, wrong_secret).await, 401);
    }
}

async fn key_total(app: &TestApp, credential: &str, key_id: &str) -> Value {
    let (status, report) = usage(app, credential, &format!("/api/v1/keys/{key_id}/usage")).await;
    assert_eq!(status, 200, "{report}");
    report["total"].clone()
}

async fn token_requests_and_refusals_are_reported_by_reason_once_flushed(backend: Backend) {
    // No background flush during the test: only `flush` writes.
    let app = spawn_app_with(backend, &[("KEYPORT_USAGE_FLUSH_SECONDS", "300")]).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "ERP"})).await;
    let other = key_of(&app, &ana, json!({"name": "other"})).await;
    let (id, client_id, secret) = (
        s(&key, "id"),
        s(&key, "client_id"),
        s(&key, "client_secret"),
    );
    for _ in 0..3 {
        assert_eq!(token_request(&app, client_id, secret).await, 200);
    }
    wrong_secrets(&app, client_id, s(&other, "client_secret"), 2).await;
    // An unknown client names no key: counted nowhere.
    assert_eq!(token_request(&app, "kp_unknownclient01", secret).await, 401);

    // Counted in memory only, until written.
    assert_eq!(key_total(&app, &ana.session, id).await["tokens_issued"], 0);
    flush(&app).await;
    let total = key_total(&app, &ana.session, id).await;
    assert_eq!(total["tokens_issued"], 3, "{total}");
    assert_eq!(total["refused"], 2, "{total}");
    assert_eq!(total["refusals"], json!({"wrong_secret": 2}), "{total}");
    assert_eq!(total["addresses"], json!(["127.0.0.1"]), "{total}");
    // Five counted requests within seconds: at least three in one minute.
    assert!(total["peak_per_minute"].as_u64().unwrap() >= 3, "{total}");

    // Disabled, then revoked: each refusal under its own reason.
    let (status, _) = status_and_json(
        app.call(
            Method::POST,
            &format!("/api/v1/keys/{id}/disable"),
            &ana.session,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(token_request(&app, client_id, secret).await, 401);
    app.call(
        Method::POST,
        &format!("/api/v1/keys/{id}/revoke"),
        &ana.session,
    )
    .await;
    assert_eq!(token_request(&app, client_id, secret).await, 401);
    flush(&app).await;
    let (status, report) = usage(&app, &ana.session, &format!("/api/v1/keys/{id}/usage")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["key_id"], id);
    assert_eq!(report["granularity"], "hour");
    assert_eq!(
        report["total"]["refusals"],
        json!({"wrong_secret": 2, "disabled": 1, "revoked": 1}),
        "{report}"
    );
    let buckets = report["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 2, "{report}");
    assert!(
        buckets
            .iter()
            .all(|b| b["start"].as_i64().unwrap() % 3600 == 0)
    );
    let issued: u64 = buckets
        .iter()
        .map(|b| b["tokens_issued"].as_u64().unwrap())
        .sum();
    assert_eq!(issued, 3);

    // The company's report: the same figures, and each key's share.
    let (status, company) = usage(&app, &ana.session, "/api/v1/usage?granularity=day").await;
    assert_eq!(status, 200, "{company}");
    assert_eq!(company["total"]["tokens_issued"], 3, "{company}");
    assert_eq!(company["total"]["refused"], 4, "{company}");
    let keys = company["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{company}");
    assert_eq!(keys[0]["key_id"], id);
    assert_eq!(keys[0]["name"], "ERP");
    assert_eq!(keys[0]["client_id"], client_id);
}

async fn direct_uses_rate_limits_and_token_uses_are_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let key = key_of(
        &app,
        &ana,
        json!({"name": "direct", "rate_limit": {"requests": 2, "per_seconds": 3600, "burst": 2}}),
    )
    .await;
    let id = s(&key, "id");
    let pull = |secret: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/api/v1/reports/orders"))
                .header("x-api-key", secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let secret = s(&key, "client_secret").to_owned();
    assert_eq!(pull(secret.clone()).await, 200);
    assert_eq!(pull(secret.clone()).await, 200);
    assert_eq!(pull(secret.clone()).await, 429);
    // A token of the key draws on the same allowance.
    let response = app
        .request_token(s(&key, "client_id"), &secret)
        .await
        .json::<Value>()
        .await
        .unwrap();
    let token = response["access_token"].as_str().unwrap();
    let refused = app
        .client
        .get(app.url("/api/v1/reports/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    flush(&app).await;
    let total = key_total(&app, &ana.session, id).await;
    assert_eq!(total["direct_uses"], 2, "{total}");
    assert_eq!(total["tokens_issued"], 1, "{total}");
    assert_eq!(total["refusals"], json!({"rate_limited": 2}), "{total}");
    // Five requests within seconds: at least three in one minute, even if
    // a minute turned between them.
    assert!(total["peak_per_minute"].as_u64().unwrap() >= 3, "{total}");
    let (_, report) = usage(&app, &ana.session, &format!("/api/v1/keys/{id}/usage")).await;
    assert_eq!(
        report["rate_limit"],
        json!({"requests": 2, "per_seconds": 3600, "burst": 2, "source": "key"})
    );
    // A token's own successful use is counted too.
    let (_, used) = status_and_json(app.call(Method::GET, "/api/v1/whoami", token).await).await;
    assert!(used.is_object());
    flush(&app).await;
    assert_eq!(key_total(&app, &ana.session, id).await["token_uses"], 1);
}

async fn the_background_task_writes_the_counts_every_flush_interval(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_USAGE_FLUSH_SECONDS", "1")]).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "ERP"})).await;
    for _ in 0..2 {
        assert_eq!(
            token_request(&app, s(&key, "client_id"), s(&key, "client_secret")).await,
            200
        );
    }
    let path = format!("/api/v1/keys/{}/usage", s(&key, "id"));
    eventually(Duration::from_secs(20), "the counts are written", || {
        let (app, session, path) = (&app, &ana.session, &path);
        async move { usage(app, session, path).await.1["total"]["tokens_issued"] == 2 }
    })
    .await;
}

async fn two_instances_on_one_database_add_their_counts(backend: Backend) {
    let first = spawn_app(backend).await;
    let second = spawn_sibling(&first, &[]).await;
    let ana = person(&first, "admin").await;
    let key = key_of(&first, &ana, json!({"name": "shared"})).await;
    let (client_id, secret) = (s(&key, "client_id"), s(&key, "client_secret"));
    for _ in 0..2 {
        assert_eq!(token_request(&first, client_id, secret).await, 200);
    }
    for _ in 0..3 {
        assert_eq!(token_request(&second, client_id, secret).await, 200);
    }
    // Both flush at once: neither overwrites the other.
    tokio::join!(flush(&first), flush(&second));
    let total = key_total(&first, &ana.session, s(&key, "id")).await;
    assert_eq!(total["tokens_issued"], 5, "{total}");
    assert_eq!(total["addresses"], json!(["127.0.0.1"]), "{total}");
}

async fn counting_can_be_turned_off(backend: Backend) {
    let app = spawn_app_with(backend, &[("KEYPORT_USAGE_COUNTING", "false")]).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "quiet"})).await;
    assert_eq!(
        token_request(&app, s(&key, "client_id"), s(&key, "client_secret")).await,
        200
    );
    flush(&app).await;
    let (status, report) = usage(&app, &ana.session, "/api/v1/usage").await;
    assert_eq!(status, 200);
    assert_eq!(report["total"]["tokens_issued"], 0, "{report}");
    assert_eq!(report["buckets"], json!([]));
}

async fn usage_is_read_like_the_key_itself(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = person(&app, "admin").await;
    let member = colleague(&app, &admin.tenant, "member").await;
    let other_member = colleague(&app, &admin.tenant, "member").await;
    let stranger = person(&app, "admin").await;
    let mine = key_of(&app, &member, json!({"name": "mine"})).await;
    let theirs = key_of(&app, &other_member, json!({"name": "theirs"})).await;
    for key in [&mine, &theirs] {
        assert_eq!(
            token_request(&app, s(key, "client_id"), s(key, "client_secret")).await,
            200
        );
    }
    flush(&app).await;
    let path = |key: &Value| format!("/api/v1/keys/{}/usage", s(key, "id"));

    assert_eq!(usage(&app, &member.session, &path(&mine)).await.0, 200);
    let (status, body) = usage(&app, &member.session, &path(&theirs)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = usage(&app, &stranger.session, &path(&mine)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(usage(&app, &admin.session, &path(&theirs)).await.0, 200);
    // By client ID too, as the key itself.
    let by_client_id = format!("/api/v1/keys/{}/usage", s(&mine, "client_id"));
    assert_eq!(usage(&app, &member.session, &by_client_id).await.0, 200);

    // The company report: a member's own keys, an admin's whole company,
    // another company nothing of it.
    let (_, report) = usage(&app, &member.session, "/api/v1/usage").await;
    assert_eq!(crate::helpers::key_names(&report), ["mine"]);
    assert_eq!(report["total"]["tokens_issued"], 1);
    let (_, report) = usage(&app, &admin.session, "/api/v1/usage").await;
    assert_eq!(crate::helpers::key_names(&report), ["mine", "theirs"]);
    assert_eq!(report["total"]["tokens_issued"], 2);
    let (_, report) = usage(&app, &stranger.session, "/api/v1/usage").await;
    assert_eq!(crate::helpers::key_names(&report), Vec::<String>::new());
    assert_eq!(report["total"]["tokens_issued"], 0);

    // Without a credential, or without `keys:manage`.
    let anonymous = app.get("/api/v1/usage").await;
    assert_eq!(anonymous.status(), 401);
}

async fn bad_ranges_are_refused_with_what_is_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "ERP"})).await;
    let key_path = format!("/api/v1/keys/{}/usage", s(&key, "id"));
    for (query, message) in [
        ("from=2000&to=1000", "from must not be after to"),
        ("granularity=minute", "granularity must be `hour` or `day`"),
        (
            "from=0&to=2764800",
            "the range may span at most 31 days with granularity `hour`",
        ),
        (
            "from=0&to=34646400&granularity=day",
            "the range may span at most 400 days with granularity `day`",
        ),
        (
            "from=-3600",
            "from and to are Unix times in seconds, not negative",
        ),
    ] {
        for path in [key_path.as_str(), "/api/v1/usage"] {
            let (status, body) = usage(&app, &ana.session, &format!("{path}?{query}")).await;
            assert_eq!(status, 400, "{path}?{query}: {body}");
            assert_eq!(
                without_request_id(body),
                json!({"error": "invalid_query", "message": message}),
                "{path}?{query}"
            );
        }
    }
    for query in ["from=yesterday", "colour=blue", "to=1.5"] {
        let (status, body) = usage(&app, &ana.session, &format!("{key_path}?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "invalid_query", "{query}");
        assert!(body["request_id"].is_string());
    }
    // The widest ranges allowed are answered.
    for query in ["from=0&to=2678400", "from=0&to=34560000&granularity=day"] {
        let (status, body) = usage(&app, &ana.session, &format!("{key_path}?{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
    }
}

async fn signed_requests_and_refused_assertions_are_counted_for_the_key_they_name(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "signed", "sigv4": true})).await;
    let (client_id, secret) = (s(&key, "client_id"), s(&key, "client_secret"));
    let signed_whoami = |secret: String| {
        let url = app.url("/api/v1/whoami");
        let user = format!("{client_id}:{secret}");
        async move {
            let output = tokio::process::Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
                .args([
                    "--aws-sigv4",
                    "aws:amz:us-east-1:keyport",
                    "--user",
                    &user,
                    &url,
                ])
                .output()
                .await
                .expect("curl runs");
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
    };
    assert_eq!(signed_whoami(secret.to_owned()).await, "200");
    let mut wrong = secret.to_owned();
    let last = if wrong.ends_with('A') { "B" } else { "A" };
    wrong.replace_range(wrong.len() - 1.., last);
    assert_eq!(signed_whoami(wrong).await, "401");

    // A client assertion naming the key, signed with none of its keys.
    let encode = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let assertion = format!(
        "{}.{}.{}",
        encode(json!({"alg": "ES256", "typ": "JWT"})),
        encode(json!({
            "iss": client_id, "sub": client_id, "aud": app.url("/oauth/token"),
            "exp": now + 60, "jti": "usage-test",
        })),
        URL_SAFE_NO_PAD.encode([7u8; 64]),
    );
    let refused = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    flush(&app).await;
    let total = key_total(&app, &ana.session, s(&key, "id")).await;
    assert_eq!(total["sigv4_uses"], 1, "{total}");
    assert_eq!(
        total["refusals"],
        json!({"wrong_secret": 1, "assertion": 1}),
        "{total}"
    );
}

async fn usage_older_than_the_retention_is_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "old"})).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let hour = now - now % 3600;
    let stored = |hours_ago: i64, count: i64| UsageCount {
        client_id: s(&key, "client_id").to_owned(),
        hour: hour - hours_ago * 3600,
        outcome: "tokens_issued".to_owned(),
        count,
    };
    // Three days ago and a day ago: both within the default 90 days.
    app.store
        .add_key_usage(&[stored(72, 5), stored(24, 7)], &[], &[])
        .await
        .unwrap();
    let path = format!(
        "/api/v1/keys/{}/usage?granularity=day&from={}&to={}",
        s(&key, "id"),
        now - 4 * 86_400,
        now
    );
    assert_eq!(
        usage(&app, &ana.session, &path).await.1["total"]["tokens_issued"],
        12
    );
    // An instance keeping two days deletes the older hour on its first tick.
    let _keeping_two_days = spawn_sibling(
        &app,
        &[
            ("KEYPORT_USAGE_FLUSH_SECONDS", "1"),
            ("KEYPORT_USAGE_RETENTION_DAYS", "2"),
        ],
    )
    .await;
    eventually(Duration::from_secs(20), "the old hour is deleted", || {
        let (app, session, path) = (&app, &ana.session, &path);
        async move { usage(app, session, path).await.1["total"]["tokens_issued"] == 7 }
    })
    .await;
}

crate::on_both_backends!(
    usage_older_than_the_retention_is_deleted,
    signed_requests_and_refused_assertions_are_counted_for_the_key_they_name,
    token_requests_and_refusals_are_reported_by_reason_once_flushed,
    direct_uses_rate_limits_and_token_uses_are_counted,
    the_background_task_writes_the_counts_every_flush_interval,
    two_instances_on_one_database_add_their_counts,
    counting_can_be_turned_off,
    usage_is_read_like_the_key_itself,
    bad_ranges_are_refused_with_what_is_wrong,
);

/// `keyport serve` writes what it counted when it is stopped (SIGTERM),
/// well before its next flush would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_counted_is_written_at_shutdown() {
    let app = spawn_app(Backend::Sqlite).await;
    let ana = person(&app, "admin").await;
    let key = key_of(&app, &ana, json!({"name": "ERP"})).await;
    let mut command = ServedBinary::command(&app.db.url, 1);
    command.env("KEYPORT_USAGE_FLUSH_SECONDS", "300");
    let mut served = ServedBinary::start(command, Arc::default());
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let response = client
            .post(served.url("/oauth/token"))
            .basic_auth(s(&key, "client_id"), Some(s(&key, "client_secret")))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = served.child.wait();
        (served, status)
    })
    .await
    .unwrap();
    served = exited.0;
    assert!(exited.1.is_ok(), "{}", served.log());
    let total = key_total(&app, &ana.session, s(&key, "id")).await;
    assert_eq!(total["tokens_issued"], 4, "{total}\n{}", served.log());
}
