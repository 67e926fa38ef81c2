//! The rules. No HTTP and no SQL: every operation takes the [`Principal`]
//! making the call and decides, here and once, whether it is allowed. The
//! HTTP routes and the CLI call the same functions (the CLI as the operator).
//!
//! | operation | needs |
//! | --- | --- |
//! | list, create, show, change, disable, enable, revoke, delete, mark keys | `keys:manage`; members only their own keys |
//! | a key's usage; the usage of every key one manages | `keys:manage`; members only their own keys |
//! | roll a key | `keys:manage`, and the key's owner (the new secret acts as them) |
//! | list, add, remove a key's public keys (`private_key_jwt`) | `keys:manage`; members only their own keys |
//! | list, create, change, disable, enable, unlock users | `users:manage` (admins) |
//! | read a user | `users:manage`, or the user themself |
//! | tenant policy | `tenant:manage` (admins) |
//! | audit trail | `audit:read` (admins) |
//! | token exchange: trusted issuers and their rules | `tenant:manage` (admins) |
//! | exchange a Keyport token (RFC 8693) | the exchanging key holds `tokens:exchange` |
//! | webhook endpoints: register, list, change, delete, test, attempts, redeliver | `webhooks:manage`; members only their own endpoints |
//!
//! A credential holds the scopes it was given within what its owner may do
//! now; an access token is re-checked against its key and owner before any
//! of these operations.

pub mod audit;
pub mod audit_trail;
pub mod authz;
pub mod backup;
pub mod client_assertion;
pub mod clients;
pub mod credential_cache;
pub mod deliveries;
pub mod dpop;
pub mod exchange;
pub mod grant;
pub mod insights;
pub mod key_usage;
pub mod keys;
pub mod public_key_values;
pub mod public_keys;
pub mod rate_limit;
pub mod records;
pub mod sessions;
pub mod setup;
pub mod sigv4;
pub mod tenants;
pub mod throttle;
pub mod usage;
pub mod users;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::domain::{Role, ScopeSet};
/// How the database failed, inside `ServiceError::Storage`: routes map it
/// to a status without reaching into storage/.
pub use crate::storage::StorageError;
use crate::storage::Store;
use crate::tokens::RevokedTokens;
use credential_cache::CredentialCache;
use rate_limit::RateLimiter;
use throttle::FailureThrottle;
use usage::LastUsed;

/// What the rules need to reach: the database, the settings and the
/// per-instance memory (throttles, last-used times, revoked tokens, the
/// credential cache), and the per-key rate limiter (Redis, or that memory
/// too).
#[derive(Clone)]
pub struct Service {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub throttle: FailureThrottle,
    pub last_used: LastUsed,
    /// Usage per key and hour, counted in memory and written in batches.
    pub usage_counts: key_usage::UsageCounter,
    pub revoked: RevokedTokens,
    pub rate_limits: RateLimiter,
    /// Derived SigV4 signing keys, per key and day.
    pub sigv4_keys: sigv4::Sigv4KeyCache,
    /// Untrusted (so unused) until `startup` starts its watcher.
    pub credentials: CredentialCache,
    /// Trusted issuers' public keys, for token exchange.
    pub issuer_keys: Arc<crate::issuer_keys::IssuerKeys>,
    /// When this instance last swept expired assertion `jti`s.
    pub assertion_sweep: client_assertion::SweepClock,
    /// DPoP proofs (RFC 9449), with the database as replay cache.
    pub dpop: crate::tokens::DpopVerifier,
    /// The CAs `tls_client_auth` keys chain to (RFC 8705 §2.1); read at
    /// start-up and on SIGHUP.
    pub client_authorities: Arc<crate::mtls::ClientAuthorities>,
}

impl Service {
    pub fn new(store: Store, settings: Arc<Settings>) -> Self {
        let throttle = FailureThrottle::new(
            settings.security.client_auth_max_failures,
            settings.security.client_auth_failure_window,
        );
        let rate_limits = RateLimiter::new(&settings.rate_limits);
        let credentials = CredentialCache::new(
            settings.credential_cache.capacity,
            credential_cache_lease(settings.credential_cache.sqlite_poll),
        )
        .serving_stale_for(settings.credential_cache.serve_stale);
        let issuer_keys = Arc::new(crate::issuer_keys::IssuerKeys::new(&settings.exchange));
        let dpop = dpop::verifier(&store, &settings);
        Service {
            client_authorities: Arc::new(crate::mtls::ClientAuthorities::new(
                settings.mtls.client_ca_file.clone(),
            )),
            usage_counts: key_usage::UsageCounter::new(settings.usage.counting),
            dpop,
            store,
            rate_limits,
            credentials,
            issuer_keys,
            settings,
            throttle,
            last_used: LastUsed::default(),
            revoked: RevokedTokens::default(),
            sigv4_keys: sigv4::Sigv4KeyCache::default(),
            assertion_sweep: client_assertion::SweepClock::default(),
        }
    }

