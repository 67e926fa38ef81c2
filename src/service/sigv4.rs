//! AWS Signature Version 4: a request signed with a key's secret acts as the
//! key's owner with the key's scopes, as the key presented on its own does.
//!
//! Every request reads the key (status, owner, scopes, allow-list), so a
//! revoked, disabled or expired key, or a disabled owner, is refused at once,
//! on every instance. Only the derived signing key is cached, per key and
//! credential scope (so per day), never the secret: opening the sealed secret
//! and the four HMACs of the derivation are saved, not the key's status.
//! Revoking, disabling and deleting a key drop its entry (on this instance;
//! elsewhere the status read refuses the key and drops it there).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::Service;
use super::clients::{self, AuthenticatedKey, ClientAuthError};
use super::usage::UseKind;
use crate::domain::sigv4::{
    CredentialScope, Expectation, Presentation, RequestParts, SignedRequest, Sigv4Error,
    Sigv4SigningKey,
};
use crate::domain::{ClientId, KeyProof, Principal, now};
use crate::storage::StorageError;

/// Entries kept at most; past it the cache starts over (a key's next
/// request derives its signing key again).
const MAX_CACHED: usize = 10_000;

/// Derived signing keys, per key id, for the scope they were derived for.
#[derive(Clone, Default)]
pub struct Sigv4KeyCache {
    keys: Arc<Mutex<HashMap<String, (CredentialScope, Sigv4SigningKey)>>>,
}

impl Sigv4KeyCache {
    fn get(&self, key_id: &str, scope: &CredentialScope) -> Option<Sigv4SigningKey> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(key_id)
            .filter(|(cached, _)| cached == scope)
            .map(|(_, key)| key.clone())
    }

    fn put(&self, key_id: &str, scope: CredentialScope, key: Sigv4SigningKey) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_CACHED && !keys.contains_key(key_id) {
            keys.clear();
        }
        keys.insert(key_id.to_owned(), (scope, key));
    }

    /// Drops the key's derived signing key (revoked, disabled, deleted).
    pub fn forget(&self, key_id: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key_id);
    }

    /// Whether a derived key is cached for `key_id` (for tests).
    pub fn holds(&self, key_id: &str) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key_id)
    }
}

/// Why a signed request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Sigv4Refusal {
    /// The signature's parts are malformed or out of scope or time.
    #[error(transparent)]
    Malformed(#[from] Sigv4Error),
    /// No key allowing SigV4 has this access key ID: an unknown ID and a
    /// key created without SigV4 answer alike.
    #[error(
        "no key that allows SigV4 has this access key ID: check it, or create a key with SigV4 \
         allowed (\"sigv4\": true); keys created without it keep only a digest of their secret \
         and cannot sign requests"
    )]
    UnknownAccessKey,
    /// The signature is not the key's. Carries what Keyport computed (no
    /// secret in either), so the integrator can find their mistake.
    #[error(
        "the signature does not match: compare the canonical request and string to sign below \
         with your client's, and check the secret"
    )]
    Mismatch {
        canonical_request: String,
        string_to_sign: String,
    },
    /// The key proved itself but may not be used: revoked, disabled,
    /// expired, its owner disabled, or outside its allow-list; or too many
    /// failures from here; or the database.
    #[error(transparent)]
    Key(#[from] ClientAuthError),
}

impl From<StorageError> for Sigv4Refusal {
    fn from(err: StorageError) -> Self {
        Sigv4Refusal::Key(ClientAuthError::Storage(err))
    }
}

