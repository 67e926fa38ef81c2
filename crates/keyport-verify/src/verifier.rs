//! Checking one token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, Header, Validation};

use crate::clock::now;
use crate::dpop::{DpopSettings, ProofTarget};
use crate::error::{MAX_TOKEN_LEN, quoted};
use crate::keys::{JwksCache, JwksKeys, KeyLookup, KeySettings, KeySource, PublicKey};
use crate::request::{Authenticated, Rejection, Scheme, TokenRequest};
use crate::{Claims, VerifyError};

/// The algorithms Keyport signs with; anything else (`none`, HMAC, …) is
/// refused before any key is looked at.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

/// Tokens verified before, by their whole text (signature included, so a
/// forgery never matches), with their claims, until they expire: an
/// integration reuses one token for its lifetime, and a hit costs about a
/// microsecond where a signature check costs 20 to 150.
struct TokenCache {
    capacity: usize,
    verified: RwLock<HashMap<Box<str>, Arc<Claims>, TailHash>>,
}

/// Hashes a token by its last 32 bytes (of its signature) only: as random
/// as the whole for tokens that verified, which are all the cache holds,
/// and a twentieth of the work. Equality still compares the whole text.
#[derive(Default, Clone)]
struct TailHash(std::hash::RandomState);

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(std::hash::DefaultHasher);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(32)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Validates Keyport access tokens for one API. Cheap to clone; share one
/// per process (its key cache is shared by its clones).
#[derive(Clone)]
pub struct Verifier {
    issuer: Arc<str>,
    audiences: Arc<[String]>,
    leeway: Duration,
    keys: Arc<dyn KeySource>,
    /// The JWKS cache, when the keys come from the issuer's JWKS.
    jwks: Option<Arc<JwksCache>>,
    cache: Arc<TokenCache>,
    resource: Arc<Resource>,
    /// One per algorithm, built once: a `Validation` holds four sets,
    /// which cost allocations on every token when built per call.
    validations: Arc<[Validation]>,
}

/// What the verifier says about the resource it protects.
#[derive(Debug)]
struct Resource {
    realm: String,
    dpop: Option<DpopSettings>,
    /// The RFC 9728 resource identifier, when it publishes metadata.
    identifier: Option<String>,
    scopes_supported: Vec<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("jwks_uri", &self.jwks.as_ref().map(|j| j.jwks_uri()))
            .finish()
    }
}

/// Builds a [`Verifier`]: the issuer, the audience your API answers to,
/// and optionally where the keys are and how they are kept.
#[derive(Debug, Clone)]
pub struct VerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    jwks_uri: Option<String>,
    leeway: Duration,
    keys: KeySettings,
    client: Option<reqwest::Client>,
    realm: String,
    dpop: Option<DpopSettings>,
    resource: Option<String>,
    scopes_supported: Vec<String>,
    cache_capacity: usize,
}

impl VerifierBuilder {
    /// How many verified tokens are remembered until they expire (default
    /// 16,384; 0 remembers none). A remembered token is answered without
    /// its signature being checked again, so a key withdrawn from the
    /// issuer's JWKS stops tokens it signed from being accepted only once
    /// they drop out (at the latest when they expire).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The `realm` named in challenges (default `keyport`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Accepts DPoP-bound tokens (RFC 9449) with proofs checked as
    /// `settings` say; without it, a bound token is always refused.
    pub fn dpop(mut self, settings: DpopSettings) -> Self {
        self.dpop = Some(settings);
        self
    }

    /// The resource's identifier (RFC 9728 §1.2), an `https` URL such as
    /// `https://api.example.com`: the resource then publishes its metadata
    /// ([`Verifier::resource_metadata`]) and names it in every challenge
    /// (`resource_metadata`), and DPoP proofs' `htu` is compared with this
    /// URL plus the request's path, whatever `Host` the request came with
    /// (right behind a proxy).
    pub fn resource(mut self, identifier: impl Into<String>) -> Self {
        self.resource = Some(identifier.into().trim_end_matches('/').to_owned());
        self
    }

