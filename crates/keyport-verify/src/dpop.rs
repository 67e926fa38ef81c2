//! DPoP (RFC 9449) at a resource: a token bound to a key (`cnf.jkt`) is
//! accepted only with a proof signed by that key, checked as §4.3 and §7
//! list: one `DPoP` header, a well-formed `dpop+jwt` with a public `jwk`, an
//! allowed asymmetric algorithm, a signature by that key, `htm` and `htu`
//! for this request, `iat` within a window, `ath` for this token, the key's
//! thumbprint the token's `cnf.jkt`, optionally a nonce of the resource's,
//! and a `jti` seen once (through a [`ReplayStore`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::VerifyError;
use crate::clock::now;

/// The JOSE `typ` of a DPoP proof (RFC 9449 §4.2).
const DPOP_TYP: &str = "dpop+jwt";

/// The future a [`ReplayStore`] answers with.
pub type ReplayFuture<'a> =
    Pin<Box<dyn Future<Output = Result<bool, ReplayStoreError>> + Send + 'a>>;

/// The replay store failed; the proof is refused (503) rather than risk a
/// replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the DPoP replay store failed: {0}")]
pub struct ReplayStoreError(pub String);

/// Remembers which proofs have been used, so each `jti` is accepted once
/// (RFC 9449 §11.1). The default, [`MemoryReplayStore`], is this process's
/// memory: enough for one instance. Several instances behind one URL need
/// a shared store (a Redis `SET NX EX`, a table with a unique key), or a
/// proof refused by one could be replayed at another.
pub trait ReplayStore: Send + Sync {
    /// Records `id` until `expires_at` (Unix seconds) and answers `true`,
    /// or answers `false` when it was recorded before and has not expired.
    /// `id` is a SHA-256 digest of the proof's key and `jti`.
    fn first_use(&self, id: [u8; 32], expires_at: i64) -> ReplayFuture<'_>;
}

/// A [`ReplayStore`] in this process's memory, bounded: when full of
/// unexpired entries it fails (and proofs are refused with 503) rather than
/// forget one.
#[derive(Debug)]
pub struct MemoryReplayStore {
    seen: Mutex<HashMap<[u8; 32], i64>>,
    capacity: usize,
}

impl MemoryReplayStore {
    /// A store holding at most `capacity` proofs at a time.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }
}

impl Default for MemoryReplayStore {
    /// Room for a million proofs (about 50 MB at most).
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use(&self, id: [u8; 32], expires_at: i64) -> ReplayFuture<'_> {
        let at = now();
        let outcome = (|| {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = seen.get(&id)
                && *until >= at
            {
                return Ok(false);
            }
            if seen.len() >= self.capacity {
                seen.retain(|_, until| *until >= at);
                if seen.len() >= self.capacity {
                    return Err(ReplayStoreError("the in-memory store is full".to_owned()));
                }
            }
            seen.insert(id, expires_at);
            Ok(true)
        })();
        Box::pin(std::future::ready(outcome))
    }
}

/// Server-provided nonces (RFC 9449 §9): random values that change every
/// `lifetime`; a proof must carry the current or the previous one, so a
/// proof made in advance is useless. Share one value per resource (clones
/// share their nonces).
#[derive(Debug, Clone)]
pub struct DpopNonces {
    lifetime: u64,
    state: Arc<Mutex<NonceState>>,
}

#[derive(Debug)]
struct NonceState {
    slot: u64,
    current: String,
    previous: String,
}

impl DpopNonces {
    /// Nonces that change every `lifetime` (at least one second).
    pub fn new(lifetime: Duration) -> Self {
        let lifetime = lifetime.as_secs().max(1);
        DpopNonces {
            lifetime,
            state: Arc::new(Mutex::new(NonceState {
                slot: now().max(0) as u64 / lifetime,
                current: random_nonce(),
                previous: random_nonce(),
            })),
        }
    }

    /// The nonce to hand out now.
    pub fn current(&self) -> String {
        self.rotated(|state| state.current.clone())
    }

    fn accepts(&self, nonce: &str) -> bool {
        self.rotated(|state| nonce == state.current || nonce == state.previous)
    }

    fn rotated<T>(&self, read: impl FnOnce(&NonceState) -> T) -> T {
        let slot = now().max(0) as u64 / self.lifetime;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if slot > state.slot {
            state.previous = if slot == state.slot + 1 {
                std::mem::take(&mut state.current)
            } else {
                random_nonce()
            };
            state.current = random_nonce();
            state.slot = slot;
        }
        read(&state)
    }
}

fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    // A failing system random source is unrecoverable; every nonce would be
    // guessable.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How DPoP proofs are checked. The defaults: proofs up to 60 s old (plus
/// the verifier's leeway), ES256, EdDSA and RS256 keys, an in-memory replay
/// store, no nonces.
#[derive(Clone)]
pub struct DpopSettings {
    pub(crate) max_age: Duration,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) replay: Arc<dyn ReplayStore>,
    pub(crate) nonces: Option<DpopNonces>,
}

