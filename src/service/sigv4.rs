//! AWS Signature Version 4: a request signed with a key's secret acts as the
//! key's owner with the key's scopes, as the key presented on its own does.
//!
//! A signed request's key is checked like a key presented on its own
//! (`x-api-key`): its standing (revoked, disabled, expired, its owner
//! disabled, its scopes narrowed to its owner's permissions, its company
//! and allow-list) comes from the credential cache, which every instance
//! keeps current (see `credential_cache`: a change made anywhere is seen
//! everywhere within the cache's lease, and while the cache cannot prove
//! that, every lookup reads the database). The derived signing key is
//! cached per access key ID and credential scope (so per day), never the
//! secret: a key's SigV4 secret never changes (rolling makes a new key), so
//! the derived key cannot go stale; only the key's standing can, and that
//! is asked on every request. The first request of a key in a scope reads
//! the key with its sealed secret from the database, opens it and derives
//! the key (four HMACs). Revoking, disabling and deleting a key drop its
//! derived key on the instance that made the change, and a refused key's
//! goes wherever it is refused.
//!
//! A signature of a request that changes data (any method but GET, HEAD,
//! OPTIONS, TRACE) is accepted once: the replay cache (table
//! `sigv4_replays`, shared by every instance on one database) remembers a
//! digest of it until its `X-Amz-Date` is no longer accepted. A copy of a
//! signed write, sent again by whoever captured it, stores nothing; a
//! client's retry is signed again (a new `X-Amz-Date`, or a changed signed
//! header), with the same signed `Idempotency-Key` when it must not store
//! twice. Reads stay repeatable within their window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::Service;
use super::clients::{self, AuthenticatedKey, ClientAuthError};
use super::usage::UseKind;
use crate::domain::sigv4::{
    self, CredentialScope, Expectation, Presentation, RequestParts, SignedRequest, Sigv4Error,
    Sigv4SigningKey,
};
use crate::domain::{ClientId, KeyProof, Principal, now};
use crate::storage::{StorageError, Store};
use crate::telemetry::error_chain;

/// Entries kept at most; past it the cache starts over (a key's next
/// request derives its signing key again).
const MAX_CACHED: usize = 10_000;

/// How long a write's signature is remembered past the end of its window:
/// instances' clocks differ a little, and one whose clock is behind the
/// sweeper's still accepts the date for that long.
const REPLAY_LEEWAY_SECONDS: i64 = 60;

/// How often signatures past their window are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Derived signing keys, per access key ID (the key's client ID), for the
/// scope they were derived for. Shared, not copied, with each request that
/// uses one.
#[derive(Clone, Default)]
pub struct Sigv4KeyCache {
    keys: Arc<Mutex<HashMap<String, Derived>>>,
}

/// A derived signing key and the scope it signs for.
type Derived = (CredentialScope<'static>, Arc<Sigv4SigningKey>);

impl Sigv4KeyCache {
    fn get(
        &self,
        access_key_id: &str,
        scope: &CredentialScope<'_>,
    ) -> Option<Arc<Sigv4SigningKey>> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(access_key_id)
            .filter(|(cached, _)| cached == scope)
            .map(|(_, key)| Arc::clone(key))
    }

    fn put(&self, access_key_id: &str, scope: CredentialScope<'static>, key: Arc<Sigv4SigningKey>) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_CACHED && !keys.contains_key(access_key_id) {
            keys.clear();
        }
        keys.insert(access_key_id.to_owned(), (scope, key));
    }

    /// Drops the key's derived signing key (revoked, disabled, deleted).
    pub fn forget(&self, access_key_id: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(access_key_id);
    }

    /// Whether a derived key is cached for `access_key_id` (for tests).
    pub fn holds(&self, access_key_id: &str) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(access_key_id)
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
    /// The signature of a request that changes data was accepted before.
    #[error(
        "this signature was already used: a signed request that changes data (any method but \
         GET, HEAD, OPTIONS and TRACE) is accepted once. Sign each attempt anew (a later \
         X-Amz-Date, or another value in a signed header); to retry a push without storing it \
         twice, sign the retry with the same Idempotency-Key"
    )]
    Replayed,
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
            Sigv4Refusal::Replayed => "signature_replayed",
            Sigv4Refusal::Key(err) => match err {
                ClientAuthError::Revoked => "key_revoked",
                ClientAuthError::Disabled => "key_disabled",
                ClientAuthError::Expired => "key_expired",
                ClientAuthError::OwnerDisabled => "owner_disabled",
                ClientAuthError::SourceNotAllowed => "source_not_allowed",
                ClientAuthError::BadCredentials
                | ClientAuthError::Assertion(_)
                | ClientAuthError::Certificate(_) => "signature_mismatch",
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
    let access_key_id: &str = &signed.access_key_id;
    clients::note_key("sigv4", access_key_id);
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
    // Last of the checks, so a request refused for another reason does not
    // use up its signature. Not a failure for the throttle: the signature
    // is the key's own.
    if signed.changes_data {
        first_use(service, &signed, &key.key_id).await?;
    }
    let key = clients::finish(service, Ok(key), access_key_id, address, UseKind::Sigv4)?;
    Ok(key.into_principal(Some(address), KeyProof::Sigv4))
}

