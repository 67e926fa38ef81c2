//! DPoP (RFC 9449) at a resource: a token bound to a key (`cnf.jkt`) is
//! accepted only with a proof signed by that key, checked as §4.3 and §7
//! list: one `DPoP` header, a well-formed `dpop+jwt` with a public `jwk`, an
//! allowed asymmetric algorithm, a signature by that key, `htm` and `htu`
//! for this request, `iat` within a window, `ath` for this token, the key's
//! thumbprint the token's `cnf.jkt`, optionally a nonce of the resource's,
//! and a `jti` seen once (through a [`ReplayStore`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
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

    /// The Unix time (whole seconds) from which this store knows every
    /// proof used, if it does not know those before (a store in memory,
    /// since its process started): proofs whose `iat` is earlier are
    /// refused, since one may have been used before the store began and
    /// would pass as new.
    /// `None` (the default): the store outlives restarts (a database,
    /// Redis).
    fn remembers_since(&self) -> Option<i64> {
        None
    }
}

/// A [`ReplayStore`] in this process's memory, bounded: when full of
/// unexpired entries it fails (and proofs are refused with 503) rather than
/// forget one.
#[derive(Debug)]
pub struct MemoryReplayStore {
    seen: Mutex<HashMap<[u8; 32], i64>>,
    capacity: usize,
    /// See [`MemoryReplayStore::restart_safe`].
    since: Option<i64>,
}

impl MemoryReplayStore {
    /// A store holding at most `capacity` proofs at a time.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            since: None,
        }
    }

    /// A store that also refuses proofs dated (`iat`) before it was made:
    /// what it remembers dies with the process, so a proof used just before
    /// a restart could otherwise be used once more just after. Proofs made
    /// after the restart are unaffected; a client whose proof is refused
    /// makes a new one, as for any refusal. Left open: a proof used in the
    /// same second as the restart (a restart takes longer), or dated ahead
    /// of the server's clock (within the leeway) and used in the last
    /// seconds before one. Use a shared store where that matters.
    pub fn restart_safe(capacity: usize) -> Self {
        Self::restart_safe_from(capacity, now())
    }

    /// [`MemoryReplayStore::restart_safe`] for a process that started at
    /// `started_at` (Unix seconds): proofs dated before are refused.
    pub fn restart_safe_from(capacity: usize, started_at: i64) -> Self {
        MemoryReplayStore {
            since: Some(started_at),
            ..Self::new(capacity)
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

    fn remembers_since(&self) -> Option<i64> {
        self.since
    }
}

/// Server-provided nonces (RFC 9449 §9), stateless: a nonce is an HMAC
/// over a time slot, good in its slot and the next, so a proof made in
/// advance is useless and nothing is stored. Instances sharing a key
/// ([`DpopNonces::with_keys`]) accept each other's nonces. Clones share
/// their keys.
#[derive(Clone)]
pub struct DpopNonces {
    /// The first key makes nonces; every key is accepted (a key rotation
    /// gives two).
    keys: Arc<[aws_lc_rs::hmac::Key]>,
    slot_seconds: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("keys", &"<redacted>")
            .field("slot_seconds", &self.slot_seconds)
            .finish()
    }
}

/// How a presented nonce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceStanding {
    /// Of the current slot.
    Current,
    /// Of the previous slot: accepted, and a fresh one is sent back.
    Previous,
    Stale,
    Invalid,
}

impl DpopNonces {
    /// Nonces handed out for `lifetime` each (at least one second) under a
    /// random key of this process's.
    pub fn new(lifetime: Duration) -> Self {
        let mut key = [0u8; 32];
        // A failing system random source is unrecoverable; every nonce
        // would be guessable.
        aws_lc_rs::rand::fill(&mut key).expect("the system's random source");
        Self::with_keys(vec![key], lifetime)
    }

