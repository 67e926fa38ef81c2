//! Client authentication: is this client ID + secret (or a secret on its
//! own) a live key, used from an address it may be used from, and what may
//! it do right now? Repeated failures are throttled here, before any
//! database work.

use std::net::IpAddr;
use std::time::Duration;

use super::Service;
use super::audit::Event;
use super::usage::UseKind;
use crate::domain::{
    ActingUser, ClientId, ClientSecret, Credential, KeyProof, Principal, RateLimit, Role, ScopeSet,
    SecretDigest, SourceAllowList, UnixTime, UserStatus, now,
};
use crate::mtls::PresentedCertificate;
use crate::storage::{KeyAuthRow, StorageError, Store};
use crate::telemetry::request;

/// A key that proved its secret, with what it may do at this moment: its
/// scopes narrowed to its owner's current permissions.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub key_id: String,
    pub client_id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub owner_role: Role,
    pub scopes: ScopeSet,
    pub token_ttl_seconds: Option<i64>,
    pub expires_at: Option<UnixTime>,
    /// Where the key may be used from; empty: anywhere.
    pub allowed_sources: SourceAllowList,
    /// Its rate for reports and webhooks: its own, else its company's
    /// default; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// RFC 9449: its token requests must carry a DPoP proof.
    pub require_dpop: bool,
}

impl AuthenticatedKey {
    /// Refuses `address` unless the key's allow-list admits it.
    pub fn check_source(&self, address: Option<IpAddr>) -> Result<(), ClientAuthError> {
        if self.allowed_sources.allows(address) {
            Ok(())
        } else {
            Err(ClientAuthError::SourceNotAllowed)
        }
    }

