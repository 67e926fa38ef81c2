//! Domain types: each one parses its input once, so the rest of the code can
//! trust what it holds.

mod credentials;
mod names;
mod scope;
mod user;

pub use credentials::{ClientId, ClientSecret, CredentialError, SecretDigest, SessionToken};
pub use names::{CollectionName, IdempotencyKey, KeyName, NameError, TenantName};
pub use scope::{KEYS_MANAGE, REPORTS_READ, Scope, ScopeError, ScopeSet, WEBHOOKS_WRITE};
pub use user::{Email, Role, UserStatus};

/// Seconds since the Unix epoch: the one time representation stored in both
/// databases.
pub type UnixTime = i64;

pub fn now() -> UnixTime {
    chrono::Utc::now().timestamp()
}
