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
//! is one Keyport signs with (never `none` or HMAC, whatever the token
//! says), the signature is the key's, `iss` is the issuer, `aud` names your
//! API, `exp` is in the future and `nbf`/`iat` are not (with a small
//! leeway), and `sub`, `iat`, `exp` are present. The claims come back typed
//! ([`Claims`]: subject, company, scopes, client ID, `act`, `cnf`).
//!
//! A token bound to a key (DPoP, RFC 9449) is accepted only under the
//! `DPoP` scheme with a proof by that key for this very request
//! ([`VerifierBuilder::dpop`], module [`dpop`]); presented as a bearer token
//! it is refused. A token bound to a client certificate (mutual TLS, RFC
//! 8705, `cnf.x5t#S256`) is accepted as a bearer token only from a client
//! that presented that certificate ([`ClientCertificate`], which the
//! application hands to the adapters from its TLS layer). Every refusal knows its answer: a status and RFC 6750 /
//! RFC 9449 `WWW-Authenticate` challenges ([`Rejection`]), naming the
//! missing scope for `insufficient_scope` and the resource's RFC 9728
//! metadata ([`Verifier::resource_metadata`]) when it publishes it.
//!
//! # Verifying a token
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
//!
//! # A whole request, any framework
//!
//! [`Verifier::authenticate`] takes what it needs of a request
//! ([`TokenRequest`]: method, URL, `Authorization`, `DPoP` headers) and
//! answers [`Authenticated`] or a [`Rejection`] to send as it is:
//!
//! ```no_run
//! # async fn run(verifier: keyport_verify::Verifier) {
//! use keyport_verify::TokenRequest;
//!
//! let request = TokenRequest {
//!     method: "GET",
//!     url: "https://api.example.com/reports",
//!     authorization: Some("Bearer eyJ…"),
//!     dpop_proofs: &[],
//!     client_certificate: None,
//! };
//! match verifier.authenticate(&request).await {
//!     Ok(token) => println!("subject {}", token.sub),
//!     Err(refused) => {
//!         // refused.status(), one WWW-Authenticate header per
//!         // refused.challenges(), refused.body() as JSON.
//!         println!("{} {:?}", refused.status(), refused.challenges());
//!     }
//! }
//! # }
//! ```
//!
//! # Where the keys come from
//!
//! [`Verifier::discover`] and [`VerifierBuilder::build`] fetch the issuer's
//! JWKS and keep it as [`KeySettings`] says. With keys already at hand,
//! [`VerifierBuilder::with_keys`] takes any [`KeySource`] instead and
//! fetches nothing; [`StaticKeys`] is a set replaced as a whole, and
//! [`Verifier::verify_now`] then verifies without an `.await`:
//!
//! ```
//! use std::sync::Arc;
//! use keyport_verify::{StaticKeys, Verifier, VerifyError};
//!
//! let keys = StaticKeys::new(); // fill with `replace` or `from_jwks`
//! let verifier = Verifier::builder("https://auth.example.com", "keyport-api")
//!     .with_keys(Arc::new(keys.clone()));
//! assert_eq!(verifier.verify_now("not.a.token"), Err(VerifyError::Malformed));
//! ```
//!
//! A verifier remembers the tokens it accepted until they expire
//! ([`VerifierBuilder::cache_capacity`]): a token seen before is answered
//! in about a microsecond, without its signature being checked again.
//!
//! An authorization server checks the DPoP proofs sent to its token
//! endpoint with [`DpopSettings::check_proof`], the same checks a resource
//! applies (without `ath`), and learns the key to bind the token to.
//!
//! # Adapters
//!
//! - `actix` feature: [`Authenticated`] (and the bearer-only
//!   `actix::BearerClaims`) as extractors, `actix::resource_metadata` as a
//!   handler.
//! - `axum` feature: [`Authenticated`] as an extractor, `axum::RequireToken`
//!   as a tower layer (with scopes), `axum::resource_metadata` as a handler.
//!
//! `examples/actix.rs` and `examples/axum.rs` are whole resource servers of
//! a few dozen lines (`ISSUER=… LISTEN=… cargo run -p keyport-verify
//! --features axum --example axum`).
//!
//! # Why not jwt-authorizer for the axum side
//!
//! `jwt-authorizer` (axum and tonic) refreshes its JWKS on an unknown `kid`
//! and follows discovery, but it has no `typ` check, no DPoP, no RFC 9728
//! and no actix-web, and its refusals are its own: building the axum
//! adapter on it would have meant two key caches, two sets of checks and
//! two ways of answering a refusal, with the actix side still written here.
//! With one [`Verifier`] the two adapters are thin translations of
//! [`Verifier::authenticate`] (about 150 lines each) and answer
//! identically; the axum one needs only `axum-core`, `http` and tower's two
//! trait crates.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub mod actix;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod claims;
mod clock;
pub mod dpop;
mod error;
mod keys;
mod request;
mod verifier;

pub use claims::Claims;
pub use dpop::{
    CheckedProof, DpopNonces, DpopSettings, MemoryReplayStore, ProofTarget, ReplayStore,
};
pub use error::MAX_TOKEN_LEN;
pub use error::VerifyError;
pub use keys::{KeyLookup, KeySettings, KeySource, PublicKey, StaticKeys};
pub use request::{Authenticated, ClientCertificate, Rejection, Scheme, TokenRequest};
pub use verifier::{Verifier, VerifierBuilder};