    pub fn max_token_ttl(&self) -> Duration {
        self.settings.tokens.max_ttl
    }
}

/// How long the credential cache is trusted after each proof that its
/// watcher heard everything: a second (the promise), and at least two SQLite
/// polls or PostgreSQL heartbeats, so one late proof does not lapse it.
fn credential_cache_lease(sqlite_poll: Duration) -> Duration {
    Duration::from_secs(1)
        .max(sqlite_poll * 2)
        .max(crate::storage::CREDENTIAL_HEARTBEAT * 2)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the owner already holds {limit} active keys; revoke one before creating another")]
    KeyLimitReached { limit: u32 },
    /// A company trusts the most issuers it may.
    #[error("{0}")]
    TrustedIssuerLimitReached(String),
    /// A user's or a company's most webhook endpoints are registered; the
    /// message says which.
    #[error("{0}")]
    EndpointLimitReached(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("this credential lacks the `{0}` scope")]
    InsufficientScope(&'static str),
    /// The credential was valid once and is not any more (its key revoked or
    /// expired, its owner disabled).
    #[error("{0}")]
    CredentialRevoked(&'static str),
    /// A deletion needs the caller to type this exact phrase back.
    #[error("deleting a key cannot be undone: send {{\"confirm\": \"{phrase}\"}} to delete it")]
    ConfirmationRequired { phrase: String },
    /// Unknown email, wrong password, no password set, a disabled user or a
    /// locked account: deliberately one answer.
    #[error("the email or password is wrong")]
    BadCredentials,
    #[error("this company's policy lets users with an active API key use only the API")]
    ApiOnly,
    #[error("{0}")]
    WeakPassword(String),
    #[error("the set-password token is not valid: it was used already, expired or mistyped")]
    InvalidSetPasswordToken,
    #[error(transparent)]
    Storage(StorageError),
    /// A failure of the server itself (no randomness, a hashing task that
    /// died): 500, with the cause logged.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The stable code HTTP answers and `keyport --json` print.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Invalid(_) => "invalid_input",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::KeyLimitReached { .. } => "key_limit_reached",
            ServiceError::TrustedIssuerLimitReached(_) => "trusted_issuer_limit_reached",
            ServiceError::EndpointLimitReached(_) => "webhook_endpoint_limit_reached",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::InsufficientScope(_) => "insufficient_scope",
            ServiceError::CredentialRevoked(_) => "invalid_token",
            ServiceError::ConfirmationRequired { .. } => "confirmation_required",
            ServiceError::BadCredentials => "invalid_credentials",
            ServiceError::ApiOnly => "api_only_user",
            ServiceError::WeakPassword(_) => "weak_password",
            ServiceError::InvalidSetPasswordToken => "invalid_token",
            ServiceError::Storage(StorageError::Unavailable(_)) => "unavailable",
            ServiceError::Storage(StorageError::RefusedValue(_)) => "invalid_request",
            ServiceError::Storage(StorageError::Constraint(_)) => "conflict",
            ServiceError::Storage(_) | ServiceError::Internal(_) => "internal_error",
        }
    }
}

/// Unique constraints become 409s with a message people understand.
impl From<StorageError> for ServiceError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Constraint(name) => ServiceError::Conflict(
                match name.as_str() {
                    "tenants_name_unique" => "a tenant with that name already exists",
                    "users_email_unique" => "a user with that email already exists",
                    _ => "that would duplicate an existing record",
                }
                .to_owned(),
            ),
            other => ServiceError::Storage(other),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A user's role and everything it lets them do, from the stored role and
/// granted permissions (admins add the administration scopes).
fn stored_permissions(role: &str, granted: &str) -> Result<(Role, ScopeSet), StorageError> {
    let role: Role = role.parse().map_err(StorageError::Corrupt)?;
    let granted = ScopeSet::parse(granted).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    Ok((role, role.permissions(&granted)))
}

/// At most 80 characters of something a caller typed, for messages, with
/// anything credential-shaped redacted (a secret pasted where an id goes).
fn preview(raw: &str) -> String {
    crate::domain::redact_credentials(raw)
        .chars()
        .take(80)
        .collect()
}
