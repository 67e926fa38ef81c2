//! Checking one token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};

use crate::keys::{KeySettings, KeySource};
use crate::{Claims, VerifyError};

/// The algorithms Keyport signs with; anything else (`none`, HMAC, …) is
/// refused before any key is looked at.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

/// Validates Keyport access tokens for one API. Cheap to clone; share one
/// per process (its key cache is shared by its clones).
#[derive(Clone)]
pub struct Verifier {
    issuer: String,
    audiences: Vec<String>,
    leeway: Duration,
    keys: Arc<KeySource>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("jwks_uri", &self.keys.jwks_uri())
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
}

impl VerifierBuilder {
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
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.keys.timeout)
                .build()
                .map_err(|e| VerifyError::KeysUnavailable(e.to_string()))?,
        };
        let jwks_uri = match self.jwks_uri {
            Some(uri) => uri,
            None => discover_jwks_uri(&client, &self.issuer).await?,
        };
        Ok(Verifier {
            issuer: self.issuer,
            audiences: self.audiences,
            leeway: self.leeway,
            keys: Arc::new(KeySource::new(client, jwks_uri, self.keys)),
        })
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

    /// How many times the issuer's JWKS has been requested.
    pub fn jwks_fetches(&self) -> u64 {
        self.keys.fetches()
    }

    /// Verifies `token` and answers its claims; a token bound to a key
    /// (`cnf`) is accepted too, and the caller must check its proof.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let typ = header.typ.as_deref().unwrap_or("");
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(VerifyError::NotAnAccessToken);
        }
        if !ALGORITHMS.contains(&header.alg) {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
        let key = self.keys.key(kid).await?;
        if key.algorithm != header.alg {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
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
                _ => VerifyError::Malformed,
            }
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if data.claims.iat > now + self.leeway.as_secs() as i64 {
            return Err(VerifyError::NotYetValid);
        }
        Ok(data.claims)
    }

    /// [`Verifier::verify`] for a token presented as `Authorization: Bearer`:
    /// a token bound to a key is refused, since a bearer presentation
    /// proves nothing about the key.
    pub async fn verify_bearer(&self, token: &str) -> Result<Claims, VerifyError> {
        let claims = self.verify(token).await?;
        if claims.cnf.is_some() {
            return Err(VerifyError::BoundToken);
        }
        Ok(claims)
    }
}
