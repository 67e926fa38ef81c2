//! Mutual TLS (RFC 8705): keys that authenticate with a certificate on the
//! mutual-TLS listener (`tls_client_auth` under the configured client CAs,
//! `self_signed_tls_client_auth` by registered thumbprint), tokens bound to
//! that certificate (`cnf.x5t#S256`) and refused without it at Keyport, in
//! introspection, in token exchange and in `keyport-verify`; a proxy's
//! `Client-Cert` believed only from `trusted_proxies`.
//!
//! Every certificate is made here with rcgen: a server CA the clients
//! trust, a client CA the server trusts for `tls_client_auth`, another CA
//! nobody trusts, and self-signed client certificates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use keyport::startup::Application;
use keyport::storage::Store;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Backend, Cert, Sent as _, TestApp, TestCa, TestDatabase, audit_events, json_body, settings_for,
    status_and_json,
};

/// A client certificate `CN=<cn>,O=Example` with the DNS name `dns`,
/// signed by `ca`, valid from the first of January of one year to that of
/// another.
fn client_cert(ca: &TestCa, cn: &str, dns: &str, valid: (i32, i32)) -> Cert {
    let mut params = client_params(cn, dns);
    params.not_before = rcgen::date_time_ymd(valid.0, 1, 1);
    params.not_after = rcgen::date_time_ymd(valid.1, 1, 1);
    ca.sign(params)
}

fn client_params(cn: &str, dns: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Example");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = vec![SanType::DnsName(dns.try_into().expect("dns"))];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// Valid now (and for decades); expired years ago.
const VALID: (i32, i32) = (2020, 2090);
const EXPIRED: (i32, i32) = (2020, 2021);

fn self_signed(cn: &str) -> Cert {
    let key = KeyPair::generate().expect("key");
    let cert = client_params(cn, "self.example.com")
        .self_signed(&key)
        .expect("self-signed");
    Cert {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// The files the server reads, removed after the test.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("keyport_mtls_{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        Files { dir }
    }

    fn write(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Keyport with HTTPS on its main port and a mutual-TLS listener, trusting
/// `client_ca` for `tls_client_auth` keys.
struct MtlsApp {
    app: TestApp,
    mtls: String,
    server_ca: TestCa,
    client_ca: TestCa,
    files: Files,
    /// Signed in as an admin of the company whose keys the tests make.
    session: String,
}

impl MtlsApp {
    async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let server_ca = TestCa::new("Keyport server CA");
        let client_ca = TestCa::new("Keyport client CA");
        let files = Files::new();
        let server = server_ca.server("keyport");
        let cert_file = files.write("server.pem", &server.pem);
        let key_file = files.write("server-key.pem", &server.key_pem);
        let client_ca_file = files.write("client-ca.pem", &client_ca.pem);
        let db = Arc::new(TestDatabase::create(backend).await);
        let mut overrides = vec![
            ("KEYPORT_TLS_CERT_FILE", cert_file.as_str()),
            ("KEYPORT_TLS_KEY_FILE", key_file.as_str()),
            ("KEYPORT_MTLS_BIND", "127.0.0.1:0"),
            ("KEYPORT_TLS_CLIENT_CA_FILE", client_ca_file.as_str()),
        ];
        overrides.extend_from_slice(extra);
        let settings = settings_for(&db.url, &overrides);
        let store = Store::connect_and_migrate(&settings.database)
            .await
            .expect("database");
        let application = Application::build_with_store(settings, store.clone())
            .await
            .expect("the application starts");
        let port = application.port();
        let mtls_port = application.mtls_port().expect("the mutual-TLS listener");
        let settings = application.settings().clone();
        let service = application.service();
        tokio::spawn(application.run_until_stopped());
        let app = TestApp {
            address: format!("https://127.0.0.1:{port}"),
            port,
            client: client(&server_ca, None),
            store,
            settings,
            db,
            service,
        };
        let (_, session) = app
            .signed_in_integration("admin", "reports:read keys:manage tokens:exchange")
            .await;
        MtlsApp {
            mtls: format!("https://127.0.0.1:{mtls_port}"),
            app,
            server_ca,
            client_ca,
            files,
            session,
        }
    }

    /// What an outside client is given: `cert` and its key, and the server's
    /// CA, as PEM files (their paths).
    fn client_files(&self, cert: &Cert) -> (String, String, String) {
        (
            self.files.write("client.pem", &cert.pem),
            self.files.write("client-key.pem", &cert.key_pem),
            self.files.write("server-ca.pem", &self.server_ca.pem),
        )
    }

    /// A client of the mutual-TLS listener presenting `cert` (or none).
    fn with(&self, cert: Option<&Cert>) -> reqwest::Client {
        client(&self.server_ca, cert)
    }

    /// A key of the admin's, created over the API with `body`'s members.
    async fn key(&self, body: Value) -> String {
        let mut request = json!({"name": format!("mtls-{}", Uuid::new_v4().simple()), "scopes": ["reports:read", "tokens:exchange"]});
        for (name, value) in body.as_object().expect("object") {
            request[name] = value.clone();
        }
        let created = self.app.create_key_over_http(&self.session, request).await;
        created["client_id"].as_str().expect("client_id").to_owned()
    }

    async fn token(&self, cert: Option<&Cert>, client_id: &str) -> (u16, Value) {
        let response = self
            .with(cert)
            .post(format!("{}/oauth/token", self.mtls))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
            ])
            .sent()
            .await;
        status_and_json(response).await
    }

    async fn whoami(&self, base: &str, cert: Option<&Cert>, token: &str) -> (u16, Value) {
        let response = self
            .with(cert)
            .get(format!("{base}/api/v1/whoami"))
            .bearer_auth(token)
            .sent()
            .await;
        status_and_json(response).await
    }

    async fn audit(&self, action: &str) -> Vec<Value> {
        audit_events(&self.app, &self.session, &[("action", action)]).await
    }
}