    /// Nonces under `keys` (secret, 32 bytes each): the first makes them,
    /// all are accepted; instances given the same keys accept each other's.
    /// An empty list refuses every nonce.
    pub fn with_keys(keys: Vec<[u8; 32]>, lifetime: Duration) -> Self {
        DpopNonces {
            keys: keys
                .iter()
                .map(|k| aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k))
                .collect(),
            slot_seconds: lifetime.as_secs().max(1) as i64,
        }
    }

    fn slot(&self, at: i64) -> i64 {
        at.div_euclid(self.slot_seconds)
    }

    fn tag(key: &aws_lc_rs::hmac::Key, slot: i64) -> [u8; 16] {
        let mut context = aws_lc_rs::hmac::Context::with_key(key);
        context.update(b"keyport dpop nonce\0");
        context.update(&slot.to_be_bytes());
        let full = context.sign();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full.as_ref()[..16]);
        tag
    }

    fn make(&self, slot: i64) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&slot.to_be_bytes());
        bytes.extend_from_slice(&Self::tag(key, slot));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The nonce to hand out now.
    pub fn current(&self) -> String {
        self.make(self.slot(now()))
    }

    fn standing(&self, nonce: &str, at: i64) -> NonceStanding {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceStanding::Invalid;
        };
        if bytes.len() != 24 {
            return NonceStanding::Invalid;
        }
        let mut slot_bytes = [0u8; 8];
        slot_bytes.copy_from_slice(&bytes[..8]);
        let slot = i64::from_be_bytes(slot_bytes);
        let authentic = self
            .keys
            .iter()
            .any(|key| constant_time_eq(&Self::tag(key, slot), &bytes[8..]));
        if !authentic {
            return NonceStanding::Invalid;
        }
        let current = self.slot(at);
        if slot == current {
            NonceStanding::Current
        } else if slot == current - 1 {
            NonceStanding::Previous
        } else {
            NonceStanding::Stale
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// How DPoP proofs are checked. The defaults: proofs up to 60 s old, 30 s
/// of clock skew, ES256, EdDSA and RS256 keys, an in-memory replay store,
/// no nonces.
#[derive(Clone)]
pub struct DpopSettings {
    pub(crate) max_age: Duration,
    pub(crate) leeway: Duration,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) replay: Arc<dyn ReplayStore>,
    pub(crate) nonces: Option<DpopNonces>,
    /// The keys of proof headers seen before; shared by clones.
    proof_keys: Arc<ProofKeys>,
}

impl std::fmt::Debug for DpopSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopSettings")
            .field("max_age", &self.max_age)
            .field("leeway", &self.leeway)
            .field("algorithms", &self.algorithms)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings {
            max_age: Duration::from_secs(60),
            leeway: Duration::from_secs(30),
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256],
            replay: Arc::new(MemoryReplayStore::default()),
            nonces: None,
            proof_keys: Arc::default(),
        }
    }
}

impl DpopSettings {
    /// How old a proof's `iat` may be (default 60 s).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far a proof's `iat` may be in the future (clock skew), also
    /// added to [`DpopSettings::max_age`] (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The algorithms a proof may use, announced as `algs` in challenges
    /// (default ES256, EdDSA, RS256; others are ignored).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| matches!(a, Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256))
            .collect();
        // The headers kept were checked against the algorithms before.
        self.proof_keys = Arc::default();
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

/// A proof's claims, read without copying: each is kept only as far as the
/// checks need it, so a claim of the wrong type reads as absent (and is
/// refused as missing) rather than making the proof malformed.
#[derive(Deserialize)]
struct ProofClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Claim<'a>>,
    #[serde(borrow, default)]
    htm: Option<Claim<'a>>,
    #[serde(borrow, default)]
    htu: Option<Claim<'a>>,
    #[serde(borrow, default)]
    iat: Option<Claim<'a>>,
    #[serde(borrow, default)]
    ath: Option<Claim<'a>>,
    #[serde(borrow, default)]
    nonce: Option<Claim<'a>>,
}

/// One claim's value: a string (borrowed from the proof unless it has
/// escapes), a number, or anything else.
enum Claim<'a> {
    Text(Cow<'a, str>),
    Integer(i64),
    Number(f64),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Claim<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClaimVisitor(std::marker::PhantomData))
    }
}

