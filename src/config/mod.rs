//! Typed settings, layered: the embedded `config/default.toml`, then an optional
//! file, then `KEYPORT_*` environment variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{IpRange, SigningAlgorithm, TargetPolicy};
use crate::sealing::{MasterKeySettings, MasterKeyText};
use crate::telemetry::LogFormat;

mod env_vars;

pub use env_vars::{known_env_vars, unknown_env_vars};

const DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
struct RawSettings {
    bind: String,
    database_url: String,
    database_max_connections: u32,
    database_timeout_seconds: u64,
    issuer: String,
    audience: String,
    token_ttl_seconds: u64,
    max_token_ttl_seconds: u64,
    signing_algorithm: String,
    signing_key_refresh_seconds: u64,
    clock_leeway_seconds: u64,
    client_assertion_max_lifetime_seconds: u64,
    max_active_keys_per_user: u32,
    max_roll_grace_seconds: u64,
    max_body_bytes: usize,
    max_records_per_push: usize,
    workers: usize,
    request_timeout_seconds: u64,
    keep_alive_seconds: u64,
    session_ttl_seconds: u64,
    sign_in_max_failures: u32,
    sign_in_failure_window_seconds: u64,
    sign_in_lock_seconds: u64,
    client_auth_max_failures: u32,
    client_auth_failure_window_seconds: u64,
    allow_api_key_query: bool,
    last_used_flush_seconds: u64,
    revocation_refresh_seconds: u64,
    tls_cert_file: String,
    tls_key_file: String,
    mtls_bind: String,
    mtls_url: String,
    tls_client_ca_file: String,
    trusted_proxies: String,
    master_key_file: String,
    master_key_previous_file: String,
    webhook_deliver: bool,
    webhook_allow_http: bool,
    webhook_allow_private_targets: bool,
    webhook_connect_timeout_seconds: u64,
    webhook_timeout_seconds: u64,
    webhook_retry_for_seconds: u64,
    webhook_retry_initial_seconds: u64,
    webhook_disable_after_seconds: u64,
    webhook_signature_overlap_seconds: u64,
    webhook_key_expiring_days: u64,
    webhook_concurrency: usize,
    webhook_poll_interval_ms: u64,
    webhook_max_endpoints_per_owner: u32,
    webhook_max_endpoints_per_tenant: u32,
    redis_url: String,
    redis_key_prefix: String,
    redis_timeout_ms: u64,
    sigv4_region: String,
    sigv4_service: String,
    sigv4_max_skew_seconds: u64,
    credential_cache_capacity: usize,
    credential_cache_sqlite_poll_ms: u64,
    credential_cache_serve_stale_seconds: u64,
    exchange_audiences: String,
    exchange_allow_http: bool,
    exchange_allow_private_targets: bool,
    exchange_jwks_timeout_seconds: u64,
    exchange_jwks_min_refresh_seconds: u64,
    exchange_jwks_max_age_seconds: u64,
    exchange_jwks_connect_timeout_seconds: u64,
    exchange_max_trusted_issuers: u32,
    exchange_max_subject_token_lifetime_seconds: u64,
    dpop_max_age_seconds: u64,
    dpop_leeway_seconds: u64,
    dpop_require_nonce: bool,
    dpop_replay_store: String,
    dpop_nonce_seconds: u64,
    log_format: String,
    metrics_bind: String,
    metrics_refresh_seconds: u64,
    otlp_endpoint: String,
    trace_sample_ratio: f64,
    usage_counting: bool,
    usage_flush_seconds: u64,
    usage_retention_days: u64,
}