impl Sigv4Refusal {
    /// The stable code HTTP answers carry.
    pub fn code(&self) -> &'static str {
        match self {
            Sigv4Refusal::Malformed(err) => err.fault.code(),
            Sigv4Refusal::UnknownAccessKey => "invalid_access_key_id",
            Sigv4Refusal::Mismatch { .. } => "signature_mismatch",
            Sigv4Refusal::Key(err) => match err {
                ClientAuthError::Revoked => "key_revoked",
                ClientAuthError::Disabled => "key_disabled",
                ClientAuthError::Expired => "key_expired",
                ClientAuthError::OwnerDisabled => "owner_disabled",
                ClientAuthError::SourceNotAllowed => "source_not_allowed",
                ClientAuthError::BadCredentials | ClientAuthError::Assertion(_) => {
                    "signature_mismatch"
                }
                ClientAuthError::Throttled(_) => "too_many_requests",
                ClientAuthError::Storage(_) => "unavailable",
            },
        }
    }
}

/// Verifies a SigV4-signed request and returns the principal it acts as:
/// the key's owner, with the key's scopes.
///
/// Failures that could be guesses (an unknown access key, a wrong
/// signature, an address outside the key's allow-list) count toward the
/// same throttle as failed client authentications, per access key ID and
/// address; past it, 429 before any database work.
pub async fn authenticate(
    service: &Service,
    request: &RequestParts<'_>,
    presentation: Presentation,
    address: IpAddr,
) -> Result<Principal, Sigv4Refusal> {
    let settings = &service.settings.sigv4;
    let signed = SignedRequest::parse(
        request,
        presentation,
        &Expectation {
            region: &settings.region,
            service: &settings.service,
            now: now(),
            max_skew_seconds: settings.max_skew.as_secs() as i64,
        },
    )?;
    let access_key_id = signed.access_key_id.as_str();
    if let Some(retry_after) = service.throttle.check(access_key_id, address) {
        return Err(ClientAuthError::Throttled(retry_after).into());
    }
    let outcome = verify(service, &signed).await;
    let fail = |refusal: Sigv4Refusal| {
        service.throttle.record_failure(access_key_id, address);
        Err(refusal)
    };
    let key = match outcome {
        Ok(key) => key,
        Err(refusal @ (Sigv4Refusal::UnknownAccessKey | Sigv4Refusal::Mismatch { .. })) => {
            return fail(refusal);
        }
        Err(other) => return Err(other),
    };
    let key = match key.check_source(Some(address)) {
        Ok(()) => key,
        Err(err) => return fail(err.into()),
    };
    let key = clients::finish(service, Ok(key), access_key_id, address, UseKind::Sigv4)?;
    Ok(key.into_principal(Some(address), KeyProof::Sigv4))
}

/// The key behind the access key ID, if the signature is its own; then its
/// standing (revoked, disabled, expired, owner).
async fn verify(
    service: &Service,
    signed: &SignedRequest,
) -> Result<AuthenticatedKey, Sigv4Refusal> {
    if ClientId::parse(&signed.access_key_id).is_err() {
        return Err(Sigv4Refusal::UnknownAccessKey);
    }
    let Some(row) = service
        .store
        .find_key_for_sigv4(&signed.access_key_id)
        .await?
    else {
        return Err(Sigv4Refusal::UnknownAccessKey);
    };
    let Some(sealed) = row.sigv4_secret_sealed.as_deref() else {
        return Err(Sigv4Refusal::UnknownAccessKey);
    };
    let key_id = row.key.id.clone();
    let signing_key = match service.sigv4_keys.get(&key_id, &signed.scope) {
        Some(cached) => cached,
        None => {
            let secret = service.store.open_sigv4_secret(&key_id, sealed)?;
            let derived = Sigv4SigningKey::derive(secret.expose(), &signed.scope);
            service
                .sigv4_keys
                .put(&key_id, signed.scope.clone(), derived.clone());
            derived
        }
    };
    if !signed.verify(&signing_key) {
        return Err(Sigv4Refusal::Mismatch {
            canonical_request: signed.canonical_request.clone(),
            string_to_sign: signed.string_to_sign.clone(),
        });
    }
    clients::authorise(row.key, now()).map_err(|err| {
        // Revoked, disabled, expired or its owner disabled: whatever this
        // instance was told, the key's derived signing key goes.
        service.sigv4_keys.forget(&key_id);
        err.into()
    })
}