struct ClaimVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de> serde::de::Visitor<'de> for ClaimVisitor<'de> {
    type Value = Claim<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Claim<'de>, E> {
        Ok(Claim::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Claim<'de>, E> {
        Ok(Claim::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Claim<'de>, E> {
        Ok(Claim::Text(Cow::Owned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Claim<'de>, E> {
        Ok(Claim::Integer(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Claim<'de>, E> {
        Ok(i64::try_from(v).map_or(Claim::Number(v as f64), Claim::Integer))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Claim<'de>, E> {
        Ok(Claim::Number(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }
    fn visit_unit<E>(self) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }
    fn visit_none<E>(self) -> Result<Claim<'de>, E> {
        Ok(Claim::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Claim<'de>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Claim::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Claim<'de>, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Claim::Other)
    }
}

fn refused(why: impl Into<String>) -> VerifyError {
    VerifyError::InvalidDpopProof(why.into())
}

/// A string claim, when it is one.
fn string<'a>(value: &'a Option<Claim<'_>>) -> Option<&'a str> {
    match value {
        Some(Claim::Text(text)) => Some(text),
        _ => None,
    }
}

/// A numeric claim in whole seconds, when it is a number.
fn seconds(value: &Option<Claim<'_>>) -> Option<i64> {
    match value {
        Some(Claim::Integer(i)) => Some(*i),
        Some(Claim::Number(f)) => Some(*f as i64),
        _ => None,
    }
}

/// The key a proof's header names, once its header passed every check
/// that reads only the header (steps 2 to 7): what verifies its signature,
/// with what algorithm, and its RFC 7638 thumbprint.
struct ProofKey {
    verifier: SignatureCheck,
    jkt: String,
}

enum SignatureCheck {
    /// P-256 and Ed25519: the point parsed and validated once.
    Parsed(ParsedPublicKey),
    /// RSA, through jsonwebtoken.
    Rsa(DecodingKey),
}

impl ProofKey {
    /// Whether `signature` (base64url) is this key's over `message`;
    /// `Err` when it is not base64url at all (a malformed proof).
    fn verifies(&self, message: &[u8], signature: &str) -> Result<bool, ()> {
        match &self.verifier {
            SignatureCheck::Parsed(key) => {
                let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| ())?;
                Ok(key.verify_sig(message, &signature).is_ok())
            }
            SignatureCheck::Rsa(key) => {
                jsonwebtoken::crypto::verify(signature, message, key, Algorithm::RS256)
                    .map_err(|_| ())
            }
        }
    }
}

/// Proof headers already checked, by their base64url text: a client signs
/// its proofs with one key, so every proof it sends starts with the same
/// header, and a hit skips the header's JSON, the JWK's checks, the key's
/// parsing (for P-256, validating the point) and the thumbprint. Only
/// headers that passed are kept; the text is the whole header, so a hit
/// can only be the same key. Bounded: when full it starts over.
#[derive(Default)]
struct ProofKeys {
    keys: RwLock<HashMap<Box<str>, Arc<ProofKey>>>,
}

/// Distinct proof headers kept (a few hundred bytes each).
const PROOF_KEYS_CAPACITY: usize = 4096;

impl ProofKeys {
    fn get(&self, header: &str) -> Option<Arc<ProofKey>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(header)
            .cloned()
    }

    fn insert(&self, header: &str, key: Arc<ProofKey>) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= PROOF_KEYS_CAPACITY {
            keys.clear();
        }
        keys.insert(header.into(), key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What a proof must fit: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// The request's method (`htm`).
    pub method: &'a str,
    /// The URL the client sent the request to, absolute; what `htu` must
    /// name (query and fragment are ignored).
    pub url: &'a str,
    /// The access token presented with the proof, at a resource (`ath`,
    /// step 12); `None` at a token endpoint.
    pub access_token: Option<&'a str>,
    /// The thumbprint that token is bound to (`cnf.jkt`); `None` at a
    /// token endpoint.
    pub jkt: Option<&'a str>,
}

/// A proof that passed every check, replay included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The RFC 7638 thumbprint of the proof's key: what a token endpoint
    /// binds the token it issues to.
    pub jkt: String,
    /// A fresh nonce to send back in `DPoP-Nonce` when the proof carried
    /// the previous one; `None`: nothing to send.
    pub fresh_nonce: Option<String>,
}

impl DpopSettings {
    /// RFC 9449 §4.3 for one request: `proofs` are every `DPoP` header it
    /// sent. A resource server gets this through
    /// [`Verifier::authenticate`](crate::Verifier::authenticate); an
    /// authorization server calls it at its token endpoint (without an
    /// access token) to learn the key to bind a token to.
    ///
    /// The order is the cheapest first: the header (checked once per key,
    /// steps 2 to 7), then the claims against the request (steps 8 to 12),
    /// then the signature (step 6), and last the replay store (§11.1), so
    /// that a proof refused for any other reason costs no signature check
    /// and uses up no `jti`.
    pub async fn check_proof(
        &self,
        proofs: &[&str],
        target: &ProofTarget<'_>,
    ) -> Result<CheckedProof, VerifyError> {
        let at = now();
        let leeway = self.leeway.as_secs() as i64;
        let max_age = self.max_age.as_secs() as i64;
        // Step 1: exactly one DPoP header.
        let proof = match proofs {
            [] => return Err(refused("a DPoP proof is required (the DPoP header)")),
            [one] => one.trim(),
            _ => {
                return Err(refused(
                    "send exactly one DPoP header (RFC 9449 §4.3 step 1)",
                ));
            }
        };
        let malformed =
            || refused("the DPoP proof is not a well-formed JWT (RFC 9449 §4.3 step 2)");
        // Step 2: a single well-formed JWT.
        if proof.len() > crate::error::MAX_TOKEN_LEN {
            return Err(malformed());
        }
        let mut parts = proof.split('.');
        let (Some(header), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        // Steps 2 to 7 on the header, once per key.
        let key = match self.proof_keys.get(header) {
            Some(key) => key,
            None => {
                let key = Arc::new(self.proof_key(header)?);
                self.proof_keys.insert(header, Arc::clone(&key));
                key
            }
        };
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| malformed())?;
        let claims: ProofClaims<'_> = serde_json::from_slice(&payload).map_err(|_| malformed())?;
        // Step 3: the required claims.
        let jti = string(&claims.jti)
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| {
                refused("the DPoP proof needs a jti of 1 to 256 characters (RFC 9449 §4.2)")
            })?;
        let htm = string(&claims.htm)
            .ok_or_else(|| refused("the DPoP proof has no htm claim (RFC 9449 §4.2)"))?;
        let htu = string(&claims.htu)
            .ok_or_else(|| refused("the DPoP proof has no htu claim (RFC 9449 §4.2)"))?;
        let iat = seconds(&claims.iat)
            .ok_or_else(|| refused("the DPoP proof has no iat claim (RFC 9449 §4.2)"))?;
        // Step 8: htm.
        if htm != target.method {
            return Err(refused(format!(
                "the DPoP proof is for another method: htm must be {} (RFC 9449 §4.3 step 8)",
                target.method
            )));
        }
        // Step 9: htu, normalised, without query and fragment.
        if !same_target_uri(htu, target.url) {
            let expected = target.url.split(['?', '#']).next().unwrap_or(target.url);
            return Err(refused(format!(
                "the DPoP proof is for another URL: htu must be {expected} (RFC 9449 §4.3 step 9)"
            )));
        }
        // Step 10: the server's nonce, when it asks for one.
        let mut fresh_nonce = None;
        if let Some(nonces) = &self.nonces {
            let message = match string(&claims.nonce) {
                None => Some("this server requires a DPoP nonce: retry with the one in DPoP-Nonce"),
                Some(nonce) => match nonces.standing(nonce, at) {
                    NonceStanding::Current => None,
                    NonceStanding::Previous => {
                        fresh_nonce = Some(nonces.current());
                        None
                    }
                    NonceStanding::Stale => {
                        Some("the DPoP nonce is stale: retry with the one in DPoP-Nonce")
                    }
                    NonceStanding::Invalid => Some(
                        "the DPoP nonce is not one this server issued: retry with the one in DPoP-Nonce",
                    ),
                },
            };
            if let Some(message) = message {
                return Err(VerifyError::UseDpopNonce {
                    nonce: nonces.current(),
                    message,
                });
            }
        }
        // Step 11: iat within the window.
        if iat > at + leeway {
            return Err(refused(
                "the DPoP proof's iat is in the future (RFC 9449 §4.3 step 11)",
            ));
        }
        if iat < at - max_age - leeway {
            return Err(refused(format!(
                "the DPoP proof is too old: iat must be within {max_age} seconds (RFC 9449 §4.3 step 11)"
            )));
        }
        // Step 12: at a resource, `ath` and the token's binding.
        if let Some(token) = target.access_token {
            let Some(ath) = string(&claims.ath) else {
                return Err(refused(
                    "the DPoP proof has no ath claim, the hash of the access token (RFC 9449 §4.3 step 12)",
                ));
            };
            let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
            let mut presented = [0u8; 32];
            let decoded = URL_SAFE_NO_PAD.decode_slice(ath, &mut presented);
            if decoded != Ok(32) || !constant_time_eq(&presented, expected.as_ref()) {
                return Err(refused(
                    "the DPoP proof's ath is not the hash of this access token (RFC 9449 §4.3 step 12)",
                ));
            }
        }
        if let Some(bound) = target.jkt
            && !constant_time_eq(bound.as_bytes(), key.jkt.as_bytes())
        {
            return Err(refused(
                "the DPoP proof is signed by another key than the one the access token is bound to (RFC 9449 §4.3 step 12)",
            ));
        }
        // Step 6: the signature, with the header's key, over the header
        // and claims as sent.
        let message = &proof[..header.len() + 1 + payload_b64.len()];
        match key.verifies(message.as_bytes(), signature) {
            Ok(true) => {}
            Ok(false) => {
                return Err(refused(
                    "the DPoP proof's signature does not verify with its jwk (RFC 9449 §4.3 step 6)",
                ));
            }
            Err(()) => return Err(malformed()),
        }
        // §11.1: each proof once within its window. Last, so a proof
        // refused for another reason does not use up its jti.
        if self
            .replay
            .remembers_since()
            .is_some_and(|since| iat < since)
        {
            return Err(refused(
                "the DPoP proof was made before the server started, so whether it was used \
                 before cannot be known: make a new proof (RFC 9449 §11.1)",
            ));
        }
        let expires_at = iat.max(at) + max_age + leeway;
        let first = self
            .replay
            .first_use(replay_id(&key.jkt, jti), expires_at)
            .await
            .map_err(|e| {
                log::warn!("{e}");
                VerifyError::ReplayCheckUnavailable
            })?;
        if !first {
            return Err(refused(
                "the DPoP proof was used before: make a new proof, with a new jti, for each request (RFC 9449 §11.1)",
            ));
        }
        Ok(CheckedProof {
            jkt: key.jkt.clone(),
            fresh_nonce,
        })
    }

    /// Steps 2 to 7 on a proof's header (base64url): JSON with an allowed
    /// asymmetric algorithm (never `none` or HMAC; read from the raw header
    /// so that an unknown one is told apart from a malformed proof), no
    /// `crit`, `typ` `dpop+jwt`, and a `jwk` holding a public key only, of
    /// the algorithm's type: the key parsed, and its thumbprint.
    fn proof_key(&self, header: &str) -> Result<ProofKey, VerifyError> {
        let malformed =
            || refused("the DPoP proof is not a well-formed JWT (RFC 9449 §4.3 step 2)");
        let invalid_key = || {
            refused(
                "the DPoP proof's jwk is refused: the JWK is not a valid public key (RFC 9449 §4.3 step 7)",
            )
        };
        let raw = raw_header(header).ok_or_else(malformed)?;
        let alg = raw
            .get("alg")
            .and_then(|a| a.as_str())
            .ok_or_else(malformed)?;
        let algorithm = match alg {
            "ES256" => Algorithm::ES256,
            "EdDSA" => Algorithm::EdDSA,
            "RS256" => Algorithm::RS256,
            _ => return Err(self.alg_refused()),
        };
        if !self.algorithms.contains(&algorithm) {
            return Err(self.alg_refused());
        }
        // RFC 7515 §4.1.11: no extension is understood here.
        if raw.get("crit").is_some() {
            return Err(refused(
                "the DPoP proof has critical header parameters this server does not understand",
            ));
        }
        let parsed: jsonwebtoken::Header =
            serde_json::from_value(raw.clone()).map_err(|_| malformed())?;
        // Step 4: typ.
        if parsed.typ.as_deref() != Some(DPOP_TYP) {
            return Err(refused(
                "the DPoP proof's typ must be dpop+jwt (RFC 9449 §4.3 step 4)",
            ));
        }
        // Steps 3 and 7: a `jwk` header holding a public key only.
        let raw_jwk = raw
            .get("jwk")
            .ok_or_else(|| refused("the DPoP proof has no jwk header (RFC 9449 §4.3 step 3)"))?;
        if let Some(problem) = jwk_problem(raw_jwk) {
            return Err(refused(format!(
                "the DPoP proof's jwk is refused: {problem} (RFC 9449 §4.3 step 7)"
            )));
        }
        let jwk = parsed.jwk.as_ref().ok_or_else(invalid_key)?;
        // Step 6: the key must be of the algorithm's type.
        if key_algorithm(jwk) != Some(algorithm) {
            return Err(refused(
                "the DPoP proof's alg does not match its jwk (RFC 9449 §4.3 step 6)",
            ));
        }
        let verifier = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                for coordinate in [&ec.x, &ec.y] {
                    let bytes = URL_SAFE_NO_PAD
                        .decode(coordinate)
                        .map_err(|_| invalid_key())?;
                    if bytes.len() != 32 {
                        return Err(invalid_key());
                    }
                    point.extend_from_slice(&bytes);
                }
                SignatureCheck::Parsed(
                    ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .map_err(|_| invalid_key())?,
                )
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                let bytes = URL_SAFE_NO_PAD.decode(&okp.x).map_err(|_| invalid_key())?;
                SignatureCheck::Parsed(
                    ParsedPublicKey::new(&signature::ED25519, bytes).map_err(|_| invalid_key())?,
                )
            }
            _ => SignatureCheck::Rsa(DecodingKey::from_jwk(jwk).map_err(|_| invalid_key())?),
        };
        let jkt = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| invalid_key())?;
        Ok(ProofKey { verifier, jkt })
    }

    fn alg_refused(&self) -> VerifyError {
        refused(format!(
            "the DPoP proof's alg must be one of {} (RFC 9449 §4.3 step 5)",
            self.algs()
        ))
    }
}

