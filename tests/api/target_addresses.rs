//! Where Keyport connects on a company's behalf (webhook receivers, trusted
//! issuers' JWKS URLs): the IANA special-purpose blocks are refused when a
//! URL is registered, with a message naming the block, and a stored URL on
//! an address that is never allowed is refused at delivery without any
//! connection. The whole table, edge by edge, is the unit test in
//! `domain::special_addresses`; the resolver's check at connection time is
//! `webhooks::tests`. No test here dials a special-purpose address.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, assert_not_sent, first_attempt_at, spawn_app, spawn_app_with,
};

/// A company admin who may manage webhooks and trusted issuers, signed in.
async fn admin_session(app: &TestApp) -> (crate::helpers::Integration, String) {
    app.signed_in_integration("admin", "webhooks:manage keys:manage")
        .await
}

/// `POST /api/v1/webhook-endpoints` for `url`, listening to an event no
/// test here causes (so an accepted endpoint is never sent to).
async fn register_endpoint(app: &TestApp, session: &str, url: &str) -> (u16, Value) {
    app.send_json(
        Method::POST,
        "/api/v1/webhook-endpoints",
        session,
        &json!({ "url": url, "events": ["user.locked"] }),
    )
    .await
}

/// `POST /api/v1/trusted-issuers` with `jwks_url` (registering fetches
/// nothing), each with an audience of its own.
async fn trust_issuer(app: &TestApp, session: &str, jwks_url: &str, n: usize) -> (u16, Value) {
    app.send_json(
        Method::POST,
        "/api/v1/trusted-issuers",
        session,
        &json!({
            "issuer": "https://ci.example.com",
            "jwks_url": jwks_url,
            "audience": format!("keyport-{n}"),
        }),
    )
    .await
}

/// Both registrations of `host` are refused with a clean 4xx in the API's
/// error shape, saying each of `says`.
async fn assert_refused(
    app: &TestApp,
    session: &str,
    scheme: &str,
    host: &str,
    says: &[&str],
    n: usize,
) {
    let endpoint = register_endpoint(app, session, &format!("{scheme}://{host}/hooks")).await;
    let issuer = trust_issuer(app, session, &format!("{scheme}://{host}/jwks"), n).await;
    for (what, (status, body)) in [("webhook endpoint", endpoint), ("JWKS URL", issuer)] {
        assert!(
            status == 400 || status == 422,
            "{what} {host}: {status} {body}"
        );
        assert!(body["error"].is_string(), "{what} {host}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        for word in says {
            assert!(
                message.contains(word),
                "{what} {host}: {message:?} should say {word:?}"
            );
        }
    }
}

/// The blocks the guard used to miss, each as a literal address in an
/// https URL, with the word the refusal must say (inputs tried: each host).
const SPECIAL_PURPOSE_HOSTS: &[(&str, &str)] = &[
    (
        "198.18.0.1",
        "benchmarking address (198.18.0.0/15 Benchmarking, RFC 2544)",
    ),
    ("198.19.255.254", "benchmarking"),
    ("192.0.0.8", "IPv4 dummy address"),
    ("192.0.0.170", "NAT64/DNS64 Discovery"),
    ("192.0.2.10", "documentation address (192.0.2.0/24"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("192.88.99.1", "6to4 Relay Anycast"),
    (
        "[64:ff9b::a00:1]",
        "NAT64 address (64:ff9b::/96 IPv4-IPv6 Translat., RFC 6052) that reaches 10.0.0.1, a private address",
    ),
    (
        "[64:ff9b::5db8:d822]",
        "that reaches 93.184.216.34; translated and tunnelled addresses are refused",
    ),
    ("[64:ff9b:1::1]", "local-use NAT64"),
    (
        "[2002:a00:1::1]",
        "6to4 address (2002::/16 6to4, RFC 3056) that reaches 10.0.0.1",
    ),
    ("[2002:5db8:d822::1]", "6to4"),
    ("[2001::1]", "Teredo"),
    ("[2001:2::1]", "benchmarking"),
    ("[::5db8:d822]", "IPv4-compatible"),
    ("[fec0::1]", "site-local"),
    ("[2001:db8::1]", "documentation"),
    ("[3fff::1]", "documentation"),
    ("[100::1]", "Discard-Only"),
    ("[5f00::1]", "SRv6"),
    ("[4000::1]", "Reserved by IETF"),
];

/// With the default policy, each special-purpose block is refused as a
/// webhook target and as a JWKS URL when registered, naming the block; the
/// public addresses just outside are accepted.
async fn special_purpose_addresses_are_refused_as_webhook_targets_and_jwks_urls(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, session) = admin_session(&app).await;
    for (n, (host, says)) in SPECIAL_PURPOSE_HOSTS.iter().enumerate() {
        assert_refused(&app, &session, "https", host, &[says], n).await;
    }
    // The advice fits the refusal: a private address points at the setting
    // that opens it, a documentation address at nothing.
    let (_, private) = register_endpoint(&app, &session, "https://10.0.0.1/hooks").await;
    assert!(
        private["message"]
            .as_str()
            .is_some_and(|m| m.contains("webhook_allow_private_targets")),
        "{private}"
    );
    let (_, never) = register_endpoint(&app, &session, "https://192.0.2.1/hooks").await;
    assert!(
        never["message"]
            .as_str()
            .is_some_and(|m| m.contains("whatever its settings")),
        "{never}"
    );
    // Just outside 198.18.0.0/15 and 2002::/16, and an IPv4-mapped public
    // address: accepted.
    for (n, host) in ["198.20.0.1", "[2003::1]", "[::ffff:93.184.216.34]"]
        .iter()
        .enumerate()
    {
        let (status, body) =
            register_endpoint(&app, &session, &format!("https://{host}/hooks")).await;
        assert_eq!(status, 201, "{host}: {body}");
        let (status, body) =
            trust_issuer(&app, &session, &format!("https://{host}/jwks"), 100 + n).await;
        assert_eq!(status, 201, "{host}: {body}");
    }
}

