//! HTTPS served by Keyport itself: rustls on the configured PEM files, an
//! `https` issuer, Strict-Transport-Security, and a certificate reloaded
//! (by call and by SIGHUP to the real binary) without a restart.
//!
//! Certificates come from two throwaway CAs made here with rcgen; clients
//! trust exactly one of them, so which CA a client accepts tells which
//! certificate the server presented.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyport::startup::Application;
use keyport::storage::Store;
use keyport::tls::{CertificateReloader, fingerprint};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::Sent as _;
use crate::helpers::client_credentials;
use crate::helpers::{
    Backend, Cert, ServedBinary, TestApp, TestCa, TestDatabase, json_body, settings_for, spawn_app,
    startup_error,
};

const HSTS: &str = "max-age=31536000";

/// The PEM files the server reads, in a directory removed after the test.
struct CertFiles {
    dir: PathBuf,
}

impl CertFiles {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("keyport_tls_{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("certificate dir");
        CertFiles { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Where `ca`'s certificate is written for curl's `--cacert`.
    fn ca(&self, ca: &TestCa, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, &ca.pem).expect("write CA");
        path
    }

    fn install(&self, leaf: &Cert) {
        std::fs::write(self.cert(), &leaf.pem).expect("write certificate");
        std::fs::write(self.key(), &leaf.key_pem).expect("write key");
    }

    fn env(&self) -> [(&'static str, String); 2] {
        [
            ("KEYPORT_TLS_CERT_FILE", self.cert().display().to_string()),
            ("KEYPORT_TLS_KEY_FILE", self.key().display().to_string()),
        ]
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client that trusts `ca` and nothing else, and reports the
/// certificate each connection was given.
fn client_trusting(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA PEM")])
        .tls_info(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("https client")
}

fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("TLS info with the peer certificate")
        .to_vec()
}

/// A `TestApp` whose address is `https://…` and whose client trusts `ca`,
/// plus the application's reload handle. `spawn_app_on`, keeping the
/// `Application` long enough to take that handle.
struct HttpsApp {
    app: TestApp,
    reloader: CertificateReloader,
}

async fn spawn_https_app(files: &CertFiles, ca: &TestCa) -> HttpsApp {
    let db = Arc::new(TestDatabase::create(Backend::Sqlite).await);
    let env = files.env();
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = settings_for(&db.url, &overrides);
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("connect to the test database");
    let application = Application::build_with_store(settings, store.clone())
        .await
        .expect("build the application");
    let port = application.port();
    let settings = application.settings().clone();
    let reloader = application
        .certificate_reloader()
        .expect("TLS is configured");
    let service = application.service();
    tokio::spawn(application.run_until_stopped());
    HttpsApp {
        app: TestApp {
            address: format!("https://127.0.0.1:{port}"),
            port,
            client: client_trusting(ca),
            store,
            settings,
            db,
            service,
        },
        reloader,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_issued_over_https_under_an_https_issuer_with_hsts() {
    let ca = TestCa::new("Keyport test CA");
    let files = CertFiles::new();
    files.install(&ca.server("keyport-a"));
    let HttpsApp { app, .. } = spawn_https_app(&files, &ca).await;
    let integration = app.integration("admin", "reports:read").await;

    let response = app
        .request_token(integration.client_id(), integration.secret())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["strict-transport-security"], HSTS);
    let token = json_body(response).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let whoami = app.get_as("/api/v1/whoami", &token).await;
    assert_eq!(whoami.status(), 200, "the token works over HTTPS");
    assert_eq!(whoami.headers()["strict-transport-security"], HSTS);

    let metadata = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata.status(), 200);
    assert_eq!(metadata.headers()["strict-transport-security"], HSTS);
    let metadata: Value = json_body(metadata).await;
    let issuer = metadata["issuer"].as_str().expect("issuer");
    assert!(
        issuer.starts_with(&format!("https://127.0.0.1:{}", app.port)),
        "{issuer}"
    );
    assert!(
        metadata["token_endpoint"]
            .as_str()
            .expect("token_endpoint")
            .starts_with("https://"),
        "{metadata}"
    );

    // Error answers carry it too.
    let missing = app.get("/no/such/path").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["strict-transport-security"], HSTS);

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("plain client");
    let result = plain
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await;
    assert!(result.is_err(), "plain HTTP answered: {result:?}");

    // A client that does not trust the test CA refuses the server.
    let stranger = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client with the system's roots");
    let result = stranger.get(app.url("/healthz")).send().await;
    assert!(result.is_err(), "an untrusted certificate was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_app_sends_no_strict_transport_security() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/healthz",
        "/.well-known/oauth-authorization-server",
        "/nope",
    ] {
        let response = app.get(path).await;
        assert!(
            !response.headers().contains_key("strict-transport-security"),
            "{path} over plain HTTP sent HSTS"
        );
    }
}

async fn curl(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("curl")
        // -q: no ~/.curlrc; the test says everything.
        .args(["-q", "--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .await
        .expect("curl runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_trusts_the_server_with_the_ca_file_and_refuses_it_without() {
    let ca = TestCa::new("Keyport curl CA");
    let files = CertFiles::new();
    files.install(&ca.server("keyport-curl"));
    let ca_file = files.ca(&ca, "ca.pem");
    let ca_file = ca_file.to_str().expect("utf-8 path");
    let HttpsApp { app, .. } = spawn_https_app(&files, &ca).await;
    let integration = app.integration("member", "reports:read").await;

    let health = curl(&[
        "--fail",
        "--cacert",
        ca_file,
        "--dump-header",
        "-",
        &app.url("/healthz"),
    ])
    .await;
    let out = String::from_utf8_lossy(&health.stdout).to_lowercase();
    assert!(
        health.status.success(),
        "curl /healthz: {out} {}",
        String::from_utf8_lossy(&health.stderr)
    );
    assert!(
        out.contains(&format!("strict-transport-security: {HSTS}")),
        "{out}"
    );

    let credentials = format!("{}:{}", integration.client_id(), integration.secret());
    let token = curl(&[
        "--fail-with-body",
        "--cacert",
        ca_file,
        "--user",
        &credentials,
        "--data",
        "grant_type=client_credentials",
        &app.url("/oauth/token"),
    ])
    .await;
    assert!(
        token.status.success(),
        "curl /oauth/token: {}",
        String::from_utf8_lossy(&token.stderr)
    );
    let body: Value = serde_json::from_slice(&token.stdout).expect("token JSON");
    assert!(body["access_token"].as_str().is_some(), "{body}");

    // Without the CA, curl refuses the certificate (exit 60).
    let refused = curl(&[&app.url("/healthz")]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(60), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_is_served_to_new_connections_and_a_broken_one_is_not() {
    let first_ca = TestCa::new("Keyport first CA");
    let second_ca = TestCa::new("Keyport second CA");
    let first = first_ca.server("keyport-first");
    let second = second_ca.server("keyport-second");
    let files = CertFiles::new();
    files.install(&first);
    let HttpsApp { app, reloader } = spawn_https_app(&files, &first_ca).await;
    assert_eq!(reloader.fingerprint(), fingerprint(&first.der));

    // `app.client` trusts the first CA and keeps its connection open.
    let before = app.get("/healthz").await;
    assert_eq!(before.status(), 200);
    assert_eq!(peer_certificate(&before), first.der);
    before
        .bytes()
        .await
        .expect("body read, connection back in the pool");

    files.install(&second);
    reloader.reload_certificate().expect("the new files load");
    assert_eq!(reloader.fingerprint(), fingerprint(&second.der));

    // A new connection gets the new certificate: a client trusting only the
    // second CA gets in, one trusting only the first does not.
    let fresh = client_trusting(&second_ca)
        .get(app.url("/healthz"))
        .sent()
        .await;
    assert_eq!(fresh.status(), 200);
    assert_eq!(peer_certificate(&fresh), second.der);
    let stale = client_trusting(&first_ca)
        .get(app.url("/healthz"))
        .send()
        .await;
    assert!(stale.is_err(), "the old certificate is still served");

    // The connection opened before the reload keeps its session.
    let kept = app.get("/healthz").await;
    assert_eq!(kept.status(), 200);
    assert_eq!(peer_certificate(&kept), first.der);

    // A broken file is refused, and the second certificate stays.
    std::fs::write(files.cert(), "-----BEGIN CERTIFICATE-----\nnot base64!\n")
        .expect("break the certificate file");
    let err = reloader.reload_certificate().expect_err("broken PEM");
    let message = keyport::telemetry::error_chain(&err);
    assert!(message.contains("cert.pem"), "{message}");
    assert_eq!(reloader.fingerprint(), fingerprint(&second.der));
    // So does a key that belongs to another certificate.
    std::fs::write(files.cert(), &second.pem).expect("restore the certificate");
    std::fs::write(files.key(), &first.key_pem).expect("the wrong key");
    let err = reloader.reload_certificate().expect_err("mismatched key");
    assert!(err.to_string().contains("does not belong"), "{err}");

    let integration = app.integration("member", "reports:read").await;
    let response = client_credentials(
        &client_trusting(&second_ca),
        app.url("/oauth/token"),
        integration.client_id(),
        integration.secret(),
    )
    .sent()
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), second.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_loaded_stops_start_up_naming_the_file() {
    let ca = TestCa::new("Keyport start-up CA");
    let files = CertFiles::new();
    std::fs::write(files.cert(), ca.server("keyport-start").pem).expect("write certificate");
    // No key file.
    let db = TestDatabase::create(Backend::Sqlite).await;
    let env = files.env();
    let overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let settings = settings_for(&db.url, &overrides);
    let message = startup_error(settings, "without its key file").await;
    assert!(message.contains("HTTPS"), "{message}");
    assert!(message.contains("private key file"), "{message}");
    assert!(
        message.contains(&files.key().display().to_string()),
        "{message}"
    );
}

/// `keyport serve` over HTTPS with `files`, as a process of its own.
fn start_server(db: &TestDatabase, files: &CertFiles) -> ServedBinary {
    let mut command = ServedBinary::command(&db.url, 1);
    command.envs(files.env());
    ServedBinary::start(command, Arc::default())
}

/// Sends SIGHUP to the server process only.
fn hang_up(server: &ServedBinary) {
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits until the server's log holds `text`.
async fn wait_for_log(server: &ServedBinary, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no `{text}` in the log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn https_url(server: &ServedBinary, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", server.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_the_running_binary_serve_the_new_certificate() {
    let first_ca = TestCa::new("Keyport first CA");
    let second_ca = TestCa::new("Keyport second CA");
    let first = first_ca.server("keyport-first");
    let second = second_ca.server("keyport-second");
    let files = CertFiles::new();
    files.install(&first);
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut server = start_server(&db, &files);

    let response = client_trusting(&first_ca)
        .get(https_url(&server, "/healthz"))
        .sent()
        .await;
    assert_eq!(peer_certificate(&response), first.der);

    files.install(&second);
    hang_up(&server);
    wait_for_log(
        &server,
        &format!(
            "now serving SHA-256 fingerprint {}",
            fingerprint(&second.der)
        ),
    )
    .await;
    let response = client_trusting(&second_ca)
        .get(https_url(&server, "/healthz"))
        .sent()
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), second.der);

    // A broken key file: logged, the second certificate stays, the process too.
    std::fs::write(files.key(), "garbage").expect("break the key file");
    hang_up(&server);
    wait_for_log(&server, "TLS certificate reload failed").await;
    let response = client_trusting(&second_ca)
        .get(https_url(&server, "/healthz"))
        .sent()
        .await;
    assert_eq!(peer_certificate(&response), second.der);
    assert!(
        server.child.try_wait().expect("child status").is_none(),
        "SIGHUP ended the server"
    );

    // No line of either private key reached the log.
    let log = server.log();
    for key in [&first.key_pem, &second.key_pem] {
        for line in key.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!log.contains(line), "key material in the log:\n{log}");
        }
    }
}

/// A client that comes back resumes its TLS session instead of a full
/// handshake, even after more other clients than a server-side session
/// cache would hold (256 by default): the server hands out stateless
/// session tickets, so it stores nothing per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_client_resumes_its_tls_session_after_many_other_clients() {
    use rustls::HandshakeKind;
    let ca = TestCa::new("Keyport resumption CA");
    let files = CertFiles::new();
    files.install(&ca.server("keyport-resumption"));
    let HttpsApp { app, .. } = spawn_https_app(&files, &ca).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone().into()).expect("the CA");
    let config = move || {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        )
    };
    let returning = config();
    let port = app.port;
    let kinds = tokio::task::spawn_blocking(move || {
        // One request over a new connection; how its handshake went.
        let request = |config: &Arc<rustls::ClientConfig>| {
            use std::io::{Read, Write};
            let name = "localhost".try_into().expect("a server name");
            let mut connection =
                rustls::ClientConnection::new(Arc::clone(config), name).expect("a connection");
            let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let mut tls = rustls::Stream::new(&mut connection, &mut socket);
            tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("send");
            let mut response = Vec::new();
            // Reading the answer also reads the session tickets.
            let _ = tls.read_to_end(&mut response);
            assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
            connection.handshake_kind()
        };
        let first = request(&returning);
        for _ in 0..300 {
            request(&config());
        }
        let again = request(&returning);
        (first, again)
    })
    .await
    .expect("the client thread");
    assert_eq!(
        kinds,
        (Some(HandshakeKind::Full), Some(HandshakeKind::Resumed))
    );
}