/// Everything Keyport reads from its configuration, checked once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    pub database: DatabaseSettings,
    pub tokens: TokenSettings,
    pub max_active_keys_per_user: u32,
    /// The longest grace period a rolled key keeps working for.
    pub max_roll_grace: Duration,
    pub max_body_bytes: usize,
    pub max_records_per_push: usize,
    pub workers: usize,
    /// How long a client may take to send a request's head (408 after it).
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open; `None`: keep-alive off.
    pub keep_alive: Option<Duration>,
    pub security: SecuritySettings,
    /// Serve HTTPS with this certificate and key (PEM); `None`: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Mutual TLS (RFC 8705): a second HTTPS listener that asks for client
    /// certificates, and the CAs `tls_client_auth` keys chain to.
    pub mtls: MtlsSettings,
    pub webhooks: WebhookSettings,
    pub rate_limits: RateLimitSettings,
    pub sigv4: Sigv4Settings,
    pub credential_cache: CredentialCacheSettings,
    pub exchange: ExchangeSettings,
    pub dpop: DpopSettings,
    pub observability: ObservabilitySettings,
    pub usage: UsageSettings,
}

/// Counting each key's use (`service::key_usage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSettings {
    pub counting: bool,
    /// How often each instance writes what it counted.
    pub flush: Duration,
    /// How long usage is kept.
    pub retention: Duration,
}

/// What the server tells its operators, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservabilitySettings {
    pub log_format: LogFormat,
    /// Serve `/metrics` on this address instead of the public port.
    pub metrics_bind: Option<String>,
    /// How often the gauges that need the database are read (a scrape
    /// reads none).
    pub metrics_refresh: Duration,
    pub traces: TraceSettings,
}

/// OpenTelemetry traces: off unless a collector is named.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The collector's OTLP/HTTP base URL (`http(s)://host:port[/path]`).
    pub otlp_endpoint: Option<String>,
    /// The share of requests traced, 0 to 1.
    pub sample_ratio: f64,
}

/// RFC 8693 token exchange: the audiences a token may be exchanged for, and
/// how trusted issuers' keys are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSettings {
    /// Audiences besides Keyport's own (`audience`) that an exchanged token
    /// may name (`resource` / `audience` in the request, RFC 8707).
    pub audiences: Vec<String>,
    /// Where trusted issuers and their JWKS URLs may be: https and public
    /// addresses unless allowed otherwise (tests, private networks).
    pub targets: TargetPolicy,
    pub jwks_timeout: Duration,
    /// An unknown `kid` refetches an issuer's keys at most this often.
    pub jwks_min_refresh: Duration,
    /// Keys fetched longer ago than this are fetched again; until the new
    /// set arrives, the old one keeps answering.
    pub jwks_max_age: Duration,
    /// How long connecting to an issuer's JWKS host may take.
    pub jwks_connect_timeout: Duration,
    /// How many issuers one company may trust.
    pub max_trusted_issuers: u32,
    /// A trusted issuer's token that lives longer than this (from `iat`, or
    /// from now without one) is refused.
    pub max_subject_token_lifetime: Duration,
}

/// DPoP proofs (RFC 9449); see `config/default.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// How old a proof's `iat` may be (and how long its `jti` is remembered).
    pub max_age: Duration,
    /// How far in the future a proof's `iat` may be (clock skew).
    pub leeway: Duration,
    /// Whether proofs must carry a server nonce (§8).
    pub require_nonce: bool,
    /// How long one nonce is handed out; it is accepted for twice that.
    pub nonce_lifetime: Duration,
    /// Where used proofs are remembered.
    pub replay_store: DpopReplayStore,
}

/// Where DPoP proofs already used are remembered (`dpop_replay_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopReplayStore {
    /// Memory on SQLite (one instance); Redis on PostgreSQL when
    /// `redis_url` is set, else the database.
    Auto,
    /// This process's memory: one instance only.
    Memory,
    /// Redis (`redis_url`), shared by every instance.
    Redis,
    /// The database (table `dpop_proofs`), shared by every instance.
    Database,
}

/// What AWS Signature Version 4 requests must be scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sigv4Settings {
    /// The region in the credential scope (`us-east-1` by default).
    pub region: String,
    /// The service in the credential scope (`keyport` by default).
    pub service: String,
    /// How far `X-Amz-Date` may be from the server's clock, either way;
    /// also how long the signature of a write is remembered (it is
    /// accepted once).
    pub max_skew: Duration,
}

