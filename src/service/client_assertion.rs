//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID
//! Connect Core §9): the client signs a short-lived JWT with a private key
//! whose public half is registered with its key, and sends it as
//! `client_assertion`. No secret crosses the wire or is stored.
//!
//! What is checked, in order (each failure is `invalid_client`, and counts
//! toward the same throttle as a wrong secret, per client ID and address):
//! 1. the JWT's shape and algorithm (ES256, EdDSA, RS256: never `none` or
//!    HMAC), and `iss` = `sub` = the client ID (= `client_id`, if sent);
//! 2. the signature, with the public key its header's `kid` names (its
//!    `kid` or its thumbprint), else with each of the key's public keys
//!    (at most [`MAX_PUBLIC_KEYS`]); an unknown client ID, a key without
//!    public keys and a bad signature answer alike;
//! 3. `aud`: this server's issuer, its token endpoint URL, or the URL of
//!    the endpoint called, as a single value; `exp` present, not past, and
//!    at most `client_assertion_max_lifetime_seconds` (3600 s by default,
//!    what common client libraries sign; each used `jti` is kept until its
//!    assertion expires) ahead; `nbf` and `iat` not in the future
//!    (all with the configured clock leeway); `jti` present;
//! 4. the key's standing (revoked, disabled, expired, owner disabled), as
//!    for a secret;
//! 5. the `jti` was never used by this client before: one INSERT into a
//!    table shared by every instance (see [`Store::use_assertion_jti`]).
//!
//! Claims are checked only once the signature verified, so what an
//! unauthenticated caller learns is only about the JWT it sent.
//!
//! [`Store::use_assertion_jti`]: crate::storage::Store::use_assertion_jti

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Service;
use super::clients::{self, AuthenticatedKey, ClientAuthError};
use super::public_keys::MAX_PUBLIC_KEYS;
use super::usage::UseKind;
use crate::domain::{ClientId, UnixTime, now};
use crate::tokens::{JwsError, JwtTimeError, PublicJwk, UnverifiedJwt, VerifiedJwt};

/// Longer `jti`s are refused; the store keeps a digest anyway.
const MAX_JTI_CHARS: usize = 256;

/// Expired `jti`s are swept at most this often per instance.
const SWEEP_EVERY_SECONDS: i64 = 60;

/// The endpoint an assertion was sent to: its URL is an accepted `aud`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionEndpoint {
    Token,
    Introspection,
    Revocation,
}

impl AssertionEndpoint {
    fn path(self) -> &'static str {
        match self {
            AssertionEndpoint::Token => "/oauth/token",
            AssertionEndpoint::Introspection => "/oauth/introspect",
            AssertionEndpoint::Revocation => "/oauth/revoke",
        }
    }
}

/// When this instance last swept the replay store (Unix seconds).
#[derive(Debug, Clone, Default)]
pub struct SweepClock(Arc<AtomicI64>);

const MALFORMED: &str = "the client assertion is not a well-formed JWT (RFC 7523 §3)";
const BAD_ALGORITHM: &str =
    "the client assertion's algorithm is not allowed: sign it with ES256, EdDSA or RS256";
const CRITICAL: &str =
    "the client assertion has critical header parameters this server does not understand";
const ISS_SUB: &str =
    "the client assertion's `iss` and `sub` must both be the client ID (RFC 7523 §3)";
const CLIENT_ID_DIFFERS: &str = "client_id differs from the client assertion's `iss` and `sub`";
const AUDIENCE: &str = "the client assertion's `aud` must be this server's issuer or its token \
     endpoint URL, as one value (see /.well-known/oauth-authorization-server)";
const NO_EXP: &str = "the client assertion needs an `exp` claim (RFC 7523 §3)";
const EXPIRED: &str = "the client assertion has expired";
const TOO_LONG: &str = "the client assertion's `exp` is too far ahead: sign short-lived \
     assertions (at most the server's client_assertion_max_lifetime_seconds, 3600 by default)";