    /// The key presented on its own (its secret, or a signature made with
    /// it), acting as its owner.
    pub fn into_principal(self, source_address: Option<IpAddr>, proof: KeyProof) -> Principal {
        Principal {
            credential: Credential::ApiKey {
                key_id: self.key_id,
                client_id: self.client_id,
                expires_at: self.expires_at,
                rate_limit: self.rate_limit,
                proof,
            },
            user: Some(ActingUser {
                user_id: self.owner_id,
                tenant_id: self.tenant_id,
                role: self.owner_role,
            }),
            scopes: self.scopes,
            source_address,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Unknown client ID or wrong secret: deliberately indistinguishable.
    #[error("{}", self.message())]
    BadCredentials,
    #[error("{}", self.message())]
    Revoked,
    /// Disabled: refused like a revoked key, until it is enabled again.
    #[error("{}", self.message())]
    Disabled,
    #[error("{}", self.message())]
    Expired,
    /// The key has an allow-list, and the request came from outside it.
    /// Counted as a failed authentication: whoever holds the secret there
    /// should not get to try it endlessly.
    #[error("{}", self.message())]
    SourceNotAllowed,
    #[error("{}", self.message())]
    OwnerDisabled,
    /// Too many failures from this address for this client: retry after.
    #[error("{}", self.message())]
    Throttled(Duration),
    /// A `private_key_jwt` client assertion (RFC 7523) was refused for
    /// what it says, not for who sent it: malformed, an algorithm not
    /// allowed, a claim missing or wrong, or used before. Counted as a
    /// failed authentication.
    #[error("{0}")]
    Assertion(&'static str),
    /// RFC 8705 §2.1: the certificate does not chain to the configured
    /// CAs, or is outside its validity dates. Counted as a failed
    /// authentication.
    #[error("{0}")]
    Certificate(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ClientAuthError {
    /// What the caller is told; static so every boundary can carry it.
    pub fn message(&self) -> &'static str {
        match self {
            ClientAuthError::BadCredentials => "client authentication failed",
            ClientAuthError::Revoked => "the key has been revoked",
            ClientAuthError::Disabled => "the key is disabled",
            ClientAuthError::Expired => "the key has expired",
            ClientAuthError::SourceNotAllowed => "this key may not be used from this address",
            ClientAuthError::OwnerDisabled => "the key's owner is disabled",
            ClientAuthError::Throttled(_) => "too many failed authentications; retry later",
            ClientAuthError::Storage(_) => "the database is unavailable",
            ClientAuthError::Assertion(why) => why,
            ClientAuthError::Certificate(why) => why,
        }
    }

    /// Why, for the operator's log line: unlike [`Self::message`], it tells
    /// an unknown client from a wrong secret (noted where that is known).
    fn log_reason(&self) -> &'static str {
        match self {
            ClientAuthError::BadCredentials => "bad credentials",
            ClientAuthError::Revoked => "revoked",
            ClientAuthError::Disabled => "disabled",
            ClientAuthError::Expired => "expired",
            ClientAuthError::SourceNotAllowed => "address not allowed",
            ClientAuthError::OwnerDisabled => "owner disabled",
            ClientAuthError::Throttled(_) => "locked after repeated failures",
            ClientAuthError::Assertion(why) => why,
            ClientAuthError::Certificate(why) => why,
            ClientAuthError::Storage(_) => "database unavailable",
        }
    }

    /// Whether this outcome counts toward the failure throttle.
    pub(super) fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            ClientAuthError::BadCredentials
                | ClientAuthError::SourceNotAllowed
                | ClientAuthError::Assertion(_)
                | ClientAuthError::Certificate(_)
        )
    }
}

/// Notes the key a request names before it is authenticated, so that a
/// refusal is counted for it (and the log line names it): only a well-formed
/// client ID, never raw request text.
pub fn note_key(kind: &'static str, client_id: &str) {
    if ClientId::is_well_formed(client_id) {
        crate::telemetry::request::note_credential(kind, Some(client_id));
    }
}

/// Authenticates a client ID and secret (the OAuth endpoints). `client_id`
/// is the raw text the client sent: failures are throttled per that text and
/// `address`, and a malformed ID or secret never reaches the database.
pub async fn authenticate(
    service: &Service,
    client_id: &str,
    secret: &str,
    address: IpAddr,
) -> Result<AuthenticatedKey, ClientAuthError> {
    if let Some(retry_after) = service.throttle.check(client_id, address) {
        request::note_refusal("locked after repeated failures");
        return Err(ClientAuthError::Throttled(retry_after));
    }
    let outcome = match (ClientId::parse(client_id), ClientSecret::parse(secret)) {
        (Ok(id), Ok(secret)) => check_client_secret(service, &id, &secret).await,
        (Err(_), _) => {
            request::note_refusal("malformed client ID");
            Err(ClientAuthError::BadCredentials)
        }
        (_, Err(_)) => {
            request::note_refusal("malformed secret");
            Err(ClientAuthError::BadCredentials)
        }
    };
    let outcome = outcome.and_then(|key| key.check_source(Some(address)).map(|()| key));
    finish(service, outcome, client_id, address, UseKind::Token)
}

/// Authenticates a client ID by the certificate the client presented
/// (RFC 8705 §2): one of the key's registered certificates
/// (`self_signed_tls_client_auth`), or one that chains to the configured
/// CAs and shows the key's subject (`tls_client_auth`). Throttled and
/// counted like a wrong secret; a refusal for a known key is audited with
/// the certificate's thumbprint.
pub async fn authenticate_certificate(
    service: &Service,
    client_id: &str,
    presented: &PresentedCertificate,
    address: IpAddr,
) -> Result<AuthenticatedKey, ClientAuthError> {
    if let Some(retry_after) = service.throttle.check(client_id, address) {
        request::note_refusal("locked after repeated failures");
        return Err(ClientAuthError::Throttled(retry_after));
    }
    let outcome = match ClientId::parse(client_id) {
        Ok(id) => check_certificate(service, &id, presented, address).await,
        Err(_) => {
            request::note_refusal("malformed client ID");
            Err(ClientAuthError::BadCredentials)
        }
    };
    let outcome = outcome.and_then(|key| key.check_source(Some(address)).map(|()| key));
    finish(service, outcome, client_id, address, UseKind::Token)
}

async fn check_certificate(
    service: &Service,
    client_id: &ClientId,
    presented: &PresentedCertificate,
    address: IpAddr,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let found = service
        .credentials
        .key_by_client_id(&service.store, client_id.as_str())
        .await?;
    let Some(key) = found else {
        request::note_refusal("unknown client");
        return Err(ClientAuthError::BadCredentials);
    };
    // The key's company sees who tried its key with which certificate.
    let tenant_id = key.tenant_id().to_owned();
    let refused = |reason: &'static str, error: ClientAuthError| async move {
        request::note_refusal(reason);
        super::audit::record_system(
            &service.store,
            Event::new("key.certificate_refused")
                .tenant(&tenant_id)
                .target(client_id.as_str())
                .detail(format!(
                    "x5t#S256={} from={address} reason={reason}",
                    presented.thumbprint()
                )),
        )
        .await;
        Err(error)
    };
    let Some(method) = key.certificates() else {
        return refused(
            "the key has no certificate",
            ClientAuthError::BadCredentials,
        )
        .await;
    };
    if method.registered.contains(presented.thumbprint()) {
        return key.check(now());
    }
    let Some(subject) = &method.subject else {
        return refused(
            "certificate not registered",
            ClientAuthError::BadCredentials,
        )
        .await;
    };
    if let Err(refusal) = service.client_authorities.verify(presented) {
        return refused(
            refusal.message(),
            ClientAuthError::Certificate(refusal.message()),
        )
        .await;
    }
    if !subject.is_shown_by(presented.leaf_der()) {
        return refused(
            "certificate subject does not match",
            ClientAuthError::BadCredentials,
        )
        .await;
    }
    key.check(now())
}