    /// The scopes the resource uses, listed as `scopes_supported` in its
    /// metadata.
    pub fn scopes_supported<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Another audience the API answers to.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The JWKS URL, when it is known (skips the metadata lookup).
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How keys are fetched and kept ([`KeySettings`]).
    pub fn key_settings(mut self, settings: KeySettings) -> Self {
        self.keys = settings;
        self
    }

    /// The HTTP client used to fetch the metadata and keys.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The verifier. Without a JWKS URL, reads the issuer's RFC 8414
    /// metadata (`/.well-known/oauth-authorization-server`) for `jwks_uri`;
    /// the keys themselves are fetched at the first token.
    pub async fn build(self) -> Result<Verifier, VerifyError> {
        let client = match &self.client {
            Some(client) => client.clone(),
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.keys.timeout)
                .build()
                .map_err(|e| VerifyError::KeysUnavailable(e.to_string()))?,
        };
        let jwks_uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => discover_jwks_uri(&client, &self.issuer).await?,
        };
        let jwks = Arc::new(JwksCache::new(client, jwks_uri, self.keys));
        let source: Arc<dyn KeySource> = Arc::new(JwksKeys(Arc::clone(&jwks)));
        let mut verifier = self.with_keys(source);
        verifier.jwks = Some(jwks);
        Ok(verifier)
    }

    /// The verifier, with its keys from `keys` rather than the issuer's
    /// JWKS: nothing is fetched, and nothing needs awaiting.
    pub fn with_keys(self, keys: Arc<dyn KeySource>) -> Verifier {
        let validations = ALGORITHMS
            .iter()
            .map(|algorithm| {
                let mut validation = Validation::new(*algorithm);
                validation.leeway = self.leeway.as_secs();
                validation.validate_nbf = true;
                validation.set_issuer(&[&self.issuer]);
                validation.set_audience(&self.audiences);
                validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
                validation
            })
            .collect();
        Verifier {
            validations,
            issuer: self.issuer.into(),
            audiences: self.audiences.into(),
            leeway: self.leeway,
            keys,
            jwks: None,
            cache: Arc::new(TokenCache {
                capacity: self.cache_capacity,
                verified: RwLock::new(HashMap::default()),
            }),
            resource: Arc::new(Resource {
                realm: self.realm,
                dpop: self.dpop,
                identifier: self.resource,
                scopes_supported: self.scopes_supported,
            }),
        }
    }
}

async fn discover_jwks_uri(client: &reqwest::Client, issuer: &str) -> Result<String, VerifyError> {
    let url = format!(
        "{}/.well-known/oauth-authorization-server",
        issuer.trim_end_matches('/')
    );
    let unavailable = |why: String| VerifyError::KeysUnavailable(format!("{url}: {why}"));
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unavailable(format!(
            "it answered {}",
            response.status().as_u16()
        )));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| unavailable("not JSON".into()))?;
    // RFC 8414 §3.3: the metadata must name the issuer it was asked for.
    if metadata.get("issuer").and_then(|i| i.as_str()) != Some(issuer) {
        return Err(unavailable("the metadata names another issuer".into()));
    }
    metadata
        .get("jwks_uri")
        .and_then(|u| u.as_str())
        .map(str::to_owned)
        .ok_or_else(|| unavailable("no jwks_uri".into()))
}

