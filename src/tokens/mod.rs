//! Access tokens (RFC 9068 JWTs): signing keys, issuing, the JWKS; tokens
//! and DPoP proofs are verified by the `keyport_verify` library, with the
//! keys held here (`verified.rs`, `dpop/`). No HTTP framework: the
//! extractors are `routes::bearer` and `routes::dpop`.

mod claims;
pub mod dpop;
mod jwk;
mod jws;
mod keyring;
mod revocation;
mod signing_key;
mod verified;

pub use crate::domain::SigningAlgorithm;
pub use claims::{AccessTokenClaims, Confirmation};
pub use dpop::{DpopError, DpopVerifier};
pub use jwk::{JwkError, PublicJwk};
pub use jws::{JwsError, JwtTimeError, MAX_JWT_LEN, UnverifiedJwt, VerifiedJwt};
pub use keyring::{KeyRing, KeyRingError};
pub use revocation::RevokedTokens;
pub use signing_key::SigningKey;
pub use verified::{TokenError, TokenVerifier, VerifiedToken};

/// The JOSE `typ` of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
