//! The issuer's public keys: fetched from its JWKS, kept in memory,
//! refreshed in the background when old, fetched again for an unknown `kid`
//! at most once per interval, and kept while the issuer is unreachable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::VerifyError;

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

/// One usable key: what verifies, and the algorithm it verifies.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

#[derive(Default)]
struct Held {
    keys: Option<Arc<HashMap<String, Arc<VerifyingKey>>>>,
    fetched_at: Option<Instant>,
    keep_for: Duration,
    last_attempt: Option<Instant>,
    refreshing: bool,
}

/// The keys at one JWKS URL.
pub(crate) struct KeySource {
    client: reqwest::Client,
    jwks_uri: String,
    settings: KeySettings,
    held: Mutex<Held>,
    /// One fetch at a time: a burst of tokens with a new `kid` makes one
    /// request to the issuer.
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl KeySource {
    pub fn new(client: reqwest::Client, jwks_uri: String, settings: KeySettings) -> Self {
        KeySource {
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
    pub async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<VerifyingKey>, VerifyError> {
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
    fn look(&self, kid: &str) -> (Option<Arc<VerifyingKey>>, bool, bool, bool, bool) {
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
    async fn fetch(&self) -> Result<Arc<HashMap<String, Arc<VerifyingKey>>>, String> {
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

    async fn download(&self) -> Result<(HashMap<String, Arc<VerifyingKey>>, Duration), String> {
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

/// The keys of a JWKS document that can verify a Keyport token, by `kid`;
/// keys without a `kid`, private or symmetric keys and other algorithms are
/// skipped (RFC 7517 §5).
pub(crate) fn usable_keys(body: &[u8]) -> Result<HashMap<String, Arc<VerifyingKey>>, String> {
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
        let jwk = &jwk;
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
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
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, Arc::new(VerifyingKey { key, algorithm }));
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
