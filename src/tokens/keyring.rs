//! The signing keys an instance holds in memory: the one it signs with, every
//! key it accepts, and the JWKS it publishes. All come from the database, so
//! instances sharing one database sign and verify alike.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::jwk::JwkSet;

use super::claims::AccessTokenClaims;
use super::signing_key::{SigningKey, SigningKeyError};
use super::verified::TokenVerifier;
use crate::config::TokenSettings;
use crate::domain::SigningAlgorithm;
use crate::domain::now;
use crate::storage::{SigningKeyRow, StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] SigningKeyError),
    #[error("no active {0} signing key is stored")]
    NoActiveKey(SigningAlgorithm),
}

struct Snapshot {
    signer: Arc<SigningKey>,
    jwks_json: Arc<str>,
}

pub struct KeyRing {
    store: Store,
    algorithm: SigningAlgorithm,
    /// How long after retirement a key stays published: tokens it signed may
    /// live that long.
    publish_retired_for: i64,
    current: RwLock<Arc<Snapshot>>,
    verification: TokenVerifier,
}

impl KeyRing {
    /// Loads the keys, first generating and storing an active key of the
    /// configured algorithm when the database has none.
    pub async fn load(store: Store, settings: &TokenSettings) -> Result<Self, KeyRingError> {
        let algorithm = settings.signing_algorithm;
        let publish_retired_for =
            settings.max_ttl.as_secs() as i64 + settings.leeway.as_secs() as i64;
        let (key, pem) = SigningKey::generate(algorithm)?;
        store
            .insert_signing_key_if_none_active(&SigningKeyRow {
                kid: key.kid.clone(),
                algorithm: algorithm.as_str().to_owned(),
                private_key_pem: pem,
                state: "active".to_owned(),
                created_at: now(),
                retired_at: None,
            })
            .await?;
        let verification = TokenVerifier::new(settings);
        let snapshot = Self::read(&store, algorithm, publish_retired_for, &verification).await?;
        Ok(KeyRing {
            store,
            algorithm,
            publish_retired_for,
            current: RwLock::new(Arc::new(snapshot)),
            verification,
        })
    }

    /// Re-reads the keys from the database (another instance may have rotated).
    pub async fn refresh(&self) -> Result<(), KeyRingError> {
        let snapshot = Self::read(
            &self.store,
            self.algorithm,
            self.publish_retired_for,
            &self.verification,
        )
        .await?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        Ok(())
    }

    /// Generates a new active key and retires the current one. The retired key
    /// stays published until every token it signed has expired.
    pub async fn rotate(
        store: &Store,
        algorithm: SigningAlgorithm,
    ) -> Result<String, KeyRingError> {
        let (key, pem) = SigningKey::generate(algorithm)?;
        store
            .rotate_signing_key(&SigningKeyRow {
                kid: key.kid.clone(),
                algorithm: algorithm.as_str().to_owned(),
                private_key_pem: pem,
                state: "active".to_owned(),
                created_at: now(),
                retired_at: None,
            })
            .await?;
        Ok(key.kid)
    }

    async fn read(
        store: &Store,
        algorithm: SigningAlgorithm,
        publish_retired_for: i64,
        verification: &TokenVerifier,
    ) -> Result<Snapshot, KeyRingError> {
        let rows = store
            .publishable_signing_keys(now() - publish_retired_for)
            .await?;
        let mut keys = HashMap::new();
        let mut signer = None;
        let mut jwks = JwkSet { keys: Vec::new() };
        for row in rows {
            let row_algorithm: SigningAlgorithm =
                row.algorithm
                    .parse()
                    .map_err(|reason| SigningKeyError::Invalid {
                        kid: row.kid.clone(),
                        reason,
                    })?;
            let key = Arc::new(SigningKey::from_pem(
                Some(&row.kid),
                row_algorithm,
                &row.private_key_pem,
            )?);
            // Rows come oldest first: the oldest active key of our algorithm
            // wins, so instances that raced at first start agree.
            if signer.is_none() && row.state == "active" && row_algorithm == algorithm {
                signer = Some(Arc::clone(&key));
            }
            jwks.keys.push(key.jwk.clone());
            keys.insert(row.kid.clone(), key);
        }
        let signer = signer.ok_or(KeyRingError::NoActiveKey(algorithm))?;
        verification.replace_keys(keys.values().map(|k| k.as_ref()));
        let jwks_json = serde_json::to_string(&jwks).unwrap_or_else(|_| "{\"keys\":[]}".into());
        Ok(Snapshot {
            signer,
            jwks_json: jwks_json.into(),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Signs `claims` as an RFC 9068 access token with the active key.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, KeyRingError> {
        Ok(self.snapshot().signer.sign(claims)?)
    }

    /// The JWKS document, serialised once per refresh.
    pub fn jwks_json(&self) -> Arc<str> {
        Arc::clone(&self.snapshot().jwks_json)
    }

    pub fn signing_kid(&self) -> String {
        self.snapshot().signer.kid.clone()
    }

    /// A verifier that accepts exactly the keys this ring publishes, kept in
    /// step with every refresh.
    pub fn verifier(&self) -> TokenVerifier {
        self.verification.clone()
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }
}