/// SHA-256 of the key's thumbprint and the `jti`: what the replay store
/// keeps (fixed size, whatever the `jti`; two clients may pick the same
/// `jti`, one key may not).
pub fn replay_id(jkt: &str, jti: &str) -> [u8; 32] {
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
fn raw_header(header: &str) -> Option<serde_json::Value> {
    let header = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice(&header).ok()
}

/// Why a proof's `jwk` is refused, before it is used: private or symmetric
/// members, a `use` other than signing, an RSA key outside 2048 to 8192
/// bits.
fn jwk_problem(jwk: &serde_json::Value) -> Option<String> {
    let Some(jwk) = jwk.as_object() else {
        return Some("a JWK must be a JSON object".to_owned());
    };
    if let Some(member) = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .find(|member| jwk.contains_key(**member))
    {
        return Some(format!(
            "the JWK holds a private or symmetric key member (`{member}`): send the public key only"
        ));
    }
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Some("the JWK's `use` must be `sig`".to_owned());
    }
    if jwk.get("kty").and_then(|k| k.as_str()) == Some("RSA") {
        let n = jwk
            .get("n")
            .and_then(|n| n.as_str())
            .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
            .unwrap_or_default();
        let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
        if !(2048..=8192).contains(&bits) || n.first() == Some(&0) {
            return Some("the RSA key must be 2048 to 8192 bits".to_owned());
        }
    }
    None
}