/// The in-memory credential cache (`service::credential_cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialCacheSettings {
    /// Most keys held; 0 turns the cache off.
    pub capacity: usize,
    /// How often a SQLite file's change counter is polled.
    pub sqlite_poll: Duration,
    /// PostgreSQL: how long after its last proof of being up to date the
    /// cache still answers for the keys it holds while the database is
    /// known to be down (0: never).
    pub serve_stale: Duration,
}

/// Outbound webhook deliveries; see `config/default.toml`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Whether this instance runs a delivery worker.
    pub deliver: bool,
    pub targets: TargetPolicy,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retry_for: Duration,
    pub retry_initial: Duration,
    pub disable_after: Duration,
    pub signature_overlap: Duration,
    pub key_expiring_within: Duration,
    pub concurrency: usize,
    pub poll_interval: Duration,
    /// Most endpoints one user may register.
    pub max_endpoints_per_owner: u32,
    /// Most endpoints one company may register, all its users together.
    pub max_endpoints_per_tenant: u32,
}

/// Where per-key rate limits are counted.
#[derive(Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Redis, shared by every instance; `None`: each instance counts alone.
    pub redis_url: Option<String>,
    /// Put before every Redis key Keyport writes.
    pub redis_key_prefix: String,
    /// How long a check waits for Redis before this instance decides alone.
    pub redis_timeout: Duration,
}