/// A `Client-Cert` header (RFC 9440) from a peer that is not one of
/// `trusted_proxies`: ignored (a client must not name its own
/// certificate), and audited, since it means a proxy is misconfigured or
/// someone is trying: in the company of the key the request names, if it
/// names a known one; else as a system event.
pub async fn untrusted_certificate_header(
    service: &Service,
    peer: Option<IpAddr>,
    client_id: Option<&str>,
) {
    request::note_refusal("Client-Cert header from an untrusted peer ignored");
    let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    let key = match client_id.and_then(|id| ClientId::parse(id).ok()) {
        Some(id) => service
            .credentials
            .key_by_client_id(&service.store, id.as_str())
            .await
            .ok()
            .flatten()
            .map(|key| (id, key)),
        None => None,
    };
    let detail = format!("from={peer}: not in trusted_proxies; the header was ignored");
    let event = Event::new("client_cert.untrusted_header").detail(detail);
    match &key {
        Some((id, key)) => {
            let event = event.tenant(key.tenant_id()).target(id.as_str());
            super::audit::record_system(&service.store, event).await;
        }
        None => super::audit::record_system(&service.store, event).await,
    }
}

/// Authenticates a secret presented on its own (`x-api-key`, `Bearer kps_…`):
/// its digest is unique, so it finds its key without a client ID. Failures
/// are throttled per the secret's first characters and the address, so one
/// integration's typos never lock out another key; a key that proves itself
/// is never refused because of the address's other failures.
pub async fn authenticate_secret(
    service: &Service,
    secret: &str,
    address: IpAddr,
) -> Result<AuthenticatedKey, ClientAuthError> {
    // 12 characters: the prefix and 8 random ones, 47 bits: two live keys
    // practically never share a bucket, and the bucket says nothing useful.
    let bucket: String = secret.chars().take(12).collect();
    if let Some(retry_after) = service.throttle.check_client(&bucket, address) {
        crate::telemetry::request::note_refusal("locked after repeated failures");
        return Err(ClientAuthError::Throttled(retry_after));
    }
    let outcome = match ClientSecret::parse(secret) {
        Ok(secret) => {
            let key = service
                .credentials
                .key_by_digest(&service.store, &secret.digest())
                .await?;
            key.ok_or(ClientAuthError::BadCredentials)
                .and_then(|key| key.check(now()))
                .and_then(|key| key.check_source(Some(address)).map(|()| key))
        }
        Err(_) => Err(ClientAuthError::BadCredentials),
    };
    if outcome
        .as_ref()
        .is_err_and(ClientAuthError::counts_as_failure)
        && let Some(retry_after) = service.throttle.check(&bucket, address)
    {
        service.throttle.record_failure(&bucket, address);
        crate::telemetry::request::note_refusal("locked after repeated failures");
        return Err(ClientAuthError::Throttled(retry_after));
    }
    finish(service, outcome, &bucket, address, UseKind::Direct)
}

/// Counts a failure, or notes a use of the key (when, from where, how).
pub(super) fn finish(
    service: &Service,
    outcome: Result<AuthenticatedKey, ClientAuthError>,
    bucket: &str,
    address: IpAddr,
    kind: UseKind,
) -> Result<AuthenticatedKey, ClientAuthError> {
    match &outcome {
        Ok(key) => service
            .last_used
            .touch(&key.key_id, now(), Some(address), kind),
        Err(err) => {
            request::note_refusal(err.log_reason());
            if err.counts_as_failure() {
                service.throttle.record_failure(bucket, address);
            }
        }
    }
    outcome
}

/// Through the credential cache: a key read before costs no database work
/// (see `credential_cache`).
async fn check_client_secret(
    service: &Service,
    client_id: &ClientId,
    secret: &ClientSecret,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let presented = secret.digest();
    let found = service
        .credentials
        .key_by_client_id(&service.store, client_id.as_str())
        .await?;
    let Some(key) = found else {
        // Same work as a known client ID, so timing does not tell them apart.
        let _ = presented.matches(&unknown_client_digest());
        request::note_refusal("unknown client");
        return Err(ClientAuthError::BadCredentials);
    };
    if !presented.matches(key.digest()) {
        request::note_refusal("wrong secret");
        return Err(ClientAuthError::BadCredentials);
    }
    key.check(now())
}