fn private_targets_allowed() -> [(&'static str, &'static str); 5] {
    [
        ("KEYPORT_WEBHOOK_ALLOW_HTTP", "true"),
        ("KEYPORT_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("KEYPORT_EXCHANGE_ALLOW_HTTP", "true"),
        ("KEYPORT_EXCHANGE_ALLOW_PRIVATE_TARGETS", "true"),
        ("KEYPORT_WEBHOOK_POLL_INTERVAL_MS", "100"),
    ]
}

/// Allowing private targets opens hosts on a network someone runs
/// (loopback, private-use, unique-local, benchmarking), never the
/// unspecified address (which reaches this host), link-local (the cloud
/// metadata service), multicast, broadcast, documentation addresses or
/// translators (inputs tried: each host below).
async fn allowing_private_targets_never_opens_unspecified_link_local_multicast_or_translated_addresses(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &private_targets_allowed()).await;
    let (_, session) = admin_session(&app).await;
    for (n, host) in ["127.0.0.1:9", "10.0.0.1", "[fd00::1]"].iter().enumerate() {
        let (status, body) =
            register_endpoint(&app, &session, &format!("http://{host}/hooks")).await;
        assert_eq!(status, 201, "{host}: {body}");
        let (status, body) =
            trust_issuer(&app, &session, &format!("http://{host}/jwks"), 100 + n).await;
        assert_eq!(status, 201, "{host}: {body}");
    }
    for (n, (host, says)) in [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("[::]", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[fe80::1]", "link-local"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "documentation"),
        ("[64:ff9b::7f00:1]", "NAT64"),
        ("[2002:7f00:1::1]", "6to4"),
        ("[::7f00:1]", "IPv4-compatible"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_refused(
            &app,
            &session,
            "http",
            host,
            &[says, "whatever its settings"],
            n,
        )
        .await;
    }
}

/// A TCP listener that counts the connections made to it (and answers none).
struct CountingListener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingListener {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        CountingListener {
            port,
            accepted,
            task,
        }
    }
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An endpoint already stored on `0.0.0.0` (from before this guard, or
/// written behind the API's back) is refused at delivery, before any
/// connection: on Linux, connecting to 0.0.0.0 reaches this host, here the
/// listener on 127.0.0.1 that counts connections and sees none.
async fn a_stored_endpoint_on_an_address_never_allowed_is_refused_at_delivery_without_connecting(
    backend: Backend,
) {
    let mut settings = private_targets_allowed().to_vec();
    settings.push(("KEYPORT_WEBHOOK_TIMEOUT_SECONDS", "1"));
    let app = spawn_app_with(backend, &settings).await;
    let (admin, session) = admin_session(&app).await;
    let listener = CountingListener::start().await;
    let url = format!("http://0.0.0.0:{}/hooks", listener.port);
    let attempt = first_attempt_at(&app, &admin, &session, &url).await;
    assert_not_sent(&attempt, "unspecified");
    assert_eq!(
        listener.accepted.load(Ordering::SeqCst),
        0,
        "a connection was made"
    );
}

crate::on_both_backends!(
    special_purpose_addresses_are_refused_as_webhook_targets_and_jwks_urls,
    allowing_private_targets_never_opens_unspecified_link_local_multicast_or_translated_addresses,
    a_stored_endpoint_on_an_address_never_allowed_is_refused_at_delivery_without_connecting,
);