const NOT_YET: &str = "the client assertion is not valid yet (`nbf`)";
const IAT_FUTURE: &str = "the client assertion's `iat` is in the future";
const NO_JTI: &str =
    "the client assertion needs a `jti` claim: a unique id of at most 256 characters";
const REPLAYED: &str =
    "the client assertion was used before: sign a new one, with a new `jti`, for each request";

fn jws_refusal(err: JwsError) -> ClientAuthError {
    ClientAuthError::Assertion(match err {
        JwsError::AlgorithmNotAllowed => BAD_ALGORITHM,
        JwsError::CriticalHeader => CRITICAL,
        _ => MALFORMED,
    })
}

/// The client the assertion claims to be (`iss` = `sub`, and = `client_id`
/// if sent), read before anything is verified: it only names the
/// throttling bucket and the key to check the signature with.
fn claimed_client(assertion: &str, client_id: Option<&str>) -> Result<String, ClientAuthError> {
    let jwt = UnverifiedJwt::parse(assertion).map_err(jws_refusal)?;
    let claims = jwt.unverified_claims();
    let iss = claims.get("iss").and_then(Value::as_str);
    let sub = claims.get("sub").and_then(Value::as_str);
    let (Some(iss), Some(sub)) = (iss, sub) else {
        return Err(ClientAuthError::Assertion(ISS_SUB));
    };
    if iss != sub {
        return Err(ClientAuthError::Assertion(ISS_SUB));
    }
    if client_id.is_some_and(|id| id != iss) {
        return Err(ClientAuthError::Assertion(CLIENT_ID_DIFFERS));
    }
    Ok(iss.to_owned())
}

/// Authenticates a client by its `client_assertion` (RFC 7523 §2.2) sent to
/// `endpoint` from `address`; `client_id` is the body parameter, if sent.
pub async fn authenticate(
    service: &Service,
    assertion: &str,
    client_id: Option<&str>,
    endpoint: AssertionEndpoint,
    address: IpAddr,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let claimed = claimed_client(assertion, client_id);
    clients::note_key("private_key_jwt", claimed.as_deref().unwrap_or_default());
    // Failures are counted against the client the assertion names, like a
    // wrong secret against the client ID sent with it.
    let bucket = match &claimed {
        Ok(id) => id.clone(),
        Err(_) => client_id.unwrap_or_default().to_owned(),
    };
    if let Some(retry_after) = service.throttle.check(&bucket, address) {
        crate::telemetry::request::note_refusal("locked after repeated failures");
        return Err(ClientAuthError::Throttled(retry_after));
    }
    let outcome = match claimed {
        Ok(id) => check(service, assertion, &id, endpoint).await,
        Err(err) => Err(err),
    };
    let outcome = outcome.and_then(|key| key.check_source(Some(address)).map(|()| key));
    clients::finish(service, outcome, &bucket, address, UseKind::Token)
}