/// Whether `htu` names `expected`: scheme and host case-insensitively,
/// default ports, the path after RFC 3986 §6.2.2 normalisation, without
/// query and fragment (RFC 9449 §4.3 step 9).
pub fn same_target_uri(htu: &str, expected: &str) -> bool {
    if htu == expected {
        // The usual case, one parse: the same text names the same URL
        // when it is one, without user information.
        return reqwest::Url::parse(htu)
            .is_ok_and(|url| url.username().is_empty() && url.password().is_none());
    }
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
    fn nonces_hold_for_their_slot_and_the_next_and_only_under_their_key() {
        let nonces = DpopNonces::with_keys(vec![[7u8; 32]], Duration::from_secs(60));
        let at = 1_000_020;
        let current = nonces.make(nonces.slot(at));
        assert_eq!(nonces.standing(&current, at), NonceStanding::Current);
        assert_eq!(nonces.standing(&current, at + 60), NonceStanding::Previous);
        assert_eq!(nonces.standing(&current, at + 120), NonceStanding::Stale);
        let other = DpopNonces::with_keys(vec![[8u8; 32]], Duration::from_secs(60));
        assert_eq!(other.standing(&current, at), NonceStanding::Invalid);
        let rotated = DpopNonces::with_keys(vec![[8u8; 32], [7u8; 32]], Duration::from_secs(60));
        assert_eq!(rotated.standing(&current, at), NonceStanding::Current);
        assert_eq!(nonces.standing("garbage!", at), NonceStanding::Invalid);
        let random = DpopNonces::new(Duration::from_secs(3600));
        assert_eq!(
            random.standing(&random.current(), now()),
            NonceStanding::Current
        );
        assert_eq!(random.standing(&current, at), NonceStanding::Invalid);
    }

    /// A DPoP proof by a new Ed25519 key, with `claims`.
    fn proof(claims: serde_json::Value) -> String {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("a key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key");
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.typ = Some(DPOP_TYP.into());
        header.jwk = Some(
            serde_json::from_value(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }))
            .expect("a JWK"),
        );
        let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        jsonwebtoken::encode(&header, &claims, &key).expect("a proof")
    }

    #[tokio::test]
    async fn a_proof_at_a_token_endpoint_with_last_periods_nonce_passes_once_with_a_fresh_nonce() {
        const URL: &str = "https://auth.example.com/oauth/token";
        let nonces = DpopNonces::with_keys(vec![[7u8; 32]], Duration::from_secs(3600));
        let settings = DpopSettings::default().nonces(nonces.clone());
        let target = ProofTarget {
            method: "POST",
            url: URL,
            access_token: None,
            jkt: None,
        };
        let with_nonce = |jti: &str, nonce: &str| {
            proof(serde_json::json!({
                "jti": jti, "htm": "POST", "htu": URL, "iat": now(), "nonce": nonce,
            }))
        };
        let previous = with_nonce("j1", &nonces.make(nonces.slot(now()) - 1));
        let checked = settings.check_proof(&[&previous], &target).await.unwrap();
        assert_eq!(checked.fresh_nonce, Some(nonces.current()));
        assert_eq!(checked.jkt.len(), 43, "a SHA-256 thumbprint");
        let replayed = settings.check_proof(&[&previous], &target).await;
        assert!(
            matches!(&replayed, Err(VerifyError::InvalidDpopProof(m)) if m.contains("used before")),
            "{replayed:?}"
        );
        let current = with_nonce("j2", &nonces.current());
        let checked = settings.check_proof(&[&current], &target).await.unwrap();
        assert_eq!(checked.fresh_nonce, None);
        let stale = with_nonce("j3", &nonces.make(nonces.slot(now()) - 2));
        assert!(matches!(
            settings.check_proof(&[&stale], &target).await,
            Err(VerifyError::UseDpopNonce { nonce, .. }) if nonce == nonces.current()
        ));
    }

    /// A store in memory made restart-safe refuses proofs dated before it
    /// was made (one may have been used before a restart), and takes a
    /// proof made after it once.
    #[tokio::test]
    async fn a_restart_safe_memory_store_refuses_proofs_made_before_it() {
        const URL: &str = "https://auth.example.com/oauth/token";
        let settings = DpopSettings::default().replay_store(Arc::new(
            MemoryReplayStore::restart_safe_from(100, now() - 3),
        ));
        let target = ProofTarget {
            method: "POST",
            url: URL,
            access_token: None,
            jkt: None,
        };
        let made_at = |jti: &str, iat: i64| {
            proof(serde_json::json!({"jti": jti, "htm": "POST", "htu": URL, "iat": iat}))
        };
        let before = made_at("j1", now() - 5);
        let same_second = made_at("j0", now() - 3);
        assert!(settings.check_proof(&[&same_second], &target).await.is_ok());
        let refused = settings.check_proof(&[&before], &target).await;
        assert!(
            matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("before the server started")),
            "{refused:?}"
        );
        let after = made_at("j2", now());
        assert!(settings.check_proof(&[&after], &target).await.is_ok());
        assert!(settings.check_proof(&[&after], &target).await.is_err());
        // The plain store keeps no such date.
        let plain = DpopSettings::default().replay_store(Arc::new(MemoryReplayStore::new(100)));
        assert!(
            plain
                .check_proof(&[&made_at("j3", now() - 5)], &target)
                .await
                .is_ok()
        );
    }

    /// A client's key of each kind DPoP allows: its public JWK, and what
    /// signs a proof's header and claims with it.
    struct ClientKey {
        alg: &'static str,
        jwk: serde_json::Value,
        sign: Signer,
    }

    /// Signs bytes with a client's private key.
    type Signer = Box<dyn Fn(&[u8]) -> Vec<u8>>;

    impl ClientKey {
        fn es256() -> Self {
            use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a key");
            let point = pair.public_key().as_ref().to_vec();
            ClientKey {
                alg: "ES256",
                jwk: serde_json::json!({"kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
                sign: Box::new(move |input| {
                    let rng = aws_lc_rs::rand::SystemRandom::new();
                    pair.sign(&rng, input)
                        .expect("a signature")
                        .as_ref()
                        .to_vec()
                }),
            }
        }

        fn rs256() -> Self {
            use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("a key");
            let public = pair.public_key();
            let jwk = serde_json::json!({"kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero())});
            ClientKey {
                alg: "RS256",
                jwk,
                sign: Box::new(move |input| {
                    let rng = aws_lc_rs::rand::SystemRandom::new();
                    let mut signature = vec![0; pair.public_modulus_len()];
                    pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                        .expect("a signature");
                    signature
                }),
            }
        }

        fn header(&self) -> serde_json::Value {
            serde_json::json!({"typ": DPOP_TYP, "alg": self.alg, "jwk": self.jwk})
        }

        /// A proof with `header` and `claims`, signed by this key.
        fn sign(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = (self.sign)(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        fn proof(&self, jti: &str) -> String {
            self.sign(&self.header(), &claims_for(jti))
        }
    }

    const RESOURCE: &str = "https://api.example.com/protected";

    fn claims_for(jti: &str) -> serde_json::Value {
        serde_json::json!({"jti": jti, "htm": "GET", "htu": RESOURCE, "iat": now()})
    }

    const AT_RESOURCE: ProofTarget<'static> = ProofTarget {
        method: "GET",
        url: RESOURCE,
        access_token: None,
        jkt: None,
    };

    /// The proof's key is parsed once per header: later proofs with the
    /// same header are checked with the kept key, and a proof whose header
    /// names one key but is signed by another is still refused, for each
    /// kind of key.
    #[tokio::test]
    async fn a_proofs_key_is_parsed_once_per_header_and_still_checks_every_signature() {
        for key in [ClientKey::es256(), ClientKey::rs256(), ed25519_key()] {
            let settings = DpopSettings::default();
            let first = settings
                .check_proof(&[&key.proof("j1")], &AT_RESOURCE)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", key.alg));
            assert_eq!(settings.proof_keys.len(), 1, "{}", key.alg);
            let second = settings
                .check_proof(&[&key.proof("j2")], &AT_RESOURCE)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", key.alg));
            assert_eq!(second.jkt, first.jkt);
            assert_eq!(settings.proof_keys.len(), 1, "{} kept once", key.alg);
            // Another key of the same kind signs under the first key's header.
            let other = match key.alg {
                "ES256" => ClientKey::es256(),
                "RS256" => ClientKey::rs256(),
                _ => ed25519_key(),
            };
            let forged = other.sign(&key.header(), &claims_for("j3"));
            let refused = settings.check_proof(&[&forged], &AT_RESOURCE).await;
            assert!(
                matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("signature does not verify")),
                "{}: {refused:?}",
                key.alg
            );
            // The forged proof used up nothing: j3 from the right key passes.
            assert!(
                settings
                    .check_proof(&[&key.proof("j3")], &AT_RESOURCE)
                    .await
                    .is_ok()
            );
        }
    }

    fn ed25519_key() -> ClientKey {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("a key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key");
        ClientKey {
            alg: "EdDSA",
            jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
            sign: Box::new(move |input| pair.sign(input).as_ref().to_vec()),
        }
    }

    /// A header that fails a check is not kept (each of its proofs is
    /// refused in full), and one kept under other allowed algorithms is
    /// forgotten when the algorithms change.
    #[tokio::test]
    async fn refused_headers_are_not_kept_and_the_kept_keys_follow_the_allowed_algorithms() {
        let key = ClientKey::es256();
        let settings = DpopSettings::default();
        let mut header = key.header();
        header["typ"] = "JWT".into();
        for jti in ["j1", "j2"] {
            let refused = settings
                .check_proof(&[&key.sign(&header, &claims_for(jti))], &AT_RESOURCE)
                .await;
            assert!(
                matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("typ")),
                "{refused:?}"
            );
        }
        assert_eq!(settings.proof_keys.len(), 0);
        let mut off_curve = key.header();
        off_curve["jwk"]["y"] = URL_SAFE_NO_PAD.encode([1u8; 32]).into();
        let refused = settings
            .check_proof(&[&key.sign(&off_curve, &claims_for("j3"))], &AT_RESOURCE)
            .await;
        assert!(
            matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("not a valid public key")),
            "{refused:?}"
        );
        assert_eq!(settings.proof_keys.len(), 0);

        assert!(
            settings
                .check_proof(&[&key.proof("j4")], &AT_RESOURCE)
                .await
                .is_ok()
        );
        assert_eq!(settings.proof_keys.len(), 1);
        let eddsa_only = settings.algorithms([Algorithm::EdDSA]);
        let refused = eddsa_only
            .check_proof(&[&key.proof("j5")], &AT_RESOURCE)
            .await;
        assert!(
            matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("alg must be one of EdDSA")),
            "{refused:?}"
        );
    }

    /// The kept keys are bounded: past the capacity the cache starts over.
    #[tokio::test]
    async fn the_kept_proof_keys_are_bounded() {
        let settings = DpopSettings::default();
        let key = ClientKey::es256();
        settings
            .check_proof(&[&key.proof("j1")], &AT_RESOURCE)
            .await
            .expect("a proof");
        let kept = settings
            .proof_keys
            .get(key.proof("j2").split('.').next().unwrap());
        let kept = kept.expect("the header is kept");
        for n in 0..PROOF_KEYS_CAPACITY + 10 {
            settings
                .proof_keys
                .insert(&format!("header {n}"), Arc::clone(&kept));
            assert!(settings.proof_keys.len() <= PROOF_KEYS_CAPACITY);
        }
    }

    /// The claims are held against the request before the signature is
    /// checked: a proof for another method is refused for that, whatever
    /// its signature, and its `jti` is not used up.
    #[tokio::test]
    async fn a_proofs_claims_are_checked_before_its_signature() {
        let settings = DpopSettings::default();
        let key = ClientKey::es256();
        let mut claims = claims_for("j1");
        claims["htm"] = "POST".into();
        let proof = key.sign(&key.header(), &claims);
        let (signed, _) = proof.rsplit_once('.').unwrap();
        let unsigned = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        let refused = settings.check_proof(&[&unsigned], &AT_RESOURCE).await;
        assert!(
            matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("htm must be GET")),
            "{refused:?}"
        );
        // With the right claims, the same bad signature is what is refused.
        let proof = key.proof("j1");
        let (signed, _) = proof.rsplit_once('.').unwrap();
        let unsigned = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        let refused = settings.check_proof(&[&unsigned], &AT_RESOURCE).await;
        assert!(
            matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains("signature does not verify")),
            "{refused:?}"
        );
        assert!(settings.check_proof(&[&proof], &AT_RESOURCE).await.is_ok());
    }

    /// Claims of the wrong type read as missing; `iat` may be a float.
    #[tokio::test]
    async fn claims_of_the_wrong_type_are_refused_as_missing() {
        let settings = DpopSettings::default();
        let key = ClientKey::es256();
        for (claim, value, word) in [
            ("jti", serde_json::json!(7), "jti"),
            ("htm", serde_json::json!(["GET"]), "htm"),
            ("htu", serde_json::json!({"u": RESOURCE}), "htu"),
            ("iat", serde_json::json!("now"), "iat"),
            ("jti", serde_json::Value::Null, "jti"),
        ] {
            let mut claims = claims_for("j1");
            claims[claim] = value;
            let refused = settings
                .check_proof(&[&key.sign(&key.header(), &claims)], &AT_RESOURCE)
                .await;
            assert!(
                matches!(&refused, Err(VerifyError::InvalidDpopProof(m)) if m.contains(word)),
                "{claim}: {refused:?}"
            );
        }
        let mut claims = claims_for("j2");
        claims["iat"] = serde_json::json!(now() as f64 + 0.5);
        assert!(
            settings
                .check_proof(&[&key.sign(&key.header(), &claims)], &AT_RESOURCE)
                .await
                .is_ok()
        );
    }

    #[test]
    fn a_proofs_jwk_is_refused_with_private_members_another_use_or_a_small_rsa_key() {
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert_eq!(jwk_problem(&ec), None);
        let mut private = ec.clone();
        private["d"] = "AA".into();
        assert!(jwk_problem(&private).unwrap().contains("`d`"));
        let mut encryption = ec.clone();
        encryption["use"] = "enc".into();
        assert!(jwk_problem(&encryption).unwrap().contains("use"));
        let rsa = |bytes: usize| serde_json::json!({"kty": "RSA", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(vec![0xc5u8; bytes])});
        assert!(jwk_problem(&rsa(128)).unwrap().contains("2048"));
        assert_eq!(jwk_problem(&rsa(256)), None);
        assert!(jwk_problem(&serde_json::json!("a string")).is_some());
    }
}