/// The URL may carry a password: it is not printed.
impl std::fmt::Debug for RateLimitSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitSettings")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("redis_timeout", &self.redis_timeout)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Mutual TLS (RFC 8705).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtlsSettings {
    /// Where the mutual-TLS listener binds (same certificate as HTTPS);
    /// `None`: no such listener.
    pub bind: Option<String>,
    /// The mutual-TLS listener's public base URL, for the discovery
    /// document's `mtls_endpoint_aliases`; without one configured, the
    /// bound address (settled at start-up).
    pub url: Option<String>,
    /// Whether `url` was configured (not derived from the bound address).
    pub url_configured: bool,
    /// PEM bundle of the CAs a `tls_client_auth` key's certificate must
    /// chain to; `None`: such keys cannot authenticate.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub session_ttl: Duration,
    pub sign_in_max_failures: u32,
    pub sign_in_failure_window: Duration,
    pub sign_in_lock: Duration,
    pub client_auth_max_failures: u32,
    pub client_auth_failure_window: Duration,
    pub allow_api_key_query: bool,
    pub last_used_flush: Duration,
    pub revocation_refresh: Duration,
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers are believed.
    pub trusted_proxies: Vec<IpRange>,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// The master keys that seal the server-side secrets stored in it.
    pub master_keys: MasterKeySettings,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `iss` claim and the base of every URL in the metadata. When not
    /// configured it follows the address the server is bound to
    /// (`issuer_configured` is false until then).
    pub issuer: String,
    pub issuer_configured: bool,
    pub audience: String,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub signing_algorithm: SigningAlgorithm,
    pub signing_key_refresh: Duration,
    pub leeway: Duration,
    /// How far past now (and past its `iat`) a `private_key_jwt` client
    /// assertion's `exp` may be.
    pub client_assertion_max_lifetime: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration")]
    Load(#[from] config::ConfigError),
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Settings {
    /// Loads the defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment, so tests need not
    /// touch the process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env_map: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("KEYPORT_") && k != "KEYPORT_CONFIG")
            .collect();
        // The master keys themselves come from the environment only, never
        // from a file that may be copied around with the rest of the settings.
        let master_key = env_map.remove("KEYPORT_MASTER_KEY").map(MasterKeyText::new);
        let master_key_previous = env_map
            .remove("KEYPORT_MASTER_KEY_PREVIOUS")
            .map(MasterKeyText::new);
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let raw: RawSettings = builder
            .add_source(
                config::Environment::with_prefix("KEYPORT")
                    .try_parsing(true)
                    .source(Some(env_map)),
            )
            .build()?
            .try_deserialize()?;
        let mut settings = Self::parse(raw)?;
        settings.database.master_keys.current = master_key;
        settings.database.master_keys.previous = master_key_previous;
        Ok(settings)
    }

    fn parse(raw: RawSettings) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.to_owned(),
        };
        if !raw.bind.contains(':') {
            return Err(invalid("bind", "expected host:port, e.g. 127.0.0.1:8080"));
        }
        if !(raw.database_url.starts_with("sqlite:") || raw.database_url.starts_with("postgres")) {
            return Err(invalid(
                "database_url",
                "expected sqlite://PATH or postgres://USER@HOST/DB",
            ));
        }
        if raw.database_max_connections == 0 {
            return Err(invalid("database_max_connections", "must be at least 1"));
        }
        if raw.token_ttl_seconds == 0 || raw.max_token_ttl_seconds == 0 {
            return Err(invalid(
                "token_ttl_seconds",
                "token lifetimes must be positive",
            ));
        }
        if raw.token_ttl_seconds > raw.max_token_ttl_seconds {
            return Err(invalid(
                "token_ttl_seconds",
                "the default lifetime exceeds max_token_ttl_seconds",
            ));
        }
        if raw.audience.trim().is_empty() {
            return Err(invalid("audience", "must not be empty"));
        }
        let issuer = raw.issuer.trim().trim_end_matches('/').to_owned();
        let is_url = issuer.starts_with("http://") || issuer.starts_with("https://");
        if !issuer.is_empty() && !is_url {
            return Err(invalid(
                "issuer",
                "expected the public URL clients use, e.g. https://auth.example.com",
            ));
        }
        let tls = match (raw.tls_cert_file.trim(), raw.tls_key_file.trim()) {
            ("", "") => None,
            (cert, key) if !cert.is_empty() && !key.is_empty() => Some(TlsSettings {
                cert_file: PathBuf::from(cert),
                key_file: PathBuf::from(key),
            }),
            _ => {
                return Err(invalid(
                    "tls_cert_file",
                    "set both tls_cert_file and tls_key_file, or neither",
                ));
            }
        };
        let mtls = MtlsSettings {
            bind: Some(raw.mtls_bind.trim().to_owned()).filter(|b| !b.is_empty()),
            url: Some(raw.mtls_url.trim().trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            url_configured: !raw.mtls_url.trim().is_empty(),
            client_ca_file: path_setting(&raw.tls_client_ca_file),
        };
        if mtls.bind.is_some() && tls.is_none() {
            return Err(invalid(
                "mtls_bind",
                "the mutual-TLS listener serves the HTTPS certificate: set tls_cert_file and \
                 tls_key_file too",
            ));
        }
        if mtls
            .url
            .as_ref()
            .is_some_and(|u| !u.starts_with("https://"))
        {
            return Err(invalid(
                "mtls_url",
                "expected the https:// URL clients reach the mutual-TLS listener at",
            ));
        }
        if mtls.bind.as_ref().is_some_and(|b| !b.contains(':')) {
            return Err(invalid(
                "mtls_bind",
                "expected host:port, e.g. 0.0.0.0:8443",
            ));
        }
        let trusted_proxies = raw
            .trusted_proxies
            .split([',', ' '])
            .filter(|part| !part.is_empty())
            .map(IpRange::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| invalid("trusted_proxies", &reason))?;
        let signing_algorithm: SigningAlgorithm = raw
            .signing_algorithm
            .parse()
            .map_err(|reason: String| invalid("signing_algorithm", &reason))?;
        if raw.max_active_keys_per_user == 0 {
            return Err(invalid("max_active_keys_per_user", "must be at least 1"));
        }
        if raw.max_roll_grace_seconds == 0 {
            return Err(invalid(
                "max_roll_grace_seconds",
                "must be at least 1: a rolled key needs some time to be replaced",
            ));
        }
        if raw.max_records_per_push == 0 || raw.max_body_bytes < 1024 {
            return Err(invalid(
                "max_body_bytes",
                "body limit must be at least 1024 bytes and a push must allow one record",
            ));
        }
        let redis_url = raw.redis_url.trim();
        let redis_url = if redis_url.is_empty() {
            None
        } else {
            // Parsed only: nothing connects until the server serves.
            redis::Client::open(redis_url).map_err(|e| {
                invalid(
                    "redis_url",
                    &format!(
                        "expected redis://[:PASSWORD@]HOST[:PORT][/DB] ({:?})",
                        e.kind()
                    ),
                )
            })?;
            Some(redis_url.to_owned())
        };
        if !(1..=10_000).contains(&raw.redis_timeout_ms) {
            return Err(invalid(
                "redis_timeout_ms",
                "must be between 1 and 10000 milliseconds",
            ));
        }
        if !(10..=1000).contains(&raw.credential_cache_sqlite_poll_ms) {
            return Err(invalid(
                "credential_cache_sqlite_poll_ms",
                "must be between 10 and 1000 milliseconds: changes made by another process \
                 must be seen within a second",
            ));
        }
        if raw.credential_cache_serve_stale_seconds > 3600 {
            return Err(invalid(
                "credential_cache_serve_stale_seconds",
                "must be between 0 and 3600 seconds",
            ));
        }
        let dpop_replay_store = match raw.dpop_replay_store.trim() {
            "auto" => DpopReplayStore::Auto,
            "memory" => DpopReplayStore::Memory,
            "redis" if redis_url.is_some() => DpopReplayStore::Redis,
            "redis" => {
                return Err(invalid(
                    "dpop_replay_store",
                    "is `redis` but redis_url is not set",
                ));
            }
            "database" => DpopReplayStore::Database,
            _ => {
                return Err(invalid(
                    "dpop_replay_store",
                    "must be `auto`, `memory`, `redis` or `database`",
                ));
            }
        };
        if !(10..=3600).contains(&raw.dpop_max_age_seconds) {
            return Err(invalid(
                "dpop_max_age_seconds",
                "must be between 10 and 3600 seconds",
            ));
        }
        if raw.dpop_leeway_seconds > 300 {
            return Err(invalid(
                "dpop_leeway_seconds",
                "must be at most 300 seconds",
            ));
        }
        if !(1..=3600).contains(&raw.dpop_nonce_seconds) {
            return Err(invalid(
                "dpop_nonce_seconds",
                "must be between 1 and 3600 seconds",
            ));
        }
        let log_format = LogFormat::parse(&raw.log_format)
            .ok_or_else(|| invalid("log_format", "expected text or json"))?;
        let metrics_bind = Some(raw.metrics_bind.trim().to_owned()).filter(|b| !b.is_empty());
        if metrics_bind.as_ref().is_some_and(|b| !b.contains(':')) {
            return Err(invalid(
                "metrics_bind",
                "expected host:port, e.g. 127.0.0.1:9090, or empty to serve /metrics on `bind`",
            ));
        }
        if !(1..=3600).contains(&raw.metrics_refresh_seconds) {
            return Err(invalid(
                "metrics_refresh_seconds",
                "must be between 1 and 3600 seconds",
            ));
        }
        let traces = TraceSettings {
            otlp_endpoint: otlp_endpoint(&raw.otlp_endpoint)?,
            sample_ratio: raw.trace_sample_ratio,
        };
        if !(0.0..=1.0).contains(&traces.sample_ratio) {
            return Err(invalid(
                "trace_sample_ratio",
                "must be between 0 and 1, e.g. 0.1 to trace one request in ten",
            ));
        }
        if raw.request_timeout_seconds == 0 {
            return Err(invalid(
                "request_timeout_seconds",
                "must be at least 1: it cuts off clients that send a request too slowly",
            ));
        }
        if raw.webhook_timeout_seconds == 0 || raw.webhook_connect_timeout_seconds == 0 {
            return Err(invalid(
                "webhook_timeout_seconds",
                "webhook timeouts must be at least 1 second",
            ));
        }
        if raw.webhook_concurrency == 0 {
            return Err(invalid("webhook_concurrency", "must be at least 1"));
        }
        if raw.webhook_max_endpoints_per_owner == 0 {
            return Err(invalid(
                "webhook_max_endpoints_per_owner",
                "must be at least 1",
            ));
        }
        if raw.webhook_max_endpoints_per_tenant < raw.webhook_max_endpoints_per_owner {
            return Err(invalid(
                "webhook_max_endpoints_per_tenant",
                "must be at least webhook_max_endpoints_per_owner",
            ));
        }
        let scope_part = |key: &'static str, value: &str| -> Result<String, ConfigError> {
            let value = value.trim();
            let valid = !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if valid {
                Ok(value.to_owned())
            } else {
                Err(invalid(
                    key,
                    "expected 1 to 64 of a-z, 0-9 and '-', as in a SigV4 credential scope",
                ))
            }
        };
        if !(1..=86_400).contains(&raw.sigv4_max_skew_seconds) {
            return Err(invalid(
                "sigv4_max_skew_seconds",
                "must be between 1 and 86400 seconds",
            ));
        }
        let sigv4 = Sigv4Settings {
            region: scope_part("sigv4_region", &raw.sigv4_region)?,
            service: scope_part("sigv4_service", &raw.sigv4_service)?,
            max_skew: Duration::from_secs(raw.sigv4_max_skew_seconds),
        };
        let webhooks = WebhookSettings {
            deliver: raw.webhook_deliver,
            targets: TargetPolicy {
                allow_http: raw.webhook_allow_http,
                allow_private: raw.webhook_allow_private_targets,
            },
            connect_timeout: Duration::from_secs(raw.webhook_connect_timeout_seconds),
            timeout: Duration::from_secs(raw.webhook_timeout_seconds),
            retry_for: Duration::from_secs(raw.webhook_retry_for_seconds),
            retry_initial: Duration::from_secs(raw.webhook_retry_initial_seconds.max(1)),
            disable_after: Duration::from_secs(raw.webhook_disable_after_seconds.max(1)),
            signature_overlap: Duration::from_secs(raw.webhook_signature_overlap_seconds),
            key_expiring_within: Duration::from_secs(raw.webhook_key_expiring_days * 86_400),
            concurrency: raw.webhook_concurrency,
            poll_interval: Duration::from_millis(raw.webhook_poll_interval_ms.clamp(50, 60_000)),
            max_endpoints_per_owner: raw.webhook_max_endpoints_per_owner,
            max_endpoints_per_tenant: raw.webhook_max_endpoints_per_tenant,
        };
        let exchange = ExchangeSettings {
            audiences: raw
                .exchange_audiences
                .split([',', ' '])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            targets: TargetPolicy {
                allow_http: raw.exchange_allow_http,
                allow_private: raw.exchange_allow_private_targets,
            },
            jwks_timeout: Duration::from_secs(raw.exchange_jwks_timeout_seconds.clamp(1, 60)),
            jwks_min_refresh: Duration::from_secs(raw.exchange_jwks_min_refresh_seconds),
            jwks_max_age: Duration::from_secs(raw.exchange_jwks_max_age_seconds.max(1)),
            jwks_connect_timeout: Duration::from_secs(
                raw.exchange_jwks_connect_timeout_seconds
                    .clamp(1, raw.exchange_jwks_timeout_seconds.clamp(1, 60)),
            ),
            max_trusted_issuers: raw.exchange_max_trusted_issuers.max(1),
            max_subject_token_lifetime: Duration::from_secs(
                raw.exchange_max_subject_token_lifetime_seconds.max(60),
            ),
        };
        Ok(Settings {
            sigv4,
            webhooks,
            exchange,
            bind: raw.bind.clone(),
            database: DatabaseSettings {
                url: raw.database_url,
                max_connections: raw.database_max_connections,
                acquire_timeout: Duration::from_secs(raw.database_timeout_seconds.max(1)),
                master_keys: MasterKeySettings {
                    current_file: path_setting(&raw.master_key_file),
                    previous_file: path_setting(&raw.master_key_previous_file),
                    ..Default::default()
                },
            },
            tokens: TokenSettings {
                issuer_configured: !issuer.is_empty(),
                issuer: if issuer.is_empty() {
                    // Until the server binds: what the bind address says.
                    format!(
                        "{}://{}",
                        if tls.is_some() { "https" } else { "http" },
                        raw.bind
                    )
                } else {
                    issuer
                },
                audience: raw.audience,
                default_ttl: Duration::from_secs(raw.token_ttl_seconds),
                max_ttl: Duration::from_secs(raw.max_token_ttl_seconds),
                signing_algorithm,
                signing_key_refresh: Duration::from_secs(raw.signing_key_refresh_seconds.max(1)),
                leeway: Duration::from_secs(raw.clock_leeway_seconds),
                client_assertion_max_lifetime: Duration::from_secs(
                    raw.client_assertion_max_lifetime_seconds.max(1),
                ),
            },
            max_active_keys_per_user: raw.max_active_keys_per_user,
            max_roll_grace: Duration::from_secs(raw.max_roll_grace_seconds),
            max_body_bytes: raw.max_body_bytes,
            max_records_per_push: raw.max_records_per_push,
            workers: raw.workers,
            request_timeout: Duration::from_secs(raw.request_timeout_seconds),
            keep_alive: (raw.keep_alive_seconds > 0)
                .then(|| Duration::from_secs(raw.keep_alive_seconds)),
            security: SecuritySettings {
                session_ttl: Duration::from_secs(raw.session_ttl_seconds.max(60)),
                sign_in_max_failures: raw.sign_in_max_failures.max(1),
                sign_in_failure_window: Duration::from_secs(
                    raw.sign_in_failure_window_seconds.max(1),
                ),
                sign_in_lock: Duration::from_secs(raw.sign_in_lock_seconds),
                client_auth_max_failures: raw.client_auth_max_failures.max(1),
                client_auth_failure_window: Duration::from_secs(
                    raw.client_auth_failure_window_seconds.max(1),
                ),
                allow_api_key_query: raw.allow_api_key_query,
                last_used_flush: Duration::from_secs(raw.last_used_flush_seconds.clamp(1, 60)),
                revocation_refresh: Duration::from_secs(raw.revocation_refresh_seconds.max(1)),
                trusted_proxies,
            },
            tls,
            mtls,
            rate_limits: RateLimitSettings {
                redis_url,
                redis_key_prefix: raw.redis_key_prefix,
                redis_timeout: Duration::from_millis(raw.redis_timeout_ms),
            },
            credential_cache: CredentialCacheSettings {
                capacity: raw.credential_cache_capacity,
                sqlite_poll: Duration::from_millis(raw.credential_cache_sqlite_poll_ms),
                serve_stale: Duration::from_secs(raw.credential_cache_serve_stale_seconds),
            },
            dpop: DpopSettings {
                max_age: Duration::from_secs(raw.dpop_max_age_seconds),
                leeway: Duration::from_secs(raw.dpop_leeway_seconds),
                require_nonce: raw.dpop_require_nonce,
                nonce_lifetime: Duration::from_secs(raw.dpop_nonce_seconds),
                replay_store: dpop_replay_store,
            },
            observability: ObservabilitySettings {
                log_format,
                metrics_bind,
                metrics_refresh: Duration::from_secs(raw.metrics_refresh_seconds),
                traces,
            },
            usage: UsageSettings {
                counting: raw.usage_counting,
                flush: Duration::from_secs(raw.usage_flush_seconds.clamp(1, 300)),
                retention: Duration::from_secs(raw.usage_retention_days.clamp(1, 3650) * 86_400),
            },
        })
    }
}

/// The collector's URL: empty means traces are off; otherwise http or https
/// with a host, and no credentials in it (they would reach the logs; the
/// collector's token goes in OTEL_EXPORTER_OTLP_HEADERS).
fn otlp_endpoint(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let refuse = |why: &str| ConfigError::Invalid {
        key: "otlp_endpoint",
        reason: why.to_owned(),
    };
    let url = url::Url::parse(value)
        .map_err(|_| refuse("expected the collector's URL, e.g. http://127.0.0.1:4318"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refuse(
            "expected an http or https URL with a host, e.g. http://127.0.0.1:4318",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(
            "must not hold credentials: send the collector's token with OTEL_EXPORTER_OTLP_HEADERS",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("must not have a query or a fragment"));
    }
    Ok(Some(value.to_owned()))
}

/// An empty path setting means "not set".
fn path_setting(value: &str) -> Option<PathBuf> {
    let value = value.trim();
    (!value.is_empty()).then(|| PathBuf::from(value))
}

#[cfg(test)]
mod tests;
