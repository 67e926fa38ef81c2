//! Building and running the HTTP application. Binding happens in `build`, so
//! a caller (a test) that asked for port 0 learns the port before serving.

use std::net::TcpListener;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::{KeepAlive, header};
use actix_web::middleware::{Condition, DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};

use crate::config::Settings;
use crate::console::{self, ConsoleState};
use crate::routes;
use crate::service::Service;
use crate::state::{AppState, MetricsListener};
use crate::storage::{PushQueue, StorageError, Store};
use crate::telemetry::Metrics;
use crate::tls::{CertificateReloader, TlsError};
use crate::tokens::{KeyRing, KeyRingError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database")]
    Storage(#[from] StorageError),
    #[error("cannot load the signing keys")]
    Keys(#[from] KeyRingError),
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    #[error("cannot listen on {bind}")]
    Bind {
        bind: String,
        source: std::io::Error,
    },
    #[error("cannot set up HTTPS")]
    Tls(#[from] TlsError),
    #[error("cannot tell whether this is the first run: {0}")]
    FirstRun(String),
    #[error("cannot set up webhook deliveries: {0}")]
    Webhooks(String),
    #[error(transparent)]
    Traces(#[from] crate::telemetry::traces::TracesError),
    #[error("cannot watch for SIGHUP (the TLS certificate reload signal)")]
    Signal(#[source] std::io::Error),
}

/// Sent on every response when Keyport serves HTTPS itself: browsers then
/// refuse plain HTTP to this host for a year. Not `includeSubDomains`:
/// Keyport cannot know whether every sibling host speaks HTTPS.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

pub struct Application {
    port: u16,
    settings: Arc<Settings>,
    service: Service,
    server: Server,
    /// `/metrics` on `metrics_bind`, apart from the public port.
    metrics_server: Option<(u16, Server)>,
    tls: Option<CertificateReloader>,
    /// The mutual-TLS listener's port, when `mtls_bind` is set.
    mtls_port: Option<u16>,
}

/// Without a configured issuer, the issuer is the address actually bound
/// (the real port, even for port 0), so the metadata's URLs work for a
/// client on the same host. Beyond loopback that is rarely the public URL:
/// say what to set.
fn settle_issuer(settings: &mut Settings, local: std::net::SocketAddr) {
    if settings.tokens.issuer_configured {
        return;
    }
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    settings.tokens.issuer = format!("{scheme}://{local}");
    if !local.ip().is_loopback() {
        log::warn!(
            "no issuer is configured, so tokens and the discovery document name {}; \
             set KEYPORT_ISSUER (or `issuer`) to the public URL clients use, e.g. https://auth.example.com",
            settings.tokens.issuer
        );
    }
}

/// While nobody uses the server, log the one-time link that opens the
/// console's setup page (valid until used or until the process ends).
async fn offer_first_run_setup(
    service: &Service,
    console: &ConsoleState,
) -> Result<(), StartupError> {
    if crate::service::setup::is_first_run(service)
        .await
        .map_err(|e| StartupError::FirstRun(e.to_string()))?
    {
        let token = console.arm_setup();
        log::warn!(
            "first run: nobody uses this server yet. Open {}/console/setup?token={} to create \
             the first company and its admin (the link works once, until this process ends)",
            service.settings.tokens.issuer,
            token.expose()
        );
    }
    Ok(())
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = Store::connect_and_migrate(&settings.database).await?;
        Self::build_with_store(settings, store).await
    }

    pub async fn build_with_store(
        mut settings: Settings,
        store: Store,
    ) -> Result<Self, StartupError> {
        // Read the certificate before binding: a wrong file stops start-up
        // before anything listens.
        let tls = settings
            .tls
            .as_ref()
            .map(CertificateReloader::load)
            .transpose()?;
        let listener = TcpListener::bind(&settings.bind).map_err(|source| StartupError::Bind {
            bind: settings.bind.clone(),
            source,
        })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            bind: settings.bind.clone(),
            source,
        })?;
        let port = local.port();
        settle_issuer(&mut settings, local);
        // The mutual-TLS listener (RFC 8705 §5), apart from the main port:
        // asking for a certificate there would make browsers prompt.
        let mtls_listener = match &settings.mtls.bind {
            Some(bind) => {
                let listener = TcpListener::bind(bind).map_err(|source| StartupError::Bind {
                    bind: bind.clone(),
                    source,
                })?;
                let local = listener.local_addr().map_err(|source| StartupError::Bind {
                    bind: bind.clone(),
                    source,
                })?;
                if !settings.mtls.url_configured {
                    settings.mtls.url = Some(format!("https://{local}"));
                }
                Some(listener)
            }
            None => None,
        };
        let mtls_port = mtls_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());

        let keys = Arc::new(KeyRing::load(store.clone(), &settings.tokens).await?);
        spawn_key_refresh(Arc::clone(&keys), settings.tokens.signing_key_refresh);

        let workers = settings.workers;
        let request_timeout = settings.request_timeout;
        let keep_alive = match settings.keep_alive {
            Some(idle) => KeepAlive::Timeout(idle),
            None => KeepAlive::Disabled,
        };
        // Background tasks stop once the server (holding `alive`) is gone.
        let alive = Arc::new(());
        let settings = Arc::new(settings);
        let service = Service::new(store.clone(), Arc::clone(&settings));
        // A wrong CA file stops start-up, like a wrong certificate.
        service.client_authorities.reload()?;
        service.last_used.spawn_flusher(
            store.clone(),
            service.settings.security.last_used_flush,
            Arc::downgrade(&alive),
        );
        service.usage_counts.spawn_flusher(
            store.clone(),
            service.settings.usage.flush,
            service.settings.usage.retention,
            Arc::downgrade(&alive),
        );
        // What needs PostgreSQL answers 503 at once while a probe finds it down.
        store.spawn_breaker_probe(Arc::downgrade(&alive));
        // Until the watcher proves it hears every change, lookups read the
        // database (and on SQLite in memory, always).
        service.credentials.watch(
            &store,
            service.settings.credential_cache.sqlite_poll,
            Arc::downgrade(&alive),
        );
        crate::service::dpop::spawn_sweeper(store.clone(), Arc::downgrade(&alive));
        crate::service::sigv4::spawn_sweeper(store.clone(), Arc::downgrade(&alive));
        service.revoked.refresh(&store).await?;
        service.revoked.spawn_refresher(
            store.clone(),
            service.settings.security.revocation_refresh,
            Arc::downgrade(&alive),
        );
        if let Some(reloader) = &tls {
            spawn_reload_on_hangup(
                reloader.clone(),
                Arc::clone(&service.client_authorities),
                Arc::downgrade(&alive),
            )?;
        }
        let metrics = Metrics::new().map_err(|e| StartupError::Metrics(e.to_string()))?;
        let counters = service.rate_limits.counters();
        metrics
            .register_rate_limits(
                &counters.refused,
                &counters.fallbacks,
                &counters.redis_available,
            )
            .map_err(|e| StartupError::Metrics(e.to_string()))?;
        metrics
            .register_collector(service.credentials.collector())
            .map_err(|e| StartupError::Metrics(e.to_string()))?;
        metrics
            .register_collector(Box::new(service.client_authorities.checks_counter()))
            .map_err(|e| StartupError::Metrics(e.to_string()))?;
        let metrics = Arc::new(metrics);
        spawn_gauge_refresh(
            store.clone(),
            Arc::clone(&metrics),
            settings.observability.metrics_refresh,
            Arc::downgrade(&alive),
        );
        if settings.webhooks.deliver {
            crate::service::deliveries::Dispatcher::new(service.clone(), Arc::clone(&metrics))
                .map_err(StartupError::Webhooks)?
                .spawn(Arc::downgrade(&alive));
        }
        // Connect to Redis (if configured) before the first limited request.
        service.rate_limits.warm_up();
        let pushes = PushQueue::start(store);
        let own_service = service.clone();
        let state = web::Data::new(AppState {
            service,
            keys: Arc::clone(&keys),
            metrics,
            pushes,
        });
        let metrics_server = match &settings.observability.metrics_bind {
            Some(bind) => Some(serve_metrics(bind, state.clone())?),
            None => None,
        };
        let verifier = web::Data::new(keys.verifier());
        let console = web::Data::new(ConsoleState::default());
        offer_first_run_setup(&state.service, &console).await?;
        let serves_https = tls.is_some();
        let server = HttpServer::new(move || {
            // The factory owns `alive`: when the server is dropped, the
            // background tasks see it gone and stop.
            let _alive = &alive;
            App::new()
                // A SigV4-signed request's body is read and hashed before
                // `Caller` checks its signature (routes/signed_body.rs).
                .wrap(from_fn(routes::buffer_signed_body))
                // `DPoP-Nonce` on answers to proofs with last period's nonce.
                .wrap(from_fn(routes::dpop_nonce_header))
                // One log line and one histogram sample per request.
                .wrap(from_fn(routes::observe::observe))
                // Outermost, so every answer (404s and errors too) has it.
                .wrap(Condition::new(
                    serves_https,
                    DefaultHeaders::new()
                        .add((header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY)),
                ))
                .app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(console.clone())
                .configure(routes::configure)
                .configure(console::configure)
                .default_service(web::to(routes::not_found))
        })
        // A client that stalls while sending its request head is cut off (408)
        // instead of holding a connection open forever.
        .client_request_timeout(request_timeout)
        .keep_alive(keep_alive);
        let server = match &tls {
            // The rustls configuration asks `reloader` for the certificate at
            // each handshake, so a reload never touches the listener.
            Some(reloader) => server.listen_rustls_0_23(listener, reloader.server_config()?),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Bind {
            bind: String::from("listener"),
            source,
        })?;
        let server = match (mtls_listener, &tls) {
            // `on_connect` applies to the listeners bound after it: this
            // one only. It keeps the client's certificate with the connection.
            (Some(mtls), Some(reloader)) => server
                .on_connect(crate::mtls::keep_peer_certificate)
                .listen_rustls_0_23(mtls, crate::mtls::server_config(reloader)?)
                .map_err(|source| StartupError::Bind {
                    bind: String::from("mutual-TLS listener"),
                    source,
                })?,
            _ => server,
        };
        let server = if workers > 0 {
            server.workers(workers)
        } else {
            server
        };
        Ok(Application {
            port,
            settings,
            service: own_service,
            server: server.run(),
            metrics_server,
            tls,
            mtls_port,
        })
    }

    /// The mutual-TLS listener's port, when `mtls_bind` is set.
    pub fn mtls_port(&self) -> Option<u16> {
        self.mtls_port
    }

    /// The port `/metrics` is served on when `metrics_bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(port, _)| *port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The settings in force, with the issuer settled on the bound address
    /// when none was configured.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The service layer this server answers with: a change made through it
    /// is this instance's own (its credential cache forgets at once).
    pub fn service(&self) -> Service {
        self.service.clone()
    }

    /// With HTTPS, a handle that reloads the certificate and key from their
    /// files, as SIGHUP does; it stays usable while the server runs.
    pub fn certificate_reloader(&self) -> Option<CertificateReloader> {
        self.tls.clone()
    }

    /// Re-reads the TLS certificate and key now, as SIGHUP does (see
    /// [`CertificateReloader::reload_certificate`]).
    pub fn reload_certificate(&self) -> Result<(), TlsError> {
        self.tls
            .as_ref()
            .ok_or(TlsError::NotConfigured)?
            .reload_certificate()?;
        self.service.client_authorities.reload()
    }

    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        let service = self.service.clone();
        let served = self.serve().await;
        // What was counted since the last flush, written before exiting.
        service.usage_counts.flush(&service.store).await;
        served
    }

    async fn serve(self) -> Result<(), std::io::Error> {
        let Some((_, metrics_server)) = self.metrics_server else {
            return self.server.await;
        };
        let metrics_handle = metrics_server.handle();
        let metrics_task = tokio::spawn(metrics_server);
        let served = self.server.await;
        // The public server stopped (a signal, or an error): so does this.
        metrics_handle.stop(true).await;
        let _ = metrics_task.await;
        served
    }
}

