//! Tokens per second with mutual TLS (RFC 8705) next to plain TLS, as
//! ratios in one run: Keyport serves HTTPS and its mutual-TLS listener
//! in-process (release build, a temporary SQLite file), and reqwest
//! clients drive `POST /oauth/token` for the same time each:
//!
//!   TLS, keep-alive           client_secret_basic on the HTTPS port
//!   TLS, new connection       the same, a new TCP + TLS handshake per token
//!   mTLS, keep-alive          a self-signed certificate
//!                             (`self_signed_tls_client_auth`), client_id
//!                             only, on the mutual-TLS port: a bound token
//!   mTLS, new connection      the same, a new handshake (with the client's
//!                             certificate) per token
//!   mTLS, CA-issued, keep-alive  `tls_client_auth`: the chain checked against
//!                             tls_client_ca_file and the SAN matched per token
//!
//! `cargo bench --bench mtls` (about 5 × 8 s of measuring; `MTLS_BENCH_SECONDS`
//! and `MTLS_BENCH_CONCURRENCY` change the 8 s and 16 in-flight requests).
//! The driver shares the machine with the server, so the absolute figures
//! say little; the ratios, measured in one run, are the result. No timing is
//! asserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyport::config::Settings;
use keyport::domain::Principal;
use keyport::service::keys::{self, ClientAuthSetup, KeyControls, NewKeyRequest};
use keyport::service::{tenants, users};
use keyport::startup::Application;
use keyport::storage::Store;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

struct Scenario {
    name: &'static str,
    url: String,
    client: reqwest::Client,
    /// The form, and Basic credentials if any.
    form: Vec<(String, String)>,
    basic: Option<(String, String)>,
}

