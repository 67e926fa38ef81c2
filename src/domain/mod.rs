//! Domain types: each one parses its input once, so the rest of the code can
//! trust what it holds.

pub mod client_certificate;
mod credentials;
pub mod exchange;
mod names;
mod network;
mod principal;
mod rate_limit;
mod record;
mod scope;
mod signing_algorithm;
pub mod sigv4;
pub mod special_addresses;
mod user;
mod webhook;
mod webhook_audience;
mod webhook_key;

pub use client_certificate::{
    CertificateError, CertificateThumbprint, RegisteredCertificates, TlsClientSubject,
};
pub use credentials::{
    ClientId, ClientSecret, CredentialError, SecretDigest, SessionToken, SetPasswordToken,
    SetupToken, redact_credentials,
};
pub use names::{
    CollectionName, IdempotencyKey, KeyDescription, KeyLabels, KeyName, NameError, TenantName,
};
pub use network::{IpRange, SourceAllowList};
pub use principal::{ActingUser, Credential, KeyProof, Principal};
pub use rate_limit::{
    MAX_BURST, MAX_PERIOD_SECONDS, MAX_REQUESTS, Period, RateLimit, RateLimitError,
};
pub use record::{RecordBatch, RecordError, check_unique_members};
pub use scope::{
    ADMIN_SCOPES, AUDIT_READ, GRANTABLE_SCOPES, KEYS_MANAGE, REPORTS_READ, SETUP_GRANTS,
    SUPPORTED_SCOPES, Scope, ScopeError, ScopeSet, TENANT_MANAGE, TOKENS_EXCHANGE, USERS_MANAGE,
    WEBHOOKS_MANAGE, WEBHOOKS_WRITE,
};
pub use signing_algorithm::SigningAlgorithm;
pub use special_addresses::{Refusal, TargetPolicy};
pub use user::{Email, Role, UserStatus};
pub use webhook::{
    TEST_EVENT_TYPE, WEBHOOK_EVENT_TYPES, WebhookEventTypes, WebhookTargetError, WebhookUrl,
    parse_collections,
};
pub use webhook_audience::{Audience, EndpointOwner, Unheard};
pub use webhook_key::{WEBHOOK_KEY_INFO, WebhookSigningKey};

/// Seconds since the Unix epoch: the one time representation stored in both
/// databases.
pub type UnixTime = i64;

pub fn now() -> UnixTime {
    chrono::Utc::now().timestamp()
}
