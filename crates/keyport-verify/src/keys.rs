//! The issuer's public keys: fetched from its JWKS, kept in memory,
//! refreshed in the background when old, fetched again for an unknown `kid`
//! at most once per interval, and kept while the issuer is unreachable.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::VerifyError;

/// Where a [`Verifier`](crate::Verifier) finds the issuer's public keys.
///
/// The default is the issuer's JWKS, fetched and cached as [`KeySettings`]
/// says. Implement it when the keys are at hand another way: an
/// authorization server validating its own tokens hands over the keys it
/// holds in memory ([`StaticKeys`] is the simplest such source), and never
/// makes an HTTP request to itself.
pub trait KeySource: Send + Sync + 'static {
    /// The key named `kid`. Answer [`KeyLookup::Ready`] whenever the answer
    /// is known without waiting (the hot path: no allocation, no await);
    /// [`KeyLookup::Pending`] only when it takes I/O, such as a fetch.
    /// Refuse an unknown `kid` with [`VerifyError::UnknownKey`], and keys
    /// that cannot be had at all with [`VerifyError::KeysUnavailable`].
    fn key<'a>(&'a self, kid: &'a str) -> KeyLookup<'a>;
}

/// A [`KeySource`]'s answer: now, or after some I/O.
pub enum KeyLookup<'a> {
    /// The key (or why there is none), known now.
    Ready(Result<Arc<PublicKey>, VerifyError>),
    /// The key once the future completes (a fetch).
    Pending(Pin<Box<dyn Future<Output = Result<Arc<PublicKey>, VerifyError>> + Send + 'a>>),
}

impl std::fmt::Debug for KeyLookup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyLookup::Ready(answer) => f.debug_tuple("Ready").field(answer).finish(),
            KeyLookup::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// One of the issuer's public keys and the one algorithm it verifies (a
/// token cannot choose another).
#[derive(Clone)]
pub struct PublicKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// `key`, verifying `algorithm` only; `None` unless the algorithm is
    /// one Keyport signs with (ES256, EdDSA, RS256): never `none` or HMAC.
    pub fn new(algorithm: Algorithm, key: DecodingKey) -> Option<Self> {
        matches!(
            algorithm,
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
        )
        .then_some(PublicKey { key, algorithm })
    }

    /// The key of a public JWK (P-256, Ed25519 or RSA), with the algorithm
    /// its type implies; `None` for any other key (symmetric, another
    /// curve, a malformed one).
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        let algorithm = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec)
                if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(okp)
                if okp.curve == jsonwebtoken::jwk::EllipticCurve::Ed25519 =>
            {
                Algorithm::EdDSA
            }
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
            _ => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(PublicKey { key, algorithm })
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// Keys held in memory, replaced as a whole when they change: what an
/// authorization server feeds its own verifier, or a resource server that
/// gets the issuer's keys some other way. Clones share the keys.
#[derive(Clone, Default)]
pub struct StaticKeys {
    keys: Arc<std::sync::RwLock<Arc<KeysByKid>>>,
}

/// Keys by `kid`.
type KeysByKid = HashMap<String, Arc<PublicKey>>;

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("StaticKeys")
            .field("kids", &keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StaticKeys {
    /// No keys yet: every token is refused as naming an unknown key.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usable keys of a JWKS document (as [`PublicKey::from_jwk`]
    /// reads them; keys without a `kid` are skipped).
    pub fn from_jwks(jwks: &jsonwebtoken::jwk::JwkSet) -> Self {
        let keys = Self::new();
        keys.replace(jwks.keys.iter().filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            Some((kid, PublicKey::from_jwk(jwk)?))
        }));
        keys
    }

    /// Replaces every key held by `keys` (`kid`, key), at once: a token is
    /// checked against the old set or the new one, never a mix.
    pub fn replace(&self, keys: impl IntoIterator<Item = (String, PublicKey)>) {
        let keys = keys
            .into_iter()
            .map(|(kid, key)| (kid, Arc::new(key)))
            .collect();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }
}

impl KeySource for StaticKeys {
    fn key<'a>(&'a self, kid: &'a str) -> KeyLookup<'a> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        KeyLookup::Ready(keys.get(kid).cloned().ok_or(VerifyError::UnknownKey))
    }
}

/// A JWKS larger than this is not a JWKS.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// How keys are fetched and kept. The defaults suit a resource server in
/// front of Keyport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
    /// A token naming an unknown `kid` fetches the keys again at most this
    /// often (default 30 s).
    pub min_refresh: Duration,
    /// Keys are kept at least this long, whatever `Cache-Control` says
    /// (default 60 s)...
    pub min_age: Duration,
    /// ...and at most this long before a background refresh (default 1 h).
    pub max_age: Duration,
    /// How long one fetch may take (default 5 s).
    pub timeout: Duration,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            min_refresh: Duration::from_secs(30),
            min_age: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Held {
    keys: Option<Arc<HashMap<String, Arc<PublicKey>>>>,
    fetched_at: Option<Instant>,
    keep_for: Duration,
    last_attempt: Option<Instant>,
    refreshing: bool,
}