fn client(ca_pem: &str, identity: Option<&str>, keep_alive: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA")])
        .timeout(Duration::from_secs(30));
    if !keep_alive {
        builder = builder.pool_max_idle_per_host(0);
    }
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

async fn drive(scenario: &Scenario, seconds: u64, concurrency: usize) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, form, basic) = (
            scenario.client.clone(),
            scenario.url.clone(),
            scenario.form.clone(),
            scenario.basic.clone(),
        );
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let mut request = client.post(&url).form(&form);
                if let Some((id, secret)) = &basic {
                    request = request.basic_auth(id, Some(secret));
                }
                match request.send().await {
                    Ok(answer) if answer.status() == 200 => {
                        let _ = answer.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

fn ca() -> (Issuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    (Issuer::new(params, key), cert.pem())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let seconds: u64 = std::env::var("MTLS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let concurrency: usize = std::env::var("MTLS_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let dir = std::env::temp_dir().join(format!("keyport_mtls_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");

    let (server_ca, server_ca_pem) = ca();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().expect("key");
    let server = params.signed_by(&server_key, &server_ca).expect("server");
    let (client_ca, client_ca_pem) = ca();
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    };
    let env: Vec<(String, String)> = [
        (
            "KEYPORT_DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
        ),
        ("KEYPORT_BIND", "127.0.0.1:0".to_owned()),
        ("KEYPORT_MTLS_BIND", "127.0.0.1:0".to_owned()),
        ("KEYPORT_TLS_CERT_FILE", write("server.pem", &server.pem())),
        (
            "KEYPORT_TLS_KEY_FILE",
            write("server-key.pem", &server_key.serialize_pem()),
        ),
        (
            "KEYPORT_TLS_CLIENT_CA_FILE",
            write("client-ca.pem", &client_ca_pem),
        ),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::load_from(None, env).expect("settings");
    let store = Store::connect_and_migrate(&settings.database)
        .await
        .expect("database");
    let app = Application::build_with_store(settings, store)
        .await
        .expect("application");
    let (port, mtls_port) = (app.port(), app.mtls_port().expect("mtls"));
    let service = app.service();
    tokio::spawn(app.run_until_stopped());

    let operator = Principal::operator();
    let tenant = tenants::create_tenant(&service, &operator, "bench")
        .await
        .expect("tenant");
    users::create_user(
        &service,
        &operator,
        users::NewUserRequest {
            tenant: Some(&tenant.id),
            email: "bench@example.com",
            role: "member",
            permissions: "reports:read",
        },
    )
    .await
    .expect("user");
    let self_signed_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::default();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "bench-client");
    client_params.subject_alt_names = vec![SanType::DnsName(
        "bench.example.com".try_into().expect("dns"),
    )];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let self_signed = client_params
        .clone()
        .self_signed(&self_signed_key)
        .expect("self-signed");
    let issued_key = KeyPair::generate().expect("key");
    let issued = client_params
        .signed_by(&issued_key, &client_ca)
        .expect("issued");

    let create = |certificates: Vec<String>, subject: Option<&'static str>| {
        let service = service.clone();
        let operator = operator.clone();
        async move {
            keys::create_client(
                &service,
                &operator,
                NewKeyRequest {
                    owner_email: Some("bench@example.com"),
                    name: "bench",
                    scopes: None,
                    expires_in: None,
                    token_ttl: None,
                    sigv4: false,
                },
                KeyControls {
                    tls_client_auth: subject.map(Some),
                    tls_client_certificates: Some(&certificates),
                    ..Default::default()
                },
                ClientAuthSetup::default(),
            )
            .await
            .expect("key")
        }
    };
    let secret_key = create(Vec::new(), None).await;
    let self_signed_client = create(vec![self_signed.pem()], None).await;
    let issued_client = create(Vec::new(), Some("san_dns:bench.example.com")).await;

    let tls = format!("https://127.0.0.1:{port}/oauth/token");
    let mtls = format!("https://127.0.0.1:{mtls_port}/oauth/token");
    let grant = |client_id: Option<&str>| {
        let mut form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        if let Some(id) = client_id {
            form.push(("client_id".to_owned(), id.to_owned()));
        }
        form
    };
    let basic = Some((
        secret_key.key.client_id.clone(),
        secret_key
            .secret
            .as_ref()
            .expect("secret")
            .expose()
            .to_owned(),
    ));
    let self_signed_identity = format!("{}{}", self_signed_key.serialize_pem(), self_signed.pem());
    let issued_identity = format!("{}{}", issued_key.serialize_pem(), issued.pem());
    let scenarios = [
        Scenario {
            name: "TLS, keep-alive (client_secret_basic)",
            url: tls.clone(),
            client: client(&server_ca_pem, None, true),
            form: grant(None),
            basic: basic.clone(),
        },
        Scenario {
            name: "TLS, new connection per token",
            url: tls.clone(),
            client: client(&server_ca_pem, None, false),
            form: grant(None),
            basic: basic.clone(),
        },
        Scenario {
            name: "mTLS self-signed, keep-alive",
            url: mtls.clone(),
            client: client(&server_ca_pem, Some(&self_signed_identity), true),
            form: grant(Some(&self_signed_client.key.client_id)),
            basic: None,
        },
        Scenario {
            name: "mTLS self-signed, new connection per token",
            url: mtls.clone(),
            client: client(&server_ca_pem, Some(&self_signed_identity), false),
            form: grant(Some(&self_signed_client.key.client_id)),
            basic: None,
        },
        Scenario {
            name: "mTLS CA-issued (chain + SAN checked), keep-alive",
            url: mtls.clone(),
            client: client(&server_ca_pem, Some(&issued_identity), true),
            form: grant(Some(&issued_client.key.client_id)),
            basic: None,
        },
    ];
    // Warm up every path once (caches, connections).
    for scenario in &scenarios {
        drive(scenario, 1, 2).await;
    }
    println!(
        "mutual TLS token rate, {seconds} s per scenario, {concurrency} in flight \
         (`cargo bench --bench mtls`)\n"
    );
    println!("| scenario | tokens/s | failed | × TLS keep-alive |");
    println!("| --- | ---: | ---: | ---: |");
    let mut base = None;
    for scenario in &scenarios {
        let (rate, failed) = drive(scenario, seconds, concurrency).await;
        let base = *base.get_or_insert(rate);
        println!(
            "| {} | {rate:.0} | {failed} | {:.2} |",
            scenario.name,
            rate / base
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
