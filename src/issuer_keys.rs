//! Trusted issuers' public keys (their JWKS), fetched over HTTP and kept in
//! memory: fetched on first use, refreshed in the background when older
//! than `jwks_max_age` (the keys held keep answering meanwhile, and while
//! the issuer is unreachable), and fetched when a token names a `kid` not
//! among them, but never more often than `jwks_min_refresh`, so tokens with
//! made-up kids cannot make Keyport hammer an issuer. Each URL is fetched
//! on its own (one fetch at a time per URL, never one lock for all), so a
//! slow issuer delays only the exchanges that need its keys. The fetch goes
//! through the same SSRF guard as webhooks: https and public addresses
//! unless configured otherwise, no redirects, no proxies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::ExchangeSettings;
use crate::domain::{TargetPolicy, WebhookUrl};
use crate::telemetry::traces;
use crate::tokens::{PublicJwk, SigningAlgorithm};

/// A JWKS larger than this is not a JWKS (GitHub's is about 2 KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Keys tried for a token without a `kid`.
const MAX_CANDIDATES: usize = 8;

/// URLs remembered at most; past this, the least recently fetched go.
const MAX_URLS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerKeysError {
    /// The issuer's keys could not be fetched (and none are known): said to
    /// the admin who set it up through the logs, to the client as
    /// `invalid_grant`.
    #[error("the issuer's keys could not be fetched from {url}: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("the issuer publishes no key that matches the token's `kid` and algorithm")]
    UnknownKey,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<Vec<PublicJwk>>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    refreshing: bool,
}

/// One JWKS URL: what is known of it, and its own fetch lock.
#[derive(Default)]
struct UrlKeys {
    state: Mutex<State>,
    /// One fetch of this URL at a time: a burst of exchanges waiting for
    /// the same keys makes one request to the issuer.
    fetching: tokio::sync::Mutex<()>,
}

/// What is known about a URL at one instant.
struct Snapshot {
    keys: Option<Arc<Vec<PublicJwk>>>,
    fresh: bool,
    may_fetch: bool,
    refreshing: bool,
}

#[derive(Clone)]
struct Fetcher {
    client: Option<reqwest::Client>,
    policy: TargetPolicy,
}

pub struct IssuerKeys {
    fetcher: Fetcher,
    min_refresh: Duration,
    max_age: Duration,
    urls: Mutex<HashMap<String, Arc<UrlKeys>>>,
}