fn client(server_ca: &TestCa, cert: Option<&Cert>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem.as_bytes()).expect("CA")])
        .timeout(Duration::from_secs(30));
    if let Some(cert) = cert {
        builder = builder.identity(cert.identity());
    }
    builder.build().expect("client")
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims")
}

async fn a_tls_client_auth_key_gets_a_token_bound_to_its_certificate(backend: Backend) {
    let mtls = MtlsApp::spawn(backend, &[]).await;
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_auth": "san_dns:erp.example.com"}))
        .await;
    let cert = client_cert(&mtls.client_ca, "erp", "erp.example.com", VALID);

    let (status, body) = mtls.token(Some(&cert), &client_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer", "RFC 8705 tokens are Bearer");
    let token = body["access_token"].as_str().expect("token").to_owned();
    assert_eq!(
        claims_of(&token)["cnf"],
        json!({"x5t#S256": cert.thumbprint()})
    );

    // Over mutual TLS with its certificate, the token works.
    let (status, who) = mtls.whoami(&mtls.mtls, Some(&cert), &token).await;
    assert_eq!(status, 200, "{who}");
    // Without a certificate (the main port, or the mutual-TLS one without
    // one) or with another client's, it does not.
    let other = client_cert(&mtls.client_ca, "other", "other.example.com", VALID);
    for (base, presented) in [
        (mtls.app.address.as_str(), None),
        (mtls.mtls.as_str(), None),
        (mtls.mtls.as_str(), Some(&other)),
    ] {
        let (status, body) = mtls.whoami(base, presented, &token).await;
        assert_eq!(status, 401, "{base} {body}");
        assert_eq!(body["error"], "invalid_token", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|d| d.contains("client certificate")),
            "{body}"
        );
    }

    // Introspection names the binding (RFC 8705 §3.2).
    let introspection = mtls
        .with(Some(&cert))
        .post(format!("{}/oauth/introspect", mtls.mtls))
        .form(&[("client_id", client_id.as_str()), ("token", token.as_str())])
        .sent()
        .await;
    let (status, answer) = status_and_json(introspection).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["cnf"]["x5t#S256"], cert.thumbprint());
    assert_eq!(answer["token_type"], "Bearer");

    // The key lists its method; the metadata the listener and the methods.
    let key = mtls
        .app
        .get_json(&format!("/api/v1/keys/{client_id}"), &mtls.session)
        .await;
    assert_eq!(key["auth_methods"], json!(["tls_client_auth"]), "{key}");
    assert_eq!(key["tls_client_auth"], "san_dns:erp.example.com");
    let metadata = json_body(
        mtls.app
            .get("/.well-known/oauth-authorization-server")
            .await,
    )
    .await;
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        metadata["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{}/oauth/token", mtls.mtls)
    );
    for method in ["tls_client_auth", "self_signed_tls_client_auth"] {
        assert!(
            metadata["token_endpoint_auth_methods_supported"]
                .as_array()
                .expect("methods")
                .contains(&json!(method)),
            "{metadata}"
        );
    }
}