/// `GET /metrics` alone, on its own address; one worker is plenty.
fn serve_metrics(bind: &str, state: web::Data<AppState>) -> Result<(u16, Server), StartupError> {
    let listener = TcpListener::bind(bind).map_err(|source| StartupError::Bind {
        bind: bind.to_owned(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind {
            bind: bind.to_owned(),
            source,
        })?
        .port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(MetricsListener))
            .route("/metrics", web::get().to(routes::observe::metrics))
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|source| StartupError::Bind {
        bind: bind.to_owned(),
        source,
    })?
    .run();
    Ok((port, server))
}

/// Reads the gauges that need the database (active keys) every `every`,
/// so that no scrape waits on it or adds to its load.
fn spawn_gauge_refresh(store: Store, metrics: Arc<Metrics>, every: Duration, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            match store.count_all_active_keys(crate::domain::now()).await {
                Ok(active) => metrics.set_active_keys(active),
                Err(err) => log::warn!(
                    "metrics: active keys unavailable: {}",
                    crate::telemetry::error_chain(&err)
                ),
            }
        }
    });
}

/// Re-reads signing keys periodically so rotations made by another instance
/// (or the CLI) are published and accepted here.
fn spawn_key_refresh(keys: Arc<KeyRing>, every: std::time::Duration) {
    let weak = Arc::downgrade(&keys);
    drop(keys);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // Stop once the application holding the ring is gone.
            let Some(keys) = weak.upgrade() else { break };
            if let Err(err) = keys.refresh().await {
                log::warn!(
                    "signing key refresh failed: {}",
                    crate::telemetry::error_chain(&err)
                );
            }
        }
    });
}

/// Reloads the TLS certificate on SIGHUP (`kill -HUP`, or `systemctl reload`
/// with `ExecReload=kill -HUP $MAINPID`). A failed reload is logged and the
/// old certificate stays. Like the other background tasks, it stops once
/// `alive` is gone: checked at every signal and every second, so an idle
/// task does not outlive the application for long.
fn spawn_reload_on_hangup(
    reloader: CertificateReloader,
    client_authorities: Arc<crate::mtls::ClientAuthorities>,
    alive: Weak<()>,
) -> Result<(), StartupError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup()).map_err(StartupError::Signal)?;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            let hung_up = tokio::select! {
                received = hangups.recv() => match received {
                    Some(()) => true,
                    None => break,
                },
                _ = ticker.tick() => false,
            };
            if alive.upgrade().is_none() {
                break;
            }
            if hung_up {
                log::info!("SIGHUP received: reloading the TLS certificate");
                // It logs the outcome, success or failure, itself.
                let _ = reloader.reload_certificate();
                if let Err(err) = client_authorities.reload() {
                    log::error!(
                        "client CA reload failed; the CAs read before stay: {}",
                        crate::telemetry::error_chain(&err)
                    );
                }
            }
        }
    });
    Ok(())
}
