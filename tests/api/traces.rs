//! OpenTelemetry traces, seen by a real OTLP/HTTP receiver
//! (`tests/clients/otlp_receiver.py`, which decodes each export with the
//! official protobuf definitions): the span tree of a token request and of
//! a push that fans out to a webhook, the request id as the trace id, and a
//! `traceparent` continued only from a trusted proxy.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Sent, ServedBinary, TestApp, client_credentials, endpoint_stored_directly,
    spawn_app_with,
};
use crate::signed_webhooks::{Receiver, webhook_admin};

/// `tests/clients/otlp_receiver.py`, on a port the OS picked.
struct OtlpReceiver {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl OtlpReceiver {
    fn start() -> Self {
        let (child, dir, port) = crate::helpers::python_server("otlp_receiver", &[]);
        OtlpReceiver { child, dir, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn read(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect()
    }

    /// The spans of trace `trace_id` once `done` holds for them (30 s at most).
    async fn trace(&self, trace_id: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans: Vec<Value> = self
                .read("spans.jsonl")
                .into_iter()
                .filter(|span| span["trace_id"] == trace_id)
                .collect();
            if done(&spans) {
                assert_eq!(self.read("errors.jsonl"), Vec::<Value>::new());
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "trace {trace_id} never completed; it has: {spans:#?}\nall spans: {:#?}",
                self.read("spans.jsonl")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Option<&'a Value> {
    spans.iter().find(|span| span["name"] == name)
}

fn has(spans: &[Value], name: &str) -> bool {
    named(spans, name).is_some()
}

fn span<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    named(spans, name).unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

/// The request id of an answer, and the trace id it stands for (its hex).
fn ids_of(response: &reqwest::Response) -> (String, String) {
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace_id = uuid::Uuid::parse_str(&request_id)
        .expect("a UUID request id")
        .simple()
        .to_string();
    (request_id, trace_id)
}

/// `keyport serve` on `setup`'s database, exporting traces to `otlp`
/// quickly (every 100 ms) and delivering webhooks to loopback.
fn serve_traced(setup: &TestApp, otlp: &OtlpReceiver, extra: &[(&str, &str)]) -> ServedBinary {
    let mut command = ServedBinary::command(&setup.db.url, 1);
    command
        .env("KEYPORT_ISSUER", &setup.settings.tokens.issuer)
        .env("KEYPORT_OTLP_ENDPOINT", otlp.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(crate::signed_webhooks::RECEIVER_SETTINGS.iter().copied())
        .envs(extra.iter().copied());
    ServedBinary::start(command, std::sync::Arc::default())
}

async fn a_token_request_and_a_push_to_a_webhook_are_span_trees(backend: Backend) {
    // The in-process instance only sets up; the served one answers,
    // delivers and traces.
    let setup = spawn_app_with(backend, &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let (admin, _) = webhook_admin(&setup).await;
    let receiver = Receiver::start(&[&admin.key.webhook_signing_key.to_whsec()]);
    endpoint_stored_directly(&setup, &admin, &receiver.url(), "record.created").await;
    let otlp = OtlpReceiver::start();
    let server = serve_traced(&setup, &otlp, &[]);
    let http = reqwest::Client::new();
    let system = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };

    // A token request: the request span, with client authentication (and
    // the key's first read below it) and the signing beside it.
    let issued = client_credentials(
        &http,
        server.url("/oauth/token"),
        admin.client_id(),
        admin.secret(),
    )
    .sent()
    .await;
    assert_eq!(issued.status(), 200);
    let (request_id, trace_id) = ids_of(&issued);
    let token = issued.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let spans = otlp
        .trace(&trace_id, |spans| {
            has(spans, "POST /oauth/token")
                && has(spans, "client_authentication")
                && has(spans, "sign_token")
        })
        .await;
    let request = span(&spans, "POST /oauth/token");
    assert_eq!(request["kind"], "SPAN_KIND_SERVER");
    assert_eq!(request["parent_span_id"], "", "a root span");
    assert_eq!(request["resource"]["service.name"], "keyport");
    let attributes = &request["attributes"];
    assert_eq!(attributes["http.route"], "/oauth/token");
    assert_eq!(attributes["http.request.method"], "POST");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["keyport.request_id"], request_id.as_str());
    let authentication = span(&spans, "client_authentication");
    assert_eq!(authentication["parent_span_id"], request["span_id"]);
    assert_eq!(authentication["status"], "STATUS_CODE_UNSET");
    let signing = span(&spans, "sign_token");
    assert_eq!(signing["parent_span_id"], request["span_id"]);
    assert_eq!(signing["attributes"]["keyport.signing_algorithm"], "ES256");
    // A fresh instance reads the key once, inside client authentication.
    let read = span(&spans, "storage.find_key_for_auth");
    assert_eq!(read["parent_span_id"], authentication["span_id"]);
    assert_eq!(read["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(read["attributes"]["db.system.name"], system);
    for each in &spans {
        assert!(each["start"].as_u64() <= each["end"].as_u64(), "{each}");
    }

    // A wrong secret: the request span says 401 and invalid_client, the
    // authentication span failed; no secret anywhere.
    let wrong = keyport::domain::ClientSecret::generate();
    let refused = client_credentials(
        &http,
        server.url("/oauth/token"),
        admin.client_id(),
        wrong.expose(),
    )
    .sent()
    .await;
    assert_eq!(refused.status(), 401);
    let (_, refused_trace) = ids_of(&refused);
    let spans = otlp
        .trace(&refused_trace, |spans| {
            has(spans, "POST /oauth/token") && has(spans, "client_authentication")
        })
        .await;
    let request = span(&spans, "POST /oauth/token");
    assert_eq!(request["attributes"]["http.response.status_code"], 401);
    assert_eq!(request["attributes"]["error.type"], "invalid_client");
    assert_eq!(
        span(&spans, "client_authentication")["status"],
        "STATUS_CODE_ERROR"
    );
    assert!(!has(&spans, "sign_token"), "{spans:#?}");

    // A push to a collection with one webhook endpoint: the request span
    // with the wait for the shared commit below it, and the delivery, made
    // later by the worker, in the same trace as the request's child. The
    // receiver was sent the delivery span's traceparent.
    let pushed = http
        .post(server.url("/api/v1/webhooks/orders"))
        .bearer_auth(&token)
        .json(&json!({ "order": 1 }))
        .sent()
        .await;
    assert_eq!(pushed.status(), 201);
    let (_, push_trace) = ids_of(&pushed);
    let spans = otlp
        .trace(&push_trace, |spans| {
            has(spans, "POST /api/v1/webhooks/{collection}") && has(spans, "webhook.deliver")
        })
        .await;
    let request = span(&spans, "POST /api/v1/webhooks/{collection}");
    assert_eq!(request["attributes"]["http.response.status_code"], 201);
    let commit = span(&spans, "storage.push_records");
    assert_eq!(commit["parent_span_id"], request["span_id"]);
    assert_eq!(commit["attributes"]["db.system.name"], system);
    let delivery = span(&spans, "webhook.deliver");
    assert_eq!(delivery["parent_span_id"], request["span_id"]);
    assert_eq!(delivery["kind"], "SPAN_KIND_CLIENT");
    let attributes = &delivery["attributes"];
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["keyport.webhook.event_type"], "record.created");
    assert_eq!(attributes["server.address"], "127.0.0.1");
    let arrived = receiver
        .wait_for("the push's delivery", |arrived| !arrived.is_empty())
        .await;
    assert_eq!(
        arrived[0]["traceparent"],
        format!(
            "00-{push_trace}-{}-01",
            delivery["span_id"].as_str().unwrap()
        ),
        "{arrived:#?}"
    );
    assert_eq!(
        arrived[0]["id"], attributes["keyport.webhook.event_id"],
        "the span names the delivery's webhook-id"
    );

    // Nothing a span carries is a secret or a token.
    let everything = serde_json::to_string(&otlp.read("spans.jsonl")).unwrap();
    for secret in [admin.secret(), wrong.expose(), token.as_str()] {
        assert!(!everything.contains(secret), "a secret reached a span");
    }
}

async fn a_trusted_proxys_traceparent_is_continued_and_anyone_elses_ignored(backend: Backend) {
    let setup = spawn_app_with(backend, &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let admin = setup.integration("admin", "reports:read").await;
    let otlp = OtlpReceiver::start();
    let proxied_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let proxy_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{proxied_trace}-{proxy_span}-01");
    let http = reqwest::Client::new();
    let token_request = |server: &ServedBinary, headers: &[(&str, &str)]| {
        let mut request = client_credentials(
            &http,
            server.url("/oauth/token"),
            admin.client_id(),
            admin.secret(),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.sent()
    };

    // No proxy is trusted: the header is ignored, the trace is the
    // request's own.
    let untrusting = serve_traced(&setup, &otlp, &[]);
    let answer = token_request(&untrusting, &[("traceparent", &traceparent)]).await;
    assert_eq!(answer.status(), 200);
    let (_, own_trace) = ids_of(&answer);
    assert_ne!(own_trace, proxied_trace);
    let spans = otlp
        .trace(&own_trace, |spans| has(spans, "POST /oauth/token"))
        .await;
    assert_eq!(span(&spans, "POST /oauth/token")["parent_span_id"], "");
    drop(untrusting);

    // Loopback is a trusted proxy: its trace is continued, and names the
    // request when the proxy sent no X-Request-Id.
    let trusting = serve_traced(&setup, &otlp, &[("KEYPORT_TRUSTED_PROXIES", "127.0.0.1")]);
    let answer = token_request(&trusting, &[("traceparent", &traceparent)]).await;
    assert_eq!(answer.status(), 200);
    let (request_id, trace_id) = ids_of(&answer);
    assert_eq!(trace_id, proxied_trace);
    assert_eq!(request_id, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    let spans = otlp
        .trace(proxied_trace, |spans| has(spans, "POST /oauth/token"))
        .await;
    assert_eq!(
        span(&spans, "POST /oauth/token")["parent_span_id"],
        proxy_span
    );

    // With its own X-Request-Id, the proxy's id names the request and the
    // span carries it; the trace is still the proxy's.
    let second_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let answer = token_request(
        &trusting,
        &[
            ("traceparent", &format!("00-{second_trace}-{proxy_span}-01")),
            ("x-request-id", "proxy-req-42"),
        ],
    )
    .await;
    assert_eq!(answer.headers()["x-request-id"], "proxy-req-42");
    let spans = otlp
        .trace(second_trace, |spans| has(spans, "POST /oauth/token"))
        .await;
    assert_eq!(
        span(&spans, "POST /oauth/token")["attributes"]["keyport.request_id"],
        "proxy-req-42"
    );

    // A malformed traceparent, even from the trusted proxy, starts a trace
    // of the request's own; a proxy that says "not sampled" is obeyed.
    let answer = token_request(&trusting, &[("traceparent", "00-not-a-trace-01")]).await;
    assert_eq!(answer.status(), 200);
    let (_, fresh_trace) = ids_of(&answer);
    otlp.trace(&fresh_trace, |spans| has(spans, "POST /oauth/token"))
        .await;
    let unsampled_trace = "6bf92f3577b34da6a3ce929d0e0e4738";
    let answer = token_request(
        &trusting,
        &[(
            "traceparent",
            &format!("00-{unsampled_trace}-{proxy_span}-00"),
        )],
    )
    .await;
    assert_eq!(answer.status(), 200);
    // Once a later, sampled request's spans are in, the unsampled one's
    // would have been too (one exporter, in order).
    let answer = token_request(&trusting, &[]).await;
    let (_, later_trace) = ids_of(&answer);
    otlp.trace(&later_trace, |spans| has(spans, "POST /oauth/token"))
        .await;
    let by_trace: HashMap<String, usize> =
        otlp.read("spans.jsonl")
            .iter()
            .fold(HashMap::new(), |mut counts, span| {
                *counts
                    .entry(span["trace_id"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                counts
            });
    assert!(!by_trace.contains_key(unsampled_trace), "{by_trace:?}");
}

/// Token exchange with a trusted issuer whose keys are not cached yet: the
/// JWKS fetch is a client span of the request, and the issuer's host was
/// sent its traceparent.
async fn a_jwks_fetch_is_a_span_and_carries_its_traceparent(backend: Backend) {
    use crate::token_exchange::{
        CI_AUDIENCE, CI_ISSUER, EXCHANGE, JWT, MAIN_BRANCH, company, issue, overrides, serve_jwks,
        trust_main_branch,
    };
    let mut settings = overrides();
    settings.push(("KEYPORT_WEBHOOK_DELIVER", "false"));
    let setup = spawn_app_with(backend, &settings).await;
    let company = company(&setup).await;
    let (jwks, tokens) = issue(&json!({
        "issuer": CI_ISSUER,
        "keys": ["k1"],
        "tokens": [{"kid": "k1", "claims": {"sub": MAIN_BRANCH, "aud": CI_AUDIENCE}}]
    }));
    let jwks_host = serve_jwks(&jwks).await;
    trust_main_branch(&setup, &company, &jwks_host.url).await;
    let otlp = OtlpReceiver::start();
    let server = serve_traced(&setup, &otlp, &settings);
    let fetches_before = jwks_host.traceparents.lock().unwrap().len();

    let answer = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", tokens[0].as_str()),
            ("subject_token_type", JWT),
        ])
        .sent()
        .await;
    assert_eq!(answer.status(), 200);
    let (_, trace_id) = ids_of(&answer);
    let spans = otlp
        .trace(&trace_id, |spans| {
            has(spans, "POST /oauth/token") && has(spans, "jwks.fetch")
        })
        .await;
    let request = span(&spans, "POST /oauth/token");
    let fetch = span(&spans, "jwks.fetch");
    assert_eq!(fetch["trace_id"], request["trace_id"]);
    assert_eq!(fetch["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(fetch["attributes"]["url.full"], jwks_host.url.as_str());
    assert_eq!(fetch["attributes"]["http.response.status_code"], 200);
    let sent = jwks_host.traceparents.lock().unwrap()[fetches_before..].to_vec();
    assert_eq!(
        sent,
        vec![Some(format!(
            "00-{trace_id}-{}-01",
            fetch["span_id"].as_str().unwrap()
        ))]
    );
    assert!(has(&spans, "sign_token"), "{spans:#?}");
}

/// A collector that is down costs the answers nothing and is said once in
/// the log, without the spans.
#[tokio::test]
async fn a_collector_that_is_down_is_reported_and_answers_go_on() {
    let setup = spawn_app_with(Backend::Sqlite, &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let admin = setup.integration("admin", "reports:read").await;
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut command = ServedBinary::command(&setup.db.url, 1);
    command
        .env("KEYPORT_ISSUER", &setup.settings.tokens.issuer)
        .env(
            "KEYPORT_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{closed}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let server = ServedBinary::start(command, std::sync::Arc::clone(&log));
    let http = reqwest::Client::new();
    let ask = || {
        client_credentials(
            &http,
            server.url("/oauth/token"),
            admin.client_id(),
            admin.secret(),
        )
        .sent()
    };
    for _ in 0..5 {
        assert_eq!(ask().await.status(), 200);
    }
    crate::helpers::eventually(
        Duration::from_secs(30),
        "the collector's absence is logged",
        || {
            let log = server.log();
            async move { log.contains("the trace collector did not take") }
        },
    )
    .await;
    // More batches fail (one request every 250 ms, exports every 100 ms);
    // the log said so once.
    for _ in 0..4 {
        assert_eq!(ask().await.status(), 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        server
            .log()
            .matches("the trace collector did not take")
            .count(),
        1,
        "{}",
        server.log()
    );
    assert!(server.log().contains("exporting traces to"));
    assert!(!server.log().contains(admin.secret()));
}

/// A collector that wants a token gets the headers of the standard
/// variable, percent-decoded; a malformed entry is left out and named
/// without its value.
#[tokio::test]
async fn the_collector_gets_the_headers_of_the_standard_variable() {
    let setup = spawn_app_with(Backend::Sqlite, &[("KEYPORT_WEBHOOK_DELIVER", "false")]).await;
    let admin = setup.integration("admin", "reports:read").await;
    let otlp = OtlpReceiver::start();
    // Tried: a percent-encoded value, spaces around a pair, an entry with no
    // `=`, and a name that is not a header name.
    let server = serve_traced(
        &setup,
        &otlp,
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20collector-token%3D%3D, x-scope = keyport ,novalue,bad name=hidden-value",
        )],
    );
    let answer = client_credentials(
        &reqwest::Client::new(),
        server.url("/oauth/token"),
        admin.client_id(),
        admin.secret(),
    )
    .sent()
    .await;
    let (_, trace_id) = ids_of(&answer);
    otlp.trace(&trace_id, |spans| has(spans, "POST /oauth/token"))
        .await;
    let headers = otlp.read("headers.jsonl");
    assert!(!headers.is_empty());
    for seen in headers {
        assert_eq!(
            seen,
            json!({
                "authorization": "Bearer collector-token==",
                "x-scope": "keyport",
                "content-type": "application/x-protobuf",
            })
        );
    }
    let log = server.log();
    assert!(
        log.contains("header \"bad name\" is not valid; left out"),
        "{log}"
    );
    assert!(log.contains("an entry has no `=`"), "{log}");
    assert!(
        !log.contains("hidden-value") && !log.contains("collector-token"),
        "{log}"
    );
}

crate::on_both_backends!(
    a_token_request_and_a_push_to_a_webhook_are_span_trees,
    a_trusted_proxys_traceparent_is_continued_and_anyone_elses_ignored,
    a_jwks_fetch_is_a_span_and_carries_its_traceparent,
);