impl IssuerKeys {
    pub fn new(settings: &ExchangeSettings) -> Self {
        let client = crate::webhooks::guarded_client(
            settings.targets,
            settings.jwks_connect_timeout,
            settings.jwks_timeout,
            concat!("Keyport/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(|err| log::error!("cannot build the JWKS client: {err}"))
        .ok();
        IssuerKeys {
            fetcher: Fetcher {
                client,
                policy: settings.targets,
            },
            min_refresh: settings.jwks_min_refresh,
            max_age: settings.jwks_max_age,
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The keys at `jwks_url` that may have signed a token naming `kid` (or
    /// none) with `algorithm`. Waits for a fetch only when no key held can
    /// answer.
    pub async fn candidates(
        &self,
        jwks_url: &str,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Result<Vec<PublicJwk>, IssuerKeysError> {
        let entry = self.entry(jwks_url);
        let now = self.snapshot(&entry);
        if let Some(keys) = &now.keys {
            let found = select(keys, kid, algorithm);
            if !found.is_empty() {
                if !now.fresh && now.may_fetch && !now.refreshing {
                    self.refresh_in_background(jwks_url, &entry);
                }
                return Ok(found);
            }
            if !now.may_fetch && !now.refreshing {
                return Err(IssuerKeysError::UnknownKey);
            }
        }
        let _one_fetch = entry.fetching.lock().await;
        // Another request (or a background refresh) may have fetched while
        // this one waited.
        let again = self.snapshot(&entry);
        if let Some(keys) = &again.keys {
            let found = select(keys, kid, algorithm);
            if !found.is_empty() {
                return Ok(found);
            }
        }
        let keys = match (again.may_fetch, again.keys) {
            (true, known) => match self.fetcher.fetch(jwks_url, &entry).await {
                Ok(keys) => keys,
                Err(reason) => {
                    log::warn!("token exchange: fetching {jwks_url} failed: {reason}");
                    // Keys fetched before stay usable while the issuer is
                    // down: it rotates rarely, and refusing everyone would
                    // turn its outage into ours.
                    known.ok_or(IssuerKeysError::Unavailable {
                        url: jwks_url.to_owned(),
                        reason,
                    })?
                }
            },
            (false, Some(known)) => known,
            (false, None) => {
                return Err(IssuerKeysError::Unavailable {
                    url: jwks_url.to_owned(),
                    reason: "the last attempt failed moments ago".to_owned(),
                });
            }
        };
        let found = select(&keys, kid, algorithm);
        if found.is_empty() {
            Err(IssuerKeysError::UnknownKey)
        } else {
            Ok(found)
        }
    }

    fn entry(&self, url: &str) -> Arc<UrlKeys> {
        let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = urls.get(url) {
            return Arc::clone(entry);
        }
        if urls.len() >= MAX_URLS {
            // Trusted issuers are few (a limit per company); only a flood
            // of deleted and re-added URLs gets here. Forget the oldest.
            let oldest = urls
                .iter()
                .min_by_key(|(_, entry)| {
                    entry
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .last_attempt
                })
                .map(|(url, _)| url.clone());
            if let Some(oldest) = oldest {
                urls.remove(&oldest);
            }
        }
        Arc::clone(urls.entry(url.to_owned()).or_default())
    }

    fn snapshot(&self, entry: &UrlKeys) -> Snapshot {
        let state = entry.state.lock().unwrap_or_else(|e| e.into_inner());
        let may_fetch = state
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.min_refresh);
        Snapshot {
            refreshing: state.refreshing,
            keys: state.keys.clone(),
            fresh: state
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.max_age),
            may_fetch,
        }
    }

    /// Fetches `url` again without anyone waiting for it: the keys held
    /// answer meanwhile.
    fn refresh_in_background(&self, url: &str, entry: &Arc<UrlKeys>) {
        {
            let mut state = entry.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.refreshing {
                return;
            }
            state.refreshing = true;
        }
        let (fetcher, entry, url) = (self.fetcher.clone(), Arc::clone(entry), url.to_owned());
        tokio::spawn(async move {
            let _one_fetch = entry.fetching.lock().await;
            if let Err(reason) = fetcher.fetch(&url, &entry).await {
                log::warn!("token exchange: refreshing {url} failed: {reason}");
            }
            entry
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refreshing = false;
        });
    }
}

impl Fetcher {
    async fn fetch(&self, url: &str, entry: &UrlKeys) -> Result<Arc<Vec<PublicJwk>>, String> {
        entry
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_attempt = Some(Instant::now());
        let keys = Arc::new(self.download(url).await?);
        let mut state = entry.state.lock().unwrap_or_else(|e| e.into_inner());
        state.keys = Some(Arc::clone(&keys));
        state.fetched_at = Some(Instant::now());
        Ok(keys)
    }

    async fn download(&self, url: &str) -> Result<Vec<PublicJwk>, String> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| "no HTTP client".to_owned())?;
        let target = WebhookUrl::parse(url, &self.policy).map_err(|e| e.to_string())?;
        if let Some(reason) = target
            .literal_address()
            .and_then(|a| self.policy.refuses(a))
        {
            return Err(format!("{} is {reason}", target.host()));
        }
        let mut span = traces::Leaf::start("jwks.fetch", traces::Kind::Client, || {
            vec![
                traces::Attribute::new("http.request.method", "GET"),
                traces::Attribute::new("url.full", target.as_str().to_owned()),
            ]
        });
        let mut request = client
            .get(target.as_str())
            .header("accept", "application/json, application/jwk-set+json");
        if let Some(traceparent) = span.traceparent() {
            request = request.header("traceparent", traceparent);
        }
        let mut response = request.send().await.map_err(|e| {
            span.fail("the issuer did not answer");
            crate::webhooks::describe(&e)
        })?;
        let status = response.status().as_u16();
        span.set(|| traces::Attribute::new("http.response.status_code", i64::from(status)));
        if !response.status().is_success() {
            span.fail("the issuer refused");
            return Err(format!("it answered {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| crate::webhooks::describe(&e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
        }
        parse_jwks(&body)
    }
}

/// The usable keys of a JWKS document; keys Keyport cannot use (encryption
/// keys, other curves, symmetric keys) are skipped, as RFC 7517 §5 allows.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<PublicJwk>, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the JWKS is not JSON".to_owned())?;
    let keys = document
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| "the JWKS has no `keys` list".to_owned())?;
    Ok(keys
        .iter()
        .filter_map(|key| PublicJwk::parse(key).ok())
        .collect())
}

fn select(keys: &[PublicJwk], kid: Option<&str>, algorithm: SigningAlgorithm) -> Vec<PublicJwk> {
    keys.iter()
        .filter(|key| key.algorithm() == algorithm)
        .filter(|key| kid.is_none() || key.kid() == kid)
        .take(MAX_CANDIDATES)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_in_a_jwks_are_skipped_and_a_broken_document_is_refused() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "EC", "crv": "P-256", "kid": "k1",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(select(&keys, Some("k1"), SigningAlgorithm::Es256).len(), 1);
        assert!(select(&keys, Some("k2"), SigningAlgorithm::Es256).is_empty());
        assert!(select(&keys, None, SigningAlgorithm::Rs256).is_empty());
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(b"{\"keys\": 5}").is_err());
    }

    /// A JWKS URL stored on an address that is never allowed is refused
    /// before the fetch connects, even with private targets allowed
    /// (`0.0.0.0` would reach this host; nothing here dials anything else).
    #[tokio::test]
    async fn a_jwks_url_on_an_address_never_allowed_is_refused_before_connecting() {
        let keys = IssuerKeys::new(&ExchangeSettings {
            audiences: Vec::new(),
            targets: TargetPolicy {
                allow_http: true,
                allow_private: true,
            },
            jwks_timeout: Duration::from_secs(1),
            jwks_min_refresh: Duration::ZERO,
            jwks_max_age: Duration::from_secs(60),
            jwks_connect_timeout: Duration::from_secs(1),
            max_trusted_issuers: 20,
            max_subject_token_lifetime: Duration::from_secs(3600),
        });
        for url in ["http://0.0.0.0:9/jwks", "http://[::ffff:0.0.0.0]:9/jwks"] {
            match keys.candidates(url, None, SigningAlgorithm::Es256).await {
                Err(IssuerKeysError::Unavailable { reason, .. }) => {
                    assert!(reason.contains("unspecified"), "{url}: {reason}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