/// The key behind `client_id` as it stands now, for a token issued to it
/// earlier: whether it is still live (not revoked, disabled or expired, its
/// owner active), and what it may do now. Its allow-list is the caller's to
/// check ([`AuthenticatedKey::check_source`]).
pub async fn current_key(
    store: &Store,
    client_id: &str,
) -> Result<AuthenticatedKey, ClientAuthError> {
    if crate::domain::exchange::is_rule_id(client_id) {
        return current_rule(store, client_id).await;
    }
    let row = store
        .find_key_for_auth(client_id)
        .await?
        .ok_or(ClientAuthError::Revoked)?;
    authorise(row, now())
}

/// The rule behind a token it granted, as it stands now: `client_id`s of
/// such tokens are rule ids (see [`current_key`]).
async fn current_rule(
    service_store: &crate::storage::Store,
    rule_id: &str,
) -> Result<AuthenticatedKey, ClientAuthError> {
    let row = service_store
        .find_rule_for_auth(rule_id)
        .await?
        .ok_or(ClientAuthError::Revoked)?;
    let status: UserStatus = row
        .user_status
        .parse()
        .map_err(|e: String| crate::storage::StorageError::Corrupt(e))?;
    if status != UserStatus::Active {
        return Err(ClientAuthError::OwnerDisabled);
    }
    let (role, permissions) = super::stored_permissions(&row.user_role, &row.user_permissions)?;
    let scopes = ScopeSet::parse(&row.scopes)
        .map_err(|e| crate::storage::StorageError::Corrupt(e.to_string()))?
        .intersection(&permissions);
    Ok(AuthenticatedKey {
        key_id: row.rule_id.clone(),
        client_id: row.rule_id,
        tenant_id: row.tenant_id,
        owner_id: row.user_id,
        owner_role: role,
        scopes,
        token_ttl_seconds: None,
        expires_at: None,
        allowed_sources: crate::domain::SourceAllowList::from_stored(None)
            .map_err(crate::storage::StorageError::Corrupt)?,
        rate_limit: None,
        require_dpop: false,
    })
}

fn unknown_client_digest() -> SecretDigest {
    SecretDigest::from_hex(&"0".repeat(64)).unwrap_or_else(|| ClientSecret::generate().digest())
}

/// The checks after the secret matched: status, expiry, owner, scopes.
/// Revoked before disabled before expired, as `KeyStatus` orders them.
pub(super) fn authorise(
    row: KeyAuthRow,
    at: UnixTime,
) -> Result<AuthenticatedKey, ClientAuthError> {
    if row.revoked_at.is_some() {
        return Err(ClientAuthError::Revoked);
    }
    if row.disabled_at.is_some() {
        return Err(ClientAuthError::Disabled);
    }
    if row.expires_at.is_some_and(|e| e <= at) {
        return Err(ClientAuthError::Expired);
    }
    let status: UserStatus = row
        .owner_status
        .parse()
        .map_err(|e: String| StorageError::Corrupt(e))?;
    if status != UserStatus::Active {
        return Err(ClientAuthError::OwnerDisabled);
    }
    let (owner_role, permissions) =
        super::stored_permissions(&row.owner_role, &row.owner_permissions)?;
    let scopes = match &row.scopes {
        None => permissions,
        Some(own) => ScopeSet::parse(own)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .intersection(&permissions),
    };
    let allowed_sources = SourceAllowList::from_stored(row.allowed_sources.as_deref())
        .map_err(StorageError::Corrupt)?;
    let own = RateLimit::from_stored(
        row.rate_limit_requests,
        row.rate_limit_per_seconds,
        row.rate_limit_burst,
    )
    .map_err(|e| StorageError::Corrupt(format!("key {}: {e}", row.id)))?;
    let company_default = RateLimit::from_stored(
        row.default_rate_limit_requests,
        row.default_rate_limit_per_seconds,
        row.default_rate_limit_burst,
    )
    .map_err(|e| StorageError::Corrupt(format!("tenant {}: {e}", row.tenant_id)))?;
    Ok(AuthenticatedKey {
        key_id: row.id,
        client_id: row.client_id,
        tenant_id: row.tenant_id,
        owner_id: row.owner_id,
        owner_role,
        scopes,
        token_ttl_seconds: row.token_ttl_seconds,
        expires_at: row.expires_at,
        allowed_sources,
        rate_limit: own.or(company_default),
        require_dpop: row.require_dpop != 0,
    })
}