async fn certificates_that_do_not_authenticate_are_refused_with_invalid_client(backend: Backend) {
    let mtls = MtlsApp::spawn(backend, &[]).await;
    let client_id = mtls
        .key(json!({"tls_client_auth": "subject_dn:CN=erp,O=Example"}))
        .await;
    let stranger_ca = TestCa::new("Nobody's CA");
    let refusals = [
        (
            "another CA",
            client_cert(&stranger_ca, "erp", "erp.example.com", VALID),
            "not issued by a trusted CA",
        ),
        (
            "expired",
            client_cert(&mtls.client_ca, "erp", "erp.example.com", EXPIRED),
            "has expired",
        ),
        (
            "another subject",
            client_cert(&mtls.client_ca, "billing", "erp.example.com", VALID),
            "client authentication failed",
        ),
        (
            "self-signed, not registered",
            self_signed("erp"),
            "not issued by a trusted CA",
        ),
    ];
    for (what, cert, message) in &refusals {
        let (status, body) = mtls.token(Some(cert), &client_id).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{what}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(message)),
            "{what}: {body}"
        );
    }
    // Without a certificate, a client_id alone authenticates nothing.
    let (status, body) = mtls.token(None, &client_id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // The right certificate works (and the key keeps its secret too).
    let good = client_cert(&mtls.client_ca, "erp", "erp.example.com", VALID);
    assert_eq!(mtls.token(Some(&good), &client_id).await.0, 200);

    // Each refusal is audited with the certificate's thumbprint, never
    // the certificate.
    let audited = mtls.audit("key.certificate_refused").await;
    assert_eq!(audited.len(), refusals.len(), "{audited:?}");
    for (_, cert, _) in &refusals {
        assert!(
            audited.iter().any(|event| event["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&cert.thumbprint()))),
            "{audited:?}"
        );
    }
}

async fn a_self_signed_certificate_is_rotated_without_downtime(backend: Backend) {
    let mtls = MtlsApp::spawn(backend, &[]).await;
    let first = self_signed("erp-2026");
    let second = self_signed("erp-2027");
    // Registered as PEM; only the thumbprint is kept.
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_certificates": [first.pem]}))
        .await;
    assert_eq!(mtls.token(Some(&first), &client_id).await.0, 200);
    assert_eq!(mtls.token(Some(&second), &client_id).await.0, 401);

    let path = format!("/api/v1/keys/{client_id}");
    let (status, key) = mtls
        .app
        .send_json(
            Method::PATCH,
            &path,
            &mtls.session,
            &json!({"tls_client_certificates": [first.thumbprint(), second.pem]}),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(
        key["tls_client_certificates"],
        json!([first.thumbprint(), second.thumbprint()])
    );
    assert_eq!(key["auth_methods"], json!(["self_signed_tls_client_auth"]));
    // Both work while the client moves over.
    assert_eq!(mtls.token(Some(&first), &client_id).await.0, 200);
    assert_eq!(mtls.token(Some(&second), &client_id).await.0, 200);

    let (status, _) = mtls
        .app
        .send_json(
            Method::PATCH,
            &path,
            &mtls.session,
            &json!({"tls_client_certificates": [second.thumbprint()]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(mtls.token(Some(&first), &client_id).await.0, 401);
    let (status, body) = mtls.token(Some(&second), &client_id).await;
    assert_eq!(status, 200, "{body}");

    // A key with nothing else may not lose its last certificate; six are
    // too many.
    let (status, body) = mtls
        .app
        .send_json(
            Method::PATCH,
            &path,
            &mtls.session,
            &json!({"tls_client_certificates": []}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let six: Vec<String> = (0..6)
        .map(|i| self_signed(&format!("n{i}")).thumbprint())
        .collect();
    let (status, body) = mtls
        .app
        .send_json(
            Method::PATCH,
            &path,
            &mtls.session,
            &json!({"tls_client_certificates": six}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

async fn a_bound_subject_token_is_exchanged_only_with_its_certificate(backend: Backend) {
    let mtls = MtlsApp::spawn(backend, &[]).await;
    let cert = self_signed("exchanger");
    let client_id = mtls
        .key(json!({"tls_client_certificates": [cert.thumbprint()]}))
        .await;
    let (_, body) = mtls.token(Some(&cert), &client_id).await;
    let subject = body["access_token"].as_str().expect("token").to_owned();
    let exchange = |presented: Option<&Cert>| {
        let client = mtls.with(presented);
        let url = format!("{}/oauth/token", mtls.mtls);
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", client_id.as_str()),
            ("subject_token", subject.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ];
        async move { status_and_json(client.post(url).form(&form).sent().await).await }
    };
    let (status, body) = exchange(Some(&cert)).await;
    assert_eq!(status, 200, "{body}");
    let exchanged = body["access_token"].as_str().expect("token");
    assert_eq!(claims_of(exchanged)["cnf"]["x5t#S256"], cert.thumbprint());

    // Another client's certificate (registered on the same key, so it
    // authenticates) does not hold the subject token's binding.
    let other = self_signed("other");
    let (status, _) = mtls
        .app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/keys/{client_id}"),
            &mtls.session,
            &json!({"tls_client_certificates": [cert.thumbprint(), other.thumbprint()]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = exchange(Some(&other)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

async fn a_client_cert_header_counts_only_from_a_trusted_proxy(backend: Backend) {
    let cert = self_signed("behind-proxy");
    let header = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&cert.der)
    );
    // The test client is 127.0.0.1: trusted in one app, not in the other.
    let trusting = MtlsApp::spawn(backend, &[("KEYPORT_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let wary = MtlsApp::spawn(backend, &[]).await;
    for (mtls, expected) in [(&trusting, 200), (&wary, 401)] {
        let client_id = mtls
            .key(json!({"tls_client_certificates": [cert.thumbprint()]}))
            .await;
        // The main listener: no handshake certificate, only the header.
        let response = mtls
            .app
            .client
            .post(mtls.app.url("/oauth/token"))
            .header("client-cert", &header)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ])
            .sent()
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, expected, "{body}");
        if status == 200 {
            let token = body["access_token"].as_str().expect("token");
            assert_eq!(claims_of(token)["cnf"]["x5t#S256"], cert.thumbprint());
        }
    }
    // The key's company sees the attempt; the trusting app saw none.
    let audited = wary.audit("client_cert.untrusted_header").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(
        audited[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("127.0.0.1")),
        "{audited:?}"
    );
    assert!(
        trusting
            .audit("client_cert.untrusted_header")
            .await
            .is_empty()
    );
}

/// A new client CA bundle is read on reload (what SIGHUP runs, beside the
/// server certificate): certificates of the new CA authenticate, those of
/// the CA no longer in the bundle are refused, and an unreadable bundle
/// keeps the CAs read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_ca_bundle_is_reloaded_without_a_restart() {
    let mtls = MtlsApp::spawn(Backend::Sqlite, &[]).await;
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_auth": "san_dns:erp.example.com"}))
        .await;
    let next_ca = TestCa::new("Keyport next client CA");
    let old_cert = client_cert(&mtls.client_ca, "erp", "erp.example.com", VALID);
    let new_cert = client_cert(&next_ca, "erp", "erp.example.com", VALID);
    assert_eq!(mtls.token(Some(&old_cert), &client_id).await.0, 200);
    let (status, body) = mtls.token(Some(&new_cert), &client_id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    mtls.files.write("client-ca.pem", &next_ca.pem);
    let authorities = &mtls.app.service.client_authorities;
    authorities.reload().expect("the new bundle reads");
    let (status, body) = mtls.token(Some(&new_cert), &client_id).await;
    assert_eq!(status, 200, "the new CA's certificate: {body}");
    let (status, body) = mtls.token(Some(&old_cert), &client_id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "the old CA's certificate: {body}"
    );

    mtls.files.write("client-ca.pem", "not a certificate");
    assert!(authorities.reload().is_err(), "a broken bundle is an error");
    let (status, body) = mtls.token(Some(&new_cert), &client_id).await;
    assert_eq!(status, 200, "the CAs read before stay: {body}");
}

/// `keyport_client_certificate_chain_checks_total{result="…"}` from `/metrics`.
async fn chain_checks(mtls: &MtlsApp, result: &str) -> u64 {
    let text = mtls
        .app
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    let series = format!("keyport_client_certificate_chain_checks_total{{result=\"{result}\"}} ");
    crate::helpers::metric(&text, &series)
}

/// A CA-issued certificate on a kept-alive connection: its chain's
/// signatures are checked once per second, the other tokens of that second
/// are answered from memory; a refused chain is checked every time.
async fn a_ca_issued_chain_is_checked_once_a_second_not_once_a_token(backend: Backend) {
    const TOKENS: u64 = 40;
    let mtls = MtlsApp::spawn(backend, &[]).await;
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_auth": "san_dns:erp.example.com"}))
        .await;
    let cert = client_cert(&mtls.client_ca, "erp", "erp.example.com", VALID);
    let started = keyport::domain::now();
    for _ in 0..TOKENS {
        let (status, body) = mtls.token(Some(&cert), &client_id).await;
        assert_eq!(status, 200, "{body}");
    }
    let seconds = u64::try_from(keyport::domain::now() - started + 1).expect("forward");
    let (passed, remembered) = (
        chain_checks(&mtls, "passed").await,
        chain_checks(&mtls, "remembered").await,
    );
    assert_eq!(passed + remembered, TOKENS, "every token held its chain");
    assert!(
        passed <= seconds,
        "{passed} full checks for {TOKENS} tokens in {seconds} s"
    );

    let stranger = client_cert(&TestCa::new("Nobody's CA"), "erp", "erp.example.com", VALID);
    for _ in 0..3 {
        let (status, body) = mtls.token(Some(&stranger), &client_id).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    assert_eq!(
        chain_checks(&mtls, "refused").await,
        3,
        "refusals are not remembered"
    );
}

/// A certificate that expires while its client keeps asking: tokens until
/// its `notAfter`, refused from the next second on, whatever passed before.
async fn a_remembered_chain_is_refused_once_its_certificate_expires(backend: Backend) {
    let mtls = MtlsApp::spawn(backend, &[]).await;
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_auth": "san_dns:erp.example.com"}))
        .await;
    // Valid for five more seconds: room for the first tokens on a busy machine.
    let not_after = keyport::domain::now() + 5;
    let mut params = client_params("erp", "erp.example.com");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1)
        + Duration::from_secs(u64::try_from(not_after).expect("after 1970"));
    let cert = mtls.client_ca.sign(params);
    // Tokens until one is answered from the second's memory (the second
    // on a machine slow enough to span a second per token).
    for _ in 0..20 {
        let (status, body) = mtls.token(Some(&cert), &client_id).await;
        assert_eq!(status, 200, "before notAfter: {body}");
        if chain_checks(&mtls, "remembered").await >= 1 || keyport::domain::now() >= not_after - 1 {
            break;
        }
    }
    assert!(
        chain_checks(&mtls, "remembered").await >= 1,
        "tokens of one second share a check"
    );
    while keyport::domain::now() <= not_after {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = mtls.token(Some(&cert), &client_id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("has expired")),
        "{body}"
    );
}

crate::on_both_backends!(
    a_tls_client_auth_key_gets_a_token_bound_to_its_certificate,
    certificates_that_do_not_authenticate_are_refused_with_invalid_client,
    a_self_signed_certificate_is_rotated_without_downtime,
    a_bound_subject_token_is_exchanged_only_with_its_certificate,
    a_client_cert_header_counts_only_from_a_trusted_proxy,
    a_ca_issued_chain_is_checked_once_a_second_not_once_a_token,
    a_remembered_chain_is_refused_once_its_certificate_expires,
);

/// curl (OpenSSL) and Python `requests` present a certificate with
/// `--cert/--key` and `cert=(…)`, and get a certificate-bound token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_python_requests_get_tokens_with_a_client_certificate() {
    let mtls = MtlsApp::spawn(Backend::Sqlite, &[]).await;
    let cert = client_cert(&mtls.client_ca, "erp", "erp.example.com", VALID);
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_auth": "san_dns:erp.example.com"}))
        .await;
    let (cert_file, key_file, ca_file) = mtls.client_files(&cert);
    let url = format!("{}/oauth/token", mtls.mtls);

    let curl = tokio::process::Command::new("curl")
        .args(["-q", "--silent", "--show-error", "--max-time", "20"])
        .args(["--fail-with-body", "--cacert", &ca_file])
        .args(["--cert", &cert_file, "--key", &key_file])
        .args([
            "--data",
            &format!("grant_type=client_credentials&client_id={client_id}"),
        ])
        .arg(&url)
        .output()
        .await
        .expect("curl runs");
    assert!(
        curl.status.success(),
        "curl: {} {}",
        String::from_utf8_lossy(&curl.stdout),
        String::from_utf8_lossy(&curl.stderr)
    );
    let body: Value = serde_json::from_slice(&curl.stdout).expect("JSON");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], cert.thumbprint());

    let script = r#"
import json, sys, requests
url, client_id, cert, key, ca = sys.argv[1:6]
answer = requests.post(url, data={"grant_type": "client_credentials", "client_id": client_id},
                       cert=(cert, key), verify=ca, timeout=20)
print(json.dumps({"status": answer.status_code, "body": answer.json()}))
"#;
    let python = tokio::process::Command::new(crate::python_client::python_interpreter())
        .args([
            "-c", script, &url, &client_id, &cert_file, &key_file, &ca_file,
        ])
        .output()
        .await
        .expect("python runs");
    assert!(
        python.status.success(),
        "python: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let out: Value = serde_json::from_slice(&python.stdout).expect("JSON");
    assert_eq!(out["status"], 200, "{out}");
    let token = out["body"]["access_token"].as_str().expect("token");
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], cert.thumbprint());
}

/// `keyport-verify` accepts a certificate-bound token only with the
/// thumbprint of the certificate the adapter says the client presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_crate_refuses_a_bound_token_without_its_certificate() {
    use keyport_verify::{ClientCertificate, StaticKeys, TokenRequest, Verifier, VerifyError};
    let mtls = MtlsApp::spawn(Backend::Sqlite, &[]).await;
    let cert = self_signed("resource-client");
    let client_id = mtls
        .key(json!({"tls_client_certificates": [cert.thumbprint()]}))
        .await;
    let (_, body) = mtls.token(Some(&cert), &client_id).await;
    let token = body["access_token"].as_str().expect("token").to_owned();

    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(json_body(mtls.app.get("/.well-known/jwks.json").await).await)
            .expect("JWKS");
    let verifier = Verifier::builder(
        &mtls.app.settings.tokens.issuer,
        &mtls.app.settings.tokens.audience,
    )
    .with_keys(Arc::new(StaticKeys::from_jwks(&jwks)));
    let presented = ClientCertificate::from_der(&cert.der);
    assert_eq!(presented.thumbprint(), cert.thumbprint());
    verifier
        .verify_bearer_with_certificate(&token, Some(presented.thumbprint()))
        .await
        .expect("the token with its certificate");
    for other in [None, Some(self_signed("x").thumbprint())] {
        assert_eq!(
            verifier
                .verify_bearer_with_certificate(&token, other.as_deref())
                .await
                .expect_err("refused"),
            VerifyError::CertificateMismatch
        );
    }
    assert_eq!(
        verifier.verify_bearer(&token).await.expect_err("refused"),
        VerifyError::CertificateMismatch
    );
    // Through `authenticate`, as the adapters call it: 401 invalid_token.
    let authorization = format!("Bearer {token}");
    let request = |certificate| TokenRequest {
        method: "GET",
        url: "",
        authorization: Some(&authorization),
        dpop_proofs: &[],
        client_certificate: certificate,
    };
    assert!(
        verifier
            .authenticate(&request(Some(presented.thumbprint())))
            .await
            .is_ok()
    );
    let refused = verifier
        .authenticate(&request(None))
        .await
        .expect_err("refused");
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .challenges()
            .iter()
            .any(|c| c.contains("invalid_token")),
        "{:?}",
        refused.challenges()
    );
}

#[tokio::test]
async fn a_mutual_tls_listener_needs_https() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let err = keyport::config::Settings::load_from(
        None,
        vec![
            ("KEYPORT_DATABASE_URL".to_owned(), db.url.clone()),
            ("KEYPORT_MTLS_BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ],
    )
    .expect_err("mtls_bind without HTTPS");
    assert!(err.to_string().contains("mtls_bind"), "{err}");
}

/// openid-client (Node) with `TlsClientAuth()` and the metadata's
/// `mtls_endpoint_aliases`, through a TLS agent carrying the certificate:
/// a certificate-bound token, accepted by a protected resource with the
/// certificate and refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_authenticates_with_its_certificate_and_uses_the_bound_token() {
    let mtls = MtlsApp::spawn(Backend::Sqlite, &[]).await;
    let cert = client_cert(&mtls.client_ca, "erp", "erp.example.com", VALID);
    let client_id = mtls
        .key(json!({"client_secret": false, "tls_client_auth": "subject_dn:CN=erp,O=Example"}))
        .await;
    let (cert_file, key_file, ca_file) = mtls.client_files(&cert);
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openid_client_mtls.mjs");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(crate::openid_client::node())
            .arg(script)
            .arg(&mtls.app.settings.tokens.issuer)
            .arg(&client_id)
            .env("KEYPORT_CLIENT_CERT", &cert_file)
            .env("KEYPORT_CLIENT_KEY", &key_file)
            .env("KEYPORT_SERVER_CA", &ca_file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the script finished within 60 s")
    .expect("node runs");
    assert!(
        output.status.success(),
        "openid-client: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        out["token_endpoint"],
        format!("{}/oauth/token", mtls.mtls),
        "{out}"
    );
    assert_eq!(
        out["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("bearer"),
        "{out}"
    );
    let token = out["access_token"].as_str().expect("token");
    assert_eq!(claims_of(token)["cnf"]["x5t#S256"], cert.thumbprint());
    assert_eq!(out["resource_with_certificate"]["status"], 200, "{out}");
    assert_eq!(
        out["resource_with_certificate"]["body"]["client_id"],
        client_id.as_str(),
        "{out}"
    );
    assert_eq!(out["resource_without_certificate"]["status"], 401, "{out}");
    assert!(
        out["resource_without_certificate"]["www_authenticate"]
            .as_str()
            .is_some_and(|c| c.contains("invalid_token")),
        "{out}"
    );
}

/// The console's key form takes a `tls_client_auth` subject; a malformed
/// one is refused next to its field, and the list marks the key `mTLS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_form_gives_a_key_a_certificate_subject_or_self_signed_certificates() {
    use crate::console_webhooks::{Person, hidden};
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let acme = app.tenant("Acme").await;
    app.user(&acme, "ana@acme.io", "admin", "reports:read keys:manage")
        .await;
    let ana = Person::signed_in(&app, "ana@acme.io").await;
    let post = |fields: Vec<(&'static str, String)>| {
        let ana = &ana;
        async move {
            let csrf = hidden(&ana.get("/console/keys").await.html, "csrf");
            let form_id = Uuid::new_v4().simple().to_string();
            let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
            ana.post_as("/console/keys", &fields, &csrf, &form_id, true)
                .await
        }
    };
    let create = |subject: &'static str| {
        post(vec![
            ("name", "erp".to_owned()),
            ("scope", "reports:read".to_owned()),
            ("tls_client_auth", subject.to_owned()),
        ])
    };
    let refused = create("dns:erp.example.com").await;
    assert_eq!(refused.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("role=\"alert\""), "{}", refused.html);
    let created = create("san_dns:erp.example.com").await;
    assert_eq!(
        created.status,
        reqwest::StatusCode::CREATED,
        "{}",
        created.html
    );
    assert!(ana.get("/console/keys").await.html.contains(">mTLS<"));
    let keys = keyport::service::keys::list_keys(
        &app.service(),
        &keyport::domain::Principal::operator(),
        keyport::service::keys::KeyListing::All,
    )
    .await
    .expect("list keys");
    let key = keys.iter().find(|k| k.name == "erp").expect("the key");
    assert_eq!(
        key.tls_client_auth.as_deref(),
        Some("san_dns:erp.example.com")
    );

    // Self-signed certificates: pasted as PEM (two, one after the other)
    // or given by thumbprint; a line that is neither is refused, naming
    // the field.
    let (first, second) = (self_signed("erp-a"), self_signed("erp-b"));
    let pasted = post(vec![
        ("name", "erp-pem".to_owned()),
        ("scope", "reports:read".to_owned()),
        (
            "tls_client_certificates",
            format!("{}\n{}", first.pem, second.pem),
        ),
    ])
    .await;
    assert_eq!(
        pasted.status,
        reqwest::StatusCode::CREATED,
        "{}",
        pasted.html
    );
    let by_thumbprint = post(vec![
        ("name", "erp-thumbprint".to_owned()),
        ("scope", "reports:read".to_owned()),
        (
            "tls_client_certificates",
            format!(" {}\n", first.thumbprint()),
        ),
    ])
    .await;
    assert_eq!(
        by_thumbprint.status,
        reqwest::StatusCode::CREATED,
        "{}",
        by_thumbprint.html
    );
    let wrong = post(vec![
        ("name", "erp-wrong".to_owned()),
        ("scope", "reports:read".to_owned()),
        ("tls_client_certificates", "not-a-thumbprint".to_owned()),
    ])
    .await;
    assert_eq!(wrong.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.html.contains("role=\"alert\""), "{}", wrong.html);
    let keys = keyport::service::keys::list_keys(
        &app.service(),
        &keyport::domain::Principal::operator(),
        keyport::service::keys::KeyListing::All,
    )
    .await
    .expect("list keys");
    let registered = |name: &str| {
        keys.iter()
            .find(|k| k.name == name)
            .map(|k| k.tls_client_certificates.clone())
    };
    assert_eq!(
        registered("erp-pem"),
        Some(vec![first.thumbprint(), second.thumbprint()])
    );
    assert_eq!(registered("erp-thumbprint"), Some(vec![first.thumbprint()]));
    assert_eq!(registered("erp-wrong"), None, "nothing created");
}

/// Refused certificates count toward the failure throttle like wrong
/// secrets: after `client_auth_max_failures`, even the right certificate
/// waits (429 with Retry-After).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_certificate_failures_are_throttled_like_wrong_secrets() {
    let mtls = MtlsApp::spawn(
        Backend::Sqlite,
        &[("KEYPORT_CLIENT_AUTH_MAX_FAILURES", "3")],
    )
    .await;
    let good = self_signed("good");
    let client_id = mtls
        .key(json!({"tls_client_certificates": [good.thumbprint()]}))
        .await;
    let wrong = self_signed("wrong");
    for _ in 0..3 {
        assert_eq!(mtls.token(Some(&wrong), &client_id).await.0, 401);
    }
    let response = mtls
        .with(Some(&good))
        .post(format!("{}/oauth/token", mtls.mtls))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
        ])
        .sent()
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

/// DPoP and a certificate in one request: the certificate authenticates
/// the key, the token is bound to the DPoP key only (one binding per
/// token), and the proof names the mutual-TLS listener's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_over_mutual_tls_binds_the_token_to_the_dpop_key() {
    let mtls = MtlsApp::spawn(Backend::Sqlite, &[]).await;
    let cert = self_signed("dpop-client");
    let client_id = mtls
        .key(json!({"tls_client_certificates": [cert.thumbprint()]}))
        .await;
    let dpop = crate::dpop::DpopKey::new();
    let url = format!("{}/oauth/token", mtls.mtls);
    let response = mtls
        .with(Some(&cert))
        .post(&url)
        .header("DPoP", dpop.proof("POST", &url, None))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
        ])
        .sent()
        .await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(claims_of(token)["cnf"], json!({"jkt": dpop.jkt}));
}