impl std::fmt::Debug for DpopSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopSettings")
            .field("max_age", &self.max_age)
            .field("algorithms", &self.algorithms)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings {
            max_age: Duration::from_secs(60),
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
            replay: Arc::new(MemoryReplayStore::default()),
            nonces: None,
        }
    }
}

impl DpopSettings {
    /// How old a proof's `iat` may be (default 60 s).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The algorithms a proof may use, announced as `algs` in challenges
    /// (default ES256, EdDSA, RS256; others are ignored).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| matches!(a, Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256))
            .collect();
        self
    }

    /// Where used proofs are remembered (default: [`MemoryReplayStore`]).
    pub fn replay_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.replay = store;
        self
    }

    /// Requires a nonce of the resource's in every proof.
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The `algs` challenge parameter: the allowed algorithms, by name.
    pub(crate) fn algs(&self) -> String {
        self.algorithms
            .iter()
            .map(|a| match a {
                Algorithm::ES256 => "ES256",
                Algorithm::EdDSA => "EdDSA",
                _ => "RS256",
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

fn refused(why: &str) -> VerifyError {
    VerifyError::InvalidDpopProof(why.to_owned())
}

/// The request a proof must fit.
pub(crate) struct ProofTarget<'a> {
    pub method: &'a str,
    /// The URL the request was sent to, as the client named it.
    pub url: &'a str,
    pub access_token: &'a str,
    /// The thumbprint the token is bound to.
    pub jkt: &'a str,
}

/// RFC 9449 §4.3 and §7.1, in order; `leeway` is the verifier's clock skew.
pub(crate) async fn check_proof(
    settings: &DpopSettings,
    leeway: i64,
    proofs: &[&str],
    target: &ProofTarget<'_>,
) -> Result<(), VerifyError> {
    // Step 1: exactly one DPoP header.
    let proof = match proofs {
        [] => return Err(refused("a DPoP proof is required (the DPoP header)")),
        [one] => one.trim(),
        _ => return Err(refused("send exactly one DPoP header")),
    };
    // Step 2: a well-formed JWT.
    let header = jsonwebtoken::decode_header(proof)
        .map_err(|_| refused("the DPoP proof is not a well-formed JWT"))?;
    // Step 4: typ.
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(DPOP_TYP))
    {
        return Err(refused("the DPoP proof's typ must be dpop+jwt"));
    }
    // Step 5: an allowed asymmetric algorithm (never `none` or HMAC).
    if !settings.algorithms.contains(&header.alg) {
        return Err(refused(&format!(
            "the DPoP proof's alg must be one of {}",
            settings.algs()
        )));
    }
    // Steps 3 and 7: a `jwk` header holding a public key only.
    let jwk = header
        .jwk
        .as_ref()
        .ok_or_else(|| refused("the DPoP proof has no jwk header"))?;
    let raw =
        raw_header(proof).ok_or_else(|| refused("the DPoP proof is not a well-formed JWT"))?;
    // RFC 7515 §4.1.11: no extension is understood here.
    if raw.get("crit").is_some() {
        return Err(refused(
            "the DPoP proof has critical header parameters this resource does not understand",
        ));
    }
    if holds_private_key(&raw) {
        return Err(refused("the DPoP proof's jwk must not hold a private key"));
    }
    if key_algorithm(jwk) != Some(header.alg) {
        return Err(refused("the DPoP proof's alg does not match its jwk"));
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|_| refused("the DPoP proof's jwk is not a usable key"))?;
    // Step 6: the signature, by that key; the claims it needs.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                refused("the DPoP proof's signature does not verify with its jwk")
            }
            _ => refused("the DPoP proof needs jti, htm, htu and iat claims"),
        })?
        .claims;
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(refused("the DPoP proof needs a jti of 1 to 256 characters"));
    }
    // Step 8: htm.
    if claims.htm != target.method {
        return Err(refused(&format!(
            "the DPoP proof is for another method: htm must be {}",
            target.method
        )));
    }
    // Step 9: htu, normalised, without query and fragment.
    if !same_target_uri(&claims.htu, target.url) {
        return Err(refused("the DPoP proof is for another URL (htu)"));
    }
    // Step 11: iat within the window.
    let at = now();
    let max_age = settings.max_age.as_secs() as i64;
    if claims.iat > at + leeway || claims.iat < at - max_age - leeway {
        return Err(refused(
            "the DPoP proof's iat is outside the accepted window",
        ));
    }
    // Step 12: ath is this token's hash, and the key is the token's.
    let ath = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        target.access_token.as_bytes(),
    ));
    if claims.ath.as_deref() != Some(ath.as_str()) {
        return Err(refused("the DPoP proof's ath is not this token's hash"));
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| refused("the DPoP proof's jwk is not a usable key"))?;
    if jkt != target.jkt {
        return Err(refused(
            "the DPoP proof is signed by another key than the token is bound to",
        ));
    }
    // Step 10: the resource's nonce, when it asks for one.
    if let Some(nonces) = &settings.nonces
        && !claims.nonce.as_deref().is_some_and(|n| nonces.accepts(n))
    {
        return Err(VerifyError::UseDpopNonce(nonces.current()));
    }
    // Step 11 (§11.1): each proof once. Last, so a refused proof is not
    // recorded.
    let first = settings
        .replay
        .first_use(replay_id(&jkt, &claims.jti), claims.iat + max_age + leeway)
        .await
        .map_err(|e| {
            log::warn!("{e}");
            VerifyError::ReplayCheckUnavailable
        })?;
    if !first {
        return Err(refused("the DPoP proof has been used before"));
    }
    Ok(())
}

