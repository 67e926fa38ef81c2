//! Validates Keyport's access tokens in a resource server.
//!
//! A Keyport access token is a JWT (RFC 9068) that Keyport signs with a key
//! it publishes in its JWKS. A resource server validates it offline: this
//! crate finds the issuer's keys (from its RFC 8414 metadata, or a JWKS URL
//! you give), keeps them in memory, fetches them again when a token names a
//! key it does not hold (at most once per interval, so made-up `kid`s cannot
//! make it hammer the issuer) or when they grow old (in the background,
//! while the keys held keep answering), keeps serving the last good keys
//! while the issuer is unreachable, and fails closed when it never had any.
//!
//! Each token is checked as RFC 9068 asks: `typ` is `at+jwt`, the algorithm
//! is one Keyport signs with (never `none` or HMAC), the signature is the
//! key's, `iss` is the issuer, `aud` names your API, `exp` is in the future
//! and `nbf`/`iat` are not (with a small leeway). A refusal knows its RFC
//! 6750 answer: [`VerifyError::status`] and [`VerifyError::challenge`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use keyport_verify::Verifier;
//!
//! let verifier = Verifier::discover("https://auth.example.com", "keyport-api").await?;
//! # let token = "";
//! let claims = verifier.verify_bearer(token).await?;
//! claims.require_scope("reports:read")?;
//! println!("{} calls with {:?}", claims.sub, claims.scopes().collect::<Vec<_>>());
//! # Ok(()) }
//! ```

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
mod claims;
pub mod dpop;
mod error;
mod keys;
mod request;
mod verifier;

pub use claims::Claims;
pub use dpop::{DpopNonces, DpopSettings, MemoryReplayStore, ReplayStore};
pub use error::VerifyError;
pub use keys::KeySettings;
pub use request::{Authenticated, Rejection, Scheme, TokenRequest};
pub use verifier::{Verifier, VerifierBuilder};