/// Records the signature of a write in the replay cache; refused if it was
/// there already. A database that cannot answer refuses the request (503)
/// rather than risk storing it twice.
async fn first_use(
    service: &Service,
    signed: &SignedRequest<'_>,
    key_id: &str,
) -> Result<(), Sigv4Refusal> {
    let id = sigv4::hex(&signed.replay_id(key_id));
    let expires_at = signed.valid_until + REPLAY_LEEWAY_SECONDS;
    if service.store.first_sigv4_use(&id, expires_at).await? {
        Ok(())
    } else {
        Err(Sigv4Refusal::Replayed)
    }
}

/// Deletes remembered signatures past their window every minute, until
/// `alive` is gone. Any instance may sweep; two sweeping at once delete
/// nothing twice.
pub fn spawn_sweeper(store: Store, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SWEEP_EVERY);
        loop {
            ticker.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            if let Err(err) = store.sweep_sigv4_replays(now()).await {
                log::warn!("SigV4 replay cache sweep failed: {}", error_chain(&err));
            }
        }
    });
}

/// The key behind the access key ID, if the signature is its own; then its
/// standing (revoked, disabled, expired, owner), from the credential cache
/// once the key's signing key for this scope is derived.
async fn verify(
    service: &Service,
    signed: &SignedRequest<'_>,
) -> Result<AuthenticatedKey, Sigv4Refusal> {
    let access_key_id: &str = &signed.access_key_id;
    if !ClientId::is_well_formed(access_key_id) {
        return Err(Sigv4Refusal::UnknownAccessKey);
    }
    let Some(signing_key) = service.sigv4_keys.get(access_key_id, &signed.scope) else {
        return verify_first(service, signed).await;
    };
    // Derived before, so the key allows SigV4; its standing may have
    // changed since, on any instance: the credential cache knows.
    let Some(key) = service
        .credentials
        .key_by_client_id(&service.store, access_key_id)
        .await?
    else {
        service.sigv4_keys.forget(access_key_id);
        return Err(Sigv4Refusal::UnknownAccessKey);
    };
    check_signature(signed, &signing_key)?;
    key.check(now())
        .map_err(|err| refused(service, access_key_id, err))
}

/// A key's first signed request in this scope on this instance: the key and
/// its sealed secret from the database, the signing key derived and kept.
async fn verify_first(
    service: &Service,
    signed: &SignedRequest<'_>,
) -> Result<AuthenticatedKey, Sigv4Refusal> {
    let access_key_id: &str = &signed.access_key_id;
    let Some(row) = service.store.find_key_for_sigv4(access_key_id).await? else {
        return Err(Sigv4Refusal::UnknownAccessKey);
    };
    let Some(sealed) = row.sigv4_secret_sealed.as_deref() else {
        return Err(Sigv4Refusal::UnknownAccessKey);
    };
    let secret = service.store.open_sigv4_secret(&row.key.id, sealed)?;
    let signing_key = Arc::new(Sigv4SigningKey::derive(secret.expose(), &signed.scope));
    drop(secret);
    service.sigv4_keys.put(
        access_key_id,
        signed.scope.clone().into_owned(),
        Arc::clone(&signing_key),
    );
    check_signature(signed, &signing_key)?;
    clients::authorise(row.key, now()).map_err(|err| refused(service, access_key_id, err))
}

fn check_signature(
    signed: &SignedRequest<'_>,
    signing_key: &Sigv4SigningKey,
) -> Result<(), Sigv4Refusal> {
    if signed.verify(signing_key) {
        Ok(())
    } else {
        Err(Sigv4Refusal::Mismatch {
            canonical_request: signed.canonical_request(),
            string_to_sign: signed.string_to_sign(),
        })
    }
}

/// Revoked, disabled, expired or its owner disabled: whatever this instance
/// was told, the key's derived signing key goes (a database that cannot
/// answer says nothing about the key).
fn refused(service: &Service, access_key_id: &str, err: ClientAuthError) -> Sigv4Refusal {
    if !matches!(err, ClientAuthError::Storage(_)) {
        service.sigv4_keys.forget(access_key_id);
    }
    err.into()
}