/// SHA-256 of the key's thumbprint and the `jti`: what the replay store
/// keeps (fixed size, whatever the `jti`).
fn replay_id(jkt: &str, jti: &str) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(jkt.as_bytes());
    context.update(&[0]);
    context.update(jti.as_bytes());
    let mut id = [0u8; 32];
    id.copy_from_slice(context.finish().as_ref());
    id
}

/// The algorithm a public key verifies; `None` for symmetric keys and
/// curves Keyport does not use.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(Algorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Some(Algorithm::EdDSA)
        }
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}

/// The proof's header as JSON: [`jsonwebtoken::Header`] drops members it
/// does not know (`crit`) and the private members of a `jwk`.
fn raw_header(proof: &str) -> Option<serde_json::Value> {
    let header = URL_SAFE_NO_PAD.decode(proof.split('.').next()?).ok()?;
    serde_json::from_slice(&header).ok()
}

/// Whether the header's `jwk` carries private key members (`d`, or RSA's
/// `p`, `q`, …, or a symmetric `k`).
fn holds_private_key(header: &serde_json::Value) -> bool {
    let Some(jwk) = header.get("jwk").and_then(|j| j.as_object()) else {
        return true;
    };
    ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|member| jwk.contains_key(*member))
}

/// Whether `htu` names `expected`: scheme and host case-insensitively,
/// default ports, the path after RFC 3986 §6.2.2 normalisation, without
/// query and fragment (RFC 9449 §4.3 step 9).
pub(crate) fn same_target_uri(htu: &str, expected: &str) -> bool {
    let (Ok(htu), Ok(expected)) = (reqwest::Url::parse(htu), reqwest::Url::parse(expected)) else {
        return false;
    };
    htu.scheme() == expected.scheme()
        && htu.username().is_empty()
        && htu.password().is_none()
        && htu.host_str().map(str::to_ascii_lowercase)
            == expected.host_str().map(str::to_ascii_lowercase)
        && htu.port_or_known_default() == expected.port_or_known_default()
        && normalised_path(htu.path()) == normalised_path(expected.path())
}

/// Percent-encodings of unreserved characters decoded and the others in
/// upper case (RFC 3986 §6.2.2.1, §6.2.2.2); an empty path is `/`.
fn normalised_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len().max(1));
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let byte = h * 16 + l;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push((bytes[i + 1] as char).to_ascii_uppercase());
                out.push((bytes[i + 2] as char).to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_is_compared_after_normalisation_without_query_or_fragment() {
        let expected = "https://api.example.com/protected";
        for same in [
            "https://api.example.com/protected",
            "HTTPS://Api.Example.COM:443/protected",
            "https://api.example.com/protected?x=1#f",
            "https://api.example.com/./protected",
            "https://api.example.com/%70rotected",
        ] {
            assert!(same_target_uri(same, expected), "{same}");
        }
        for other in [
            "http://api.example.com/protected",
            "https://api.example.com:8443/protected",
            "https://api.example.com/protected/x",
            "https://user@api.example.com/protected",
            "https://evil.example.com/protected",
            "/protected",
        ] {
            assert!(!same_target_uri(other, expected), "{other}");
        }
    }

    #[tokio::test]
    async fn the_memory_store_accepts_each_proof_once_and_fails_closed_when_full() {
        let store = MemoryReplayStore::new(2);
        let later = now() + 60;
        assert_eq!(store.first_use([1; 32], later).await, Ok(true));
        assert_eq!(store.first_use([1; 32], later).await, Ok(false));
        assert_eq!(store.first_use([2; 32], later).await, Ok(true));
        assert!(store.first_use([3; 32], later).await.is_err());
        // An expired entry makes room.
        let store = MemoryReplayStore::new(1);
        assert_eq!(store.first_use([1; 32], now() - 1).await, Ok(true));
        assert_eq!(store.first_use([2; 32], later).await, Ok(true));
    }

    #[test]
    fn a_nonce_is_accepted_until_the_slot_after_next() {
        let nonces = DpopNonces::new(Duration::from_secs(3600));
        let current = nonces.current();
        assert!(nonces.accepts(&current));
        assert!(!nonces.accepts("made-up"));
        // The slot moves on: the old current becomes the previous.
        nonces.state.lock().unwrap().slot -= 1;
        let next = nonces.current();
        assert_ne!(next, current);
        assert!(nonces.accepts(&current) && nonces.accepts(&next));
        nonces.state.lock().unwrap().slot -= 2;
        assert!(!nonces.accepts(&current));
    }
}