/// The keys at one JWKS URL.
pub(crate) struct JwksCache {
    client: reqwest::Client,
    jwks_uri: String,
    settings: KeySettings,
    held: Mutex<Held>,
    /// One fetch at a time: a burst of tokens with a new `kid` makes one
    /// request to the issuer.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl JwksCache {
    pub fn new(client: reqwest::Client, jwks_uri: String, settings: KeySettings) -> Self {
        JwksCache {
            client,
            jwks_uri,
            settings,
            held: Mutex::new(Held::default()),
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// How many times the JWKS was requested.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The key named `kid`. Waits for a fetch only when no key held can
    /// answer; keys past their age are refreshed in the background.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<PublicKey>, VerifyError> {
        let (found, stale, may_fetch, refreshing, had_keys) = self.look(kid);
        if let Some(key) = found {
            if stale && may_fetch && !refreshing {
                self.refresh_in_background();
            }
            return Ok(key);
        }
        if !may_fetch && !refreshing {
            return Err(if had_keys {
                VerifyError::UnknownKey
            } else {
                VerifyError::KeysUnavailable("the last attempt failed moments ago".into())
            });
        }
        let _one = self.fetching.lock().await;
        let (found, _, may_fetch, _, had_keys) = self.look(kid);
        if let Some(key) = found {
            return Ok(key);
        }
        if !may_fetch {
            return Err(if had_keys {
                VerifyError::UnknownKey
            } else {
                VerifyError::KeysUnavailable("the last attempt failed moments ago".into())
            });
        }
        match self.fetch().await {
            Ok(keys) => keys.get(kid).cloned().ok_or(VerifyError::UnknownKey),
            Err(reason) if had_keys => {
                log::warn!("fetching {} failed: {reason}", self.jwks_uri);
                Err(VerifyError::UnknownKey)
            }
            Err(reason) => Err(VerifyError::KeysUnavailable(reason)),
        }
    }

    /// (the key, whether the keys are past their age, whether a fetch is
    /// allowed now, whether one runs in the background, whether any keys
    /// are held).
    fn look(&self, kid: &str) -> (Option<Arc<PublicKey>>, bool, bool, bool, bool) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let found = held.keys.as_ref().and_then(|keys| keys.get(kid).cloned());
        let stale = held
            .fetched_at
            .is_none_or(|at| at.elapsed() >= held.keep_for);
        let may_fetch = held
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.settings.min_refresh);
        (
            found,
            stale,
            may_fetch,
            held.refreshing,
            held.keys.is_some(),
        )
    }

    fn refresh_in_background(self: &Arc<Self>) {
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.refreshing {
                return;
            }
            held.refreshing = true;
        }
        let source = Arc::clone(self);
        tokio::spawn(async move {
            let _one = source.fetching.lock().await;
            if let Err(reason) = source.fetch().await {
                log::warn!("refreshing {} failed: {reason}", source.jwks_uri);
            }
            source
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refreshing = false;
        });
    }

    /// Fetches the JWKS and holds its usable keys; on failure the keys held
    /// stay.
    async fn fetch(&self) -> Result<Arc<HashMap<String, Arc<PublicKey>>>, String> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt = Some(Instant::now());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (keys, keep_for) = self.download().await?;
        let keys = Arc::new(keys);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.keys = Some(Arc::clone(&keys));
        held.fetched_at = Some(Instant::now());
        held.keep_for = keep_for;
        Ok(keys)
    }

    async fn download(&self) -> Result<(HashMap<String, Arc<PublicKey>>, Duration), String> {
        let mut response = self
            .client
            .get(&self.jwks_uri)
            .header("accept", "application/jwk-set+json, application/json")
            .timeout(self.settings.timeout)
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        if !response.status().is_success() {
            return Err(format!("it answered {}", response.status().as_u16()));
        }
        let keep_for = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.settings.min_age * 5)
            .clamp(self.settings.min_age, self.settings.max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{e}"))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
        }
        Ok((usable_keys(&body)?, keep_for))
    }
}

/// The default [`KeySource`]: the issuer's JWKS, fetched and cached.
pub(crate) struct JwksKeys(pub Arc<JwksCache>);

impl KeySource for JwksKeys {
    fn key<'a>(&'a self, kid: &'a str) -> KeyLookup<'a> {
        let (found, stale, may_fetch, refreshing, _) = self.0.look(kid);
        match found {
            Some(key) => {
                if stale && may_fetch && !refreshing {
                    self.0.refresh_in_background();
                }
                KeyLookup::Ready(Ok(key))
            }
            None => KeyLookup::Pending(Box::pin(self.0.key(kid))),
        }
    }
}

/// The keys of a JWKS document that can verify a Keyport token, by `kid`;
/// keys without a `kid`, private or symmetric keys and other algorithms are
/// skipped (RFC 7517 §5).
pub(crate) fn usable_keys(body: &[u8]) -> Result<HashMap<String, Arc<PublicKey>>, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the JWKS is not JSON")?;
    let listed = document
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("the JWKS has no `keys` list")?;
    let mut keys = HashMap::new();
    // One by one: a key of a kind this crate does not know is skipped, not
    // a reason to refuse the others.
    for jwk in listed
        .iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
    {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if let Some(key) = PublicKey::from_jwk(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Ok(keys)
}

/// `max-age` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().trim_matches('"').parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn only_keys_that_can_verify_a_keyport_token_are_kept() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "kid": "k1",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let keys = usable_keys(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["k1"].algorithm, Algorithm::ES256);
        assert!(usable_keys(b"<html>").is_err());
    }
}