impl Verifier {
    /// A verifier for tokens of `issuer` (Keyport's issuer URL, exactly as
    /// its tokens' `iss`) meant for `audience`; the defaults otherwise.
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            jwks_uri: None,
            leeway: Duration::from_secs(30),
            keys: KeySettings::default(),
            client: None,
            realm: "keyport".to_owned(),
            dpop: None,
            resource: None,
            scopes_supported: Vec::new(),
            cache_capacity: 16_384,
        }
    }

    /// [`Verifier::builder`] with the defaults, finding the keys from the
    /// issuer's metadata.
    pub async fn discover(
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, VerifyError> {
        Verifier::builder(issuer, audience).build().await
    }

    /// How many times the issuer's JWKS has been requested (0 when the
    /// keys come from another [`KeySource`]).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks.as_ref().map_or(0, |jwks| jwks.fetches())
    }

    /// Verifies `token` and answers its claims; a token bound to a key
    /// (`cnf`) is accepted too, and the caller must check its proof. Waits
    /// for the issuer's keys only when none held can answer.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verify_shared(token).await.map(Arc::unwrap_or_clone)
    }

    /// [`Verifier::verify`], sharing the claims with the cache.
    pub(crate) async fn verify_shared(&self, token: &str) -> Result<Arc<Claims>, VerifyError> {
        if let Some(answer) = self.remembered(token) {
            return answer;
        }
        let header = self.check_header(token)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let key = match self.keys.key(kid) {
            KeyLookup::Ready(key) => key?,
            KeyLookup::Pending(fetch) => fetch.await?,
        };
        self.check_signed(token, &header, &key)
    }

    /// [`Verifier::verify`] without waiting: answers from the keys held
    /// now, and refuses a token whose key would have to be fetched as
    /// [`VerifyError::UnknownKey`] (without fetching). For callers that
    /// cannot await, with keys that never need fetching
    /// ([`StaticKeys`](crate::StaticKeys), an authorization server's own
    /// keys).
    pub fn verify_now(&self, token: &str) -> Result<Claims, VerifyError> {
        if let Some(answer) = self.remembered(token) {
            return answer.map(Arc::unwrap_or_clone);
        }
        let header = self.check_header(token)?;
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let key = match self.keys.key(kid) {
            KeyLookup::Ready(key) => key?,
            KeyLookup::Pending(_) => return Err(VerifyError::UnknownKey),
        };
        self.check_signed(token, &header, &key)
            .map(Arc::unwrap_or_clone)
    }

    /// The answer for a token verified before, while it has not expired.
    fn remembered(&self, token: &str) -> Option<Result<Arc<Claims>, VerifyError>> {
        if self.cache.capacity == 0 {
            return None;
        }
        let cache = self
            .cache
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let claims = cache.get(token)?;
        Some(if claims.exp + self.leeway.as_secs() as i64 > now() {
            Ok(Arc::clone(claims))
        } else {
            Err(VerifyError::Expired)
        })
    }

    /// The checks before any key is looked at: size, shape, `typ`, `alg`.
    fn check_header(&self, token: &str) -> Result<Header, VerifyError> {
        if token.len() > MAX_TOKEN_LEN || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(VerifyError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let typ = header.typ.as_deref().unwrap_or("");
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(VerifyError::NotAnAccessToken);
        }
        if !ALGORITHMS.contains(&header.alg) {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        Ok(header)
    }

    /// The signature by `key` and the claims; remembers a token that
    /// passes.
    fn check_signed(
        &self,
        token: &str,
        header: &Header,
        key: &PublicKey,
    ) -> Result<Arc<Claims>, VerifyError> {
        if key.algorithm != header.alg {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        let validation = self
            .validations
            .iter()
            .find(|v| v.algorithms[0] == header.alg)
            .ok_or(VerifyError::UnsupportedAlgorithm)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => VerifyError::MissingClaim(claim.clone()),
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    VerifyError::UnsupportedAlgorithm
                }
                // jsonwebtoken reads the claims into `Claims` before it
                // checks the required ones, so a missing `sub` or `iat`
                // surfaces as serde's "missing field".
                ErrorKind::Json(json) => missing_field(&json.to_string())
                    .map_or(VerifyError::Malformed, |claim| {
                        VerifyError::MissingClaim(claim.to_owned())
                    }),
                _ => VerifyError::Malformed,
            }
        })?;
        let at = now();
        if data.claims.iat > at + self.leeway.as_secs() as i64 {
            return Err(VerifyError::IssuedInFuture);
        }
        let claims = Arc::new(data.claims);
        if self.cache.capacity > 0 {
            let leeway = self.leeway.as_secs() as i64;
            let mut cache = self
                .cache
                .verified
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if cache.len() >= self.cache.capacity {
                cache.retain(|_, claims| claims.exp + leeway > at);
                if cache.len() >= self.cache.capacity {
                    cache.clear();
                }
            }
            cache.insert(token.into(), Arc::clone(&claims));
        }
        Ok(claims)
    }

    /// [`Verifier::verify`] for a token presented as `Authorization: Bearer`:
    /// a token bound to a key is refused, since a bearer presentation
    /// proves nothing about the key. A certificate-bound token needs
    /// [`Verifier::verify_bearer_with_certificate`].
    pub async fn verify_bearer(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verify_bearer_shared(token, None)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`Verifier::verify_bearer`] over a connection whose client presented
    /// the certificate with this `x5t#S256` thumbprint
    /// ([`ClientCertificate`](crate::ClientCertificate)): a token bound to
    /// that certificate (RFC 8705 §3) is accepted; one bound to another
    /// certificate, or to a DPoP key, is refused.
    pub async fn verify_bearer_with_certificate(
        &self,
        token: &str,
        certificate: Option<&str>,
    ) -> Result<Claims, VerifyError> {
        self.verify_bearer_shared(token, certificate)
            .await
            .map(Arc::unwrap_or_clone)
    }

    async fn verify_bearer_shared(
        &self,
        token: &str,
        certificate: Option<&str>,
    ) -> Result<Arc<Claims>, VerifyError> {
        let claims = self.verify_shared(token).await?;
        check_bearer_binding(&claims, certificate)?;
        Ok(claims)
    }

    /// Authenticates a request: its `Authorization` header (`Bearer`, or
    /// `DPoP` with its proof when the verifier accepts DPoP), every check of
    /// [`Verifier::verify`], and for a bound token its proof. A refusal
    /// comes with its status and challenges ([`Rejection`]). Framework
    /// adapters call this; call it yourself for another framework.
    pub async fn authenticate(
        &self,
        request: &TokenRequest<'_>,
    ) -> Result<Authenticated, Rejection> {
        let Some((scheme, token)) = request.credentials() else {
            return Err(self.reject(VerifyError::MissingToken, Scheme::Bearer));
        };
        let (claims, fresh_nonce) = match (scheme, &self.resource.dpop) {
            (Scheme::Bearer, _) => self
                .verify_bearer_shared(token, request.client_certificate)
                .await
                .map(|c| (c, None)),
            (Scheme::Dpop, None) => Err(VerifyError::MissingToken),
            (Scheme::Dpop, Some(settings)) => self.verify_dpop(settings, token, request).await,
        }
        .map_err(|error| self.reject(error, scheme))?;
        Ok(Authenticated::new(
            claims,
            scheme,
            self.clone(),
            fresh_nonce,
        ))
    }

    /// A token presented under `DPoP`: bound, with a proof by its key for
    /// this request. Answers the claims and a fresh nonce to send, if any.
    async fn verify_dpop(
        &self,
        settings: &DpopSettings,
        token: &str,
        request: &TokenRequest<'_>,
    ) -> Result<(Arc<Claims>, Option<String>), VerifyError> {
        let claims = self.verify_shared(token).await?;
        let jkt = claims.dpop_jkt().ok_or(VerifyError::NotBound)?;
        // Behind a proxy the request's own URL is not what the client
        // signed: with a resource identifier, its path under that URL is.
        let url = match &self.resource.identifier {
            Some(base) => format!("{base}{}", path_of(request.url)),
            None => request.url.to_owned(),
        };
        let target = ProofTarget {
            method: request.method,
            url: &url,
            access_token: Some(token),
            jkt: Some(jkt),
        };
        let proof = settings.check_proof(request.dpop_proofs, &target).await?;
        Ok((claims, proof.fresh_nonce))
    }

    /// The refusal for `error` when the token came under `scheme`: its
    /// status, and RFC 6750 §3 / RFC 9449 §7.1 challenges naming the realm,
    /// the DPoP algorithms when DPoP is accepted, and `resource_metadata`
    /// when the resource publishes it. A missing token is answered with a
    /// bare challenge per accepted scheme; a refusal about DPoP, or of a
    /// token presented under `DPoP`, under the `DPoP` scheme; 503s with none.
    pub fn reject(&self, error: VerifyError, scheme: Scheme) -> Rejection {
        let resource = &self.resource;
        let metadata = self
            .resource_metadata_url()
            .map(|url| format!(", resource_metadata=\"{}\"", quoted(&url)))
            .unwrap_or_default();
        let realm = quoted(&resource.realm);
        let bearer = format!("Bearer realm=\"{realm}\"");
        let dpop = resource
            .dpop
            .as_ref()
            .map(|d| format!("DPoP realm=\"{realm}\", algs=\"{}\"", d.algs()));
        let mut challenges = Vec::new();
        if error.status() == 503 {
        } else if matches!(error, VerifyError::MissingToken) {
            challenges.push(format!("{bearer}{metadata}"));
            challenges.extend(dpop.map(|d| format!("{d}{metadata}")));
        } else {
            let prefix = match dpop {
                Some(dpop) if error.is_dpop() || scheme == Scheme::Dpop => dpop,
                _ => bearer,
            };
            let scope = match &error {
                VerifyError::InsufficientScope(scope) => {
                    format!(", scope=\"{}\"", quoted(scope))
                }
                _ => String::new(),
            };
            challenges.push(format!(
                "{prefix}, error=\"{}\", error_description=\"{}\"{scope}{metadata}",
                error.code(),
                quoted(&error.to_string())
            ));
        }
        Rejection::new(error, challenges)
    }

    /// Where the resource's RFC 9728 metadata is published, when it has a
    /// resource identifier: the well-known path inserted between the
    /// identifier's host and path (RFC 9728 §3.1).
    pub fn resource_metadata_url(&self) -> Option<String> {
        let identifier = self.resource.identifier.as_deref()?;
        let url = reqwest::Url::parse(identifier).ok()?;
        Some(format!(
            "{}/.well-known/oauth-protected-resource{}",
            url.origin().ascii_serialization(),
            url.path().trim_end_matches('/')
        ))
    }

    /// The path to serve [`Verifier::resource_metadata`] at
    /// (`/.well-known/oauth-protected-resource`, followed by the
    /// identifier's path, if any).
    pub fn resource_metadata_path(&self) -> Option<String> {
        let identifier = self.resource.identifier.as_deref()?;
        let url = reqwest::Url::parse(identifier).ok()?;
        Some(format!(
            "/.well-known/oauth-protected-resource{}",
            url.path().trim_end_matches('/')
        ))
    }

    /// The resource's RFC 9728 metadata document, when it has a resource
    /// identifier: the identifier, this issuer as its authorization server,
    /// bearer tokens in the header only, its scopes, and the DPoP
    /// algorithms it accepts.
    pub fn resource_metadata(&self) -> Option<serde_json::Value> {
        let resource = &self.resource;
        let identifier = resource.identifier.as_deref()?;
        let mut document = serde_json::json!({
            "resource": identifier,
            "authorization_servers": [&*self.issuer],
            "bearer_methods_supported": ["header"],
        });
        if !resource.scopes_supported.is_empty() {
            document["scopes_supported"] = serde_json::json!(resource.scopes_supported);
        }
        if let Some(dpop) = &resource.dpop {
            document["dpop_signing_alg_values_supported"] =
                serde_json::json!(dpop.algs().split(' ').collect::<Vec<_>>());
        }
        Some(document)
    }
}