async fn check(
    service: &Service,
    assertion: &str,
    client_id: &str,
    endpoint: AssertionEndpoint,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let Ok(id) = ClientId::parse(client_id) else {
        return Err(ClientAuthError::BadCredentials);
    };
    let verified = verify_signature(service, assertion, id.as_str()).await?;
    let at = now();
    let (jti, exp) = check_claims(&verified, id.as_str(), endpoint, service, at)?;
    let key = service
        .credentials
        .key_by_client_id(&service.store, id.as_str())
        .await?
        .ok_or(ClientAuthError::BadCredentials)?
        .check(at)?;
    sweep_if_due(service, at).await;
    let leeway = service.settings.tokens.leeway.as_secs() as i64;
    let digest: String = Sha256::digest(jti.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !service
        .store
        .use_assertion_jti(id.as_str(), &digest, exp.saturating_add(leeway))
        .await?
    {
        return Err(ClientAuthError::Assertion(REPLAYED));
    }
    Ok(key)
}

/// The assertion, verified with one of the client's public keys: the one
/// its `kid` names, else each (at most [`MAX_PUBLIC_KEYS`]).
async fn verify_signature(
    service: &Service,
    assertion: &str,
    client_id: &str,
) -> Result<VerifiedJwt, ClientAuthError> {
    let jwt = UnverifiedJwt::parse(assertion).map_err(jws_refusal)?;
    let algorithm = jwt.algorithm();
    let kid = jwt.kid().map(str::to_owned);
    let rows = service.store.public_keys_of_client(client_id).await?;
    let candidates = rows
        .iter()
        .filter(|row| match &kid {
            Some(kid) => row.kid.as_deref() == Some(kid.as_str()) || row.thumbprint == *kid,
            None => true,
        })
        .filter(|row| row.alg == algorithm.as_str())
        .take(MAX_PUBLIC_KEYS);
    for row in candidates {
        let key = serde_json::from_str::<Value>(&row.jwk)
            .ok()
            .and_then(|jwk| PublicJwk::parse(&jwk).ok());
        let Some(key) = key else {
            log::error!(
                "key {}: the stored public key {} does not parse; skipped",
                row.key_id,
                row.thumbprint
            );
            continue;
        };
        let jwt = UnverifiedJwt::parse(assertion).map_err(jws_refusal)?;
        if let Ok(verified) = jwt.verify(&key) {
            return Ok(verified);
        }
    }
    Err(ClientAuthError::BadCredentials)
}

/// RFC 7523 §3 on a verified assertion; returns its `jti` and `exp`.
fn check_claims(
    jwt: &VerifiedJwt,
    client_id: &str,
    endpoint: AssertionEndpoint,
    service: &Service,
    at: UnixTime,
) -> Result<(String, i64), ClientAuthError> {
    let refuse = |why| Err(ClientAuthError::Assertion(why));
    // §3 items 1 and 2 (checked on the unverified claims already; these
    // are the same claims, now trusted).
    if jwt.string_claim("iss") != Some(client_id) || jwt.string_claim("sub") != Some(client_id) {
        return refuse(ISS_SUB);
    }
    // §3 item 3.
    if !audience_accepted(jwt, &service.settings.tokens.issuer, endpoint) {
        return refuse(AUDIENCE);
    }
    let leeway = service.settings.tokens.leeway.as_secs() as i64;
    let max_lifetime = service
        .settings
        .tokens
        .client_assertion_max_lifetime
        .as_secs() as i64;
    // §3 items 4 to 6: the times, then how far ahead `exp` reaches.
    let exp = jwt.check_times(at, leeway).map_err(|e| {
        ClientAuthError::Assertion(match e {
            JwtTimeError::NoExpiry => NO_EXP,
            JwtTimeError::Expired => EXPIRED,
            JwtTimeError::NotYetValid => NOT_YET,
            JwtTimeError::IssuedInFuture => IAT_FUTURE,
        })
    })?;
    let longest = max_lifetime.saturating_add(leeway);
    if exp > at.saturating_add(longest)
        || jwt
            .time_claim("iat")
            .is_some_and(|iat| exp.saturating_sub(iat) > longest)
    {
        return refuse(TOO_LONG);
    }
    // §3 item 7.
    let jti = match jwt.string_claim("jti") {
        Some(jti) if !jti.is_empty() && jti.chars().count() <= MAX_JTI_CHARS => jti,
        _ => return refuse(NO_JTI),
    };
    Ok((jti.to_owned(), exp))
}

/// RFC 7523 §3 item 3: `aud` identifies this server. Its issuer identifier
/// (what RFC 7523's successor drafts and OAuth 2.1 recommend) or the token
/// endpoint's URL (OpenID Connect Core §9), or the URL of the endpoint
/// called; one value, so an assertion made for another server and this one
/// at once (the "audience injection" the 2025 OpenID Foundation advisory
/// describes) is refused.
fn audience_accepted(jwt: &VerifiedJwt, issuer: &str, endpoint: AssertionEndpoint) -> bool {
    let single = match jwt.claims.get("aud") {
        Some(Value::String(aud)) => aud.as_str(),
        Some(Value::Array(auds)) if auds.len() == 1 => match auds[0].as_str() {
            Some(aud) => aud,
            None => return false,
        },
        _ => return false,
    };
    let issuer = issuer.trim_end_matches('/');
    let Some(rest) = single.strip_prefix(issuer) else {
        return false;
    };
    rest.is_empty()
        || rest == "/"
        || rest == AssertionEndpoint::Token.path()
        || rest == endpoint.path()
}

/// Deletes expired `jti`s, at most once a minute per instance; a failure
/// is logged (the rows are only dead weight).
async fn sweep_if_due(service: &Service, at: UnixTime) {
    let last = service.assertion_sweep.0.load(Ordering::Relaxed);
    if at - last < SWEEP_EVERY_SECONDS
        || service
            .assertion_sweep
            .0
            .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if let Err(err) = service.store.sweep_assertion_jtis(at).await {
        log::warn!(
            "sweeping used client assertion ids failed: {}",
            crate::telemetry::error_chain(&err)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn unsigned(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode([1u8; 64])
        )
    }

    #[test]
    fn the_claimed_client_is_iss_and_sub_and_client_id_alike() {
        let ok = unsigned(r#"{"alg":"ES256"}"#, r#"{"iss":"kpc_a","sub":"kpc_a"}"#);
        assert_eq!(claimed_client(&ok, None).unwrap(), "kpc_a");
        assert_eq!(claimed_client(&ok, Some("kpc_a")).unwrap(), "kpc_a");
        assert!(matches!(
            claimed_client(&ok, Some("kpc_b")),
            Err(ClientAuthError::Assertion(CLIENT_ID_DIFFERS))
        ));
        let split = unsigned(r#"{"alg":"ES256"}"#, r#"{"iss":"kpc_a","sub":"kpc_b"}"#);
        assert!(matches!(
            claimed_client(&split, None),
            Err(ClientAuthError::Assertion(ISS_SUB))
        ));
        let none = unsigned(r#"{"alg":"none"}"#, r#"{"iss":"kpc_a","sub":"kpc_a"}"#);
        assert!(matches!(
            claimed_client(&none, None),
            Err(ClientAuthError::Assertion(BAD_ALGORITHM))
        ));
        assert!(matches!(
            claimed_client("not a jwt", None),
            Err(ClientAuthError::Assertion(MALFORMED))
        ));
    }

    fn with_aud(aud: Value) -> VerifiedJwt {
        let mut claims = serde_json::Map::new();
        claims.insert("aud".into(), aud);
        VerifiedJwt { claims }
    }

    #[test]
    fn the_audience_is_the_issuer_or_the_token_endpoint_and_one_value_only() {
        let issuer = "https://auth.example.com";
        let token = AssertionEndpoint::Token;
        let introspection = AssertionEndpoint::Introspection;
        for accepted in [
            serde_json::json!("https://auth.example.com"),
            serde_json::json!("https://auth.example.com/"),
            serde_json::json!("https://auth.example.com/oauth/token"),
            serde_json::json!(["https://auth.example.com"]),
        ] {
            assert!(
                audience_accepted(&with_aud(accepted.clone()), issuer, token),
                "{accepted}"
            );
        }
        assert!(audience_accepted(
            &with_aud(serde_json::json!(
                "https://auth.example.com/oauth/introspect"
            )),
            issuer,
            introspection
        ));
        for refused in [
            serde_json::json!("https://auth.example.com/oauth/introspect"),
            serde_json::json!("https://auth.example.com.evil.test"),
            serde_json::json!("https://other.example.com/oauth/token"),
            serde_json::json!(["https://auth.example.com", "https://other.example.com"]),
            serde_json::json!([]),
            serde_json::json!(42),
        ] {
            assert!(
                !audience_accepted(&with_aud(refused.clone()), issuer, token),
                "{refused}"
            );
        }
    }
}