/// The path of an absolute URL (or the URL itself when it is a path),
/// without query or fragment.
fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let path = if after_scheme == 0 {
        rest
    } else {
        rest.find('/').map_or("/", |i| &rest[i..])
    };
    path.split(['?', '#']).next().unwrap_or("/")
}

/// The field serde names in "missing field `x` at line …".
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// The binding rule for a token presented as `Bearer`: unbound, or bound
/// to the certificate the client presented (`certificate`, its
/// `x5t#S256`). A DPoP-bound token needs its proof. Thumbprints are
/// compared in constant time.
pub(crate) fn check_bearer_binding(
    claims: &Claims,
    certificate: Option<&str>,
) -> Result<(), VerifyError> {
    if claims.cnf.is_none() {
        return Ok(());
    }
    if claims.dpop_jkt().is_some() {
        return Err(VerifyError::BoundToken);
    }
    match (claims.certificate_thumbprint(), certificate) {
        (Some(bound), Some(presented)) if same_bytes(bound.as_bytes(), presented.as_bytes()) => {
            Ok(())
        }
        (Some(_), _) => Err(VerifyError::CertificateMismatch),
        // A confirmation this crate does not know: nothing here can prove it.
        (None, _) => Err(VerifyError::BoundToken),
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn verifier(resource: Option<&str>, dpop: bool) -> Verifier {
        let mut builder = Verifier::builder("https://auth.example.com", "api")
            .jwks_uri("https://auth.example.com/jwks.json");
        if let Some(resource) = resource {
            builder = builder.resource(resource);
        }
        if dpop {
            builder = builder.dpop(DpopSettings::default());
        }
        builder.build().await.unwrap()
    }

    #[tokio::test]
    async fn the_metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        let plain = verifier(Some("https://api.example.com"), false).await;
        assert_eq!(
            plain.resource_metadata_url().as_deref(),
            Some("https://api.example.com/.well-known/oauth-protected-resource")
        );
        let nested = verifier(Some("https://api.example.com/reports/"), false).await;
        assert_eq!(
            nested.resource_metadata_url().as_deref(),
            Some("https://api.example.com/.well-known/oauth-protected-resource/reports")
        );
        assert_eq!(
            nested.resource_metadata_path().as_deref(),
            Some("/.well-known/oauth-protected-resource/reports")
        );
        assert_eq!(verifier(None, false).await.resource_metadata(), None);
    }

    #[tokio::test]
    async fn challenges_name_the_scheme_the_scope_and_the_metadata() {
        let both = verifier(Some("https://api.example.com"), true).await;
        let missing = both.reject(VerifyError::MissingToken, Scheme::Bearer);
        assert_eq!(
            missing.challenges(),
            [
                "Bearer realm=\"keyport\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"",
                "DPoP realm=\"keyport\", algs=\"ES256 EdDSA RS256\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\""
            ]
        );
        let scope = both.reject(
            VerifyError::InsufficientScope("reports:read".into()),
            Scheme::Dpop,
        );
        assert_eq!(scope.status(), 403);
        let challenge = &scope.challenges()[0];
        assert!(
            challenge.starts_with(
                "DPoP realm=\"keyport\", algs=\"ES256 EdDSA RS256\", error=\"insufficient_scope\""
            ),
            "{challenge}"
        );
        assert!(challenge.contains("scope=\"reports:read\""), "{challenge}");
        let bound = both.reject(VerifyError::BoundToken, Scheme::Bearer);
        assert!(bound.challenges()[0].starts_with("DPoP "));
        let nonce = both.reject(
            VerifyError::UseDpopNonce {
                nonce: "n1".into(),
                message: "retry",
            },
            Scheme::Dpop,
        );
        assert_eq!(nonce.dpop_nonce(), Some("n1"));
        assert!(nonce.challenges()[0].contains("error=\"use_dpop_nonce\""));
        let plain = verifier(None, false).await;
        let bound = plain.reject(VerifyError::BoundToken, Scheme::Bearer);
        assert!(
            bound.challenges()[0].starts_with("Bearer realm=\"keyport\", error=\"invalid_token\"")
        );
        let down = plain.reject(VerifyError::KeysUnavailable("x".into()), Scheme::Bearer);
        assert!(down.challenges().is_empty());
        assert_eq!(down.status(), 503);
    }

    /// An Ed25519 key: what verifies, and a token it signs with `claims`
    /// over the usual ones.
    fn key_and_signer() -> (PublicKey, impl Fn(serde_json::Value) -> String) {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).expect("a key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("a key");
        let public = jsonwebtoken::DecodingKey::from_ed_der(pair.public_key().as_ref());
        let signing = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
        let sign = move |extra: serde_json::Value| {
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.typ = Some("at+jwt".into());
            header.kid = Some("k1".into());
            let at = now();
            let mut claims = serde_json::json!({
                "iss": "https://auth.example.com", "aud": "api", "sub": "u1",
                "iat": at, "exp": at + 600, "jti": "t1", "scope": "reports:read",
            });
            for (name, value) in extra.as_object().expect("an object") {
                claims[name] = value.clone();
            }
            jsonwebtoken::encode(&header, &claims, &signing).expect("a token")
        };
        (
            PublicKey::new(Algorithm::EdDSA, public).expect("EdDSA"),
            sign,
        )
    }

    fn with_static_keys(capacity: usize) -> (Verifier, crate::StaticKeys) {
        let keys = crate::StaticKeys::new();
        let verifier = Verifier::builder("https://auth.example.com", "api")
            .cache_capacity(capacity)
            .with_keys(Arc::new(keys.clone()));
        (verifier, keys)
    }

    #[test]
    fn static_keys_verify_without_waiting_and_a_replacement_takes_effect_at_once() {
        let (key, sign) = key_and_signer();
        let (verifier, keys) = with_static_keys(0);
        let token = sign(serde_json::json!({}));
        assert_eq!(verifier.verify_now(&token), Err(VerifyError::UnknownKey));
        keys.replace([("k1".to_owned(), key)]);
        assert_eq!(verifier.verify_now(&token).expect("accepted").sub, "u1");
        keys.replace([]);
        assert_eq!(verifier.verify_now(&token), Err(VerifyError::UnknownKey));
        let (other_key, _) = key_and_signer();
        keys.replace([("k1".to_owned(), other_key)]);
        // Another key under the same kid: the signature is refused.
        assert_eq!(verifier.verify_now(&token), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_token_issued_in_the_future_is_named_as_such() {
        let (key, sign) = key_and_signer();
        let (verifier, keys) = with_static_keys(16);
        keys.replace([("k1".to_owned(), key)]);
        let token = sign(serde_json::json!({"iat": now() + 3600}));
        assert_eq!(
            verifier.verify_now(&token),
            Err(VerifyError::IssuedInFuture)
        );
        assert_eq!(
            verifier.verify_now(&"a".repeat(MAX_TOKEN_LEN + 1)),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn a_token_seen_before_is_answered_from_memory_until_it_expires() {
        let (key, sign) = key_and_signer();
        let (verifier, keys) = with_static_keys(16);
        keys.replace([("k1".to_owned(), key)]);
        let token = sign(serde_json::json!({}));
        let claims = verifier.verify_now(&token).expect("accepted");
        // The key is withdrawn: the token seen before is still answered,
        // a token never seen is not.
        keys.replace([]);
        assert_eq!(verifier.verify_now(&token), Ok(claims.clone()));
        let other = sign(serde_json::json!({"jti": "t2"}));
        assert_eq!(verifier.verify_now(&other), Err(VerifyError::UnknownKey));
        // Once past its expiry (and the leeway), a remembered token is
        // refused as expired.
        let expired = Arc::new(Claims {
            exp: now() - 31,
            ..claims
        });
        verifier
            .cache
            .verified
            .write()
            .unwrap()
            .insert(token.as_str().into(), expired);
        assert_eq!(verifier.verify_now(&token), Err(VerifyError::Expired));
    }

    #[tokio::test]
    async fn verify_now_refuses_a_token_whose_key_would_have_to_be_fetched() {
        let (_, sign) = key_and_signer();
        let verifier = Verifier::builder("https://auth.example.com", "api")
            .jwks_uri("http://127.0.0.1:9/jwks.json")
            .build()
            .await
            .unwrap();
        let token = sign(serde_json::json!({}));
        assert_eq!(verifier.verify_now(&token), Err(VerifyError::UnknownKey));
        assert_eq!(verifier.jwks_fetches(), 0);
        // `verify` waits for the fetch, which fails: no keys, fail closed.
        assert!(matches!(
            verifier.verify(&token).await,
            Err(VerifyError::KeysUnavailable(_))
        ));
        assert_eq!(verifier.jwks_fetches(), 1);
    }

    #[test]
    fn a_missing_claim_is_named_from_the_serde_message() {
        assert_eq!(
            missing_field("missing field `sub` at line 1 column 80"),
            Some("sub")
        );
        assert_eq!(missing_field("invalid type: string, expected i64"), None);
    }

    #[test]
    fn the_path_of_a_url_leaves_out_authority_query_and_fragment() {
        assert_eq!(path_of("http://h:1/a/b?c#d"), "/a/b");
        assert_eq!(path_of("http://h"), "/");
        assert_eq!(path_of("/a?b"), "/a");
    }
}
