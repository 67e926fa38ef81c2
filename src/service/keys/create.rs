//! Creating a key: for whom (people only for themselves), with which
//! scopes, and how it authenticates (secret, public keys or both).

use std::time::Duration;

use uuid::Uuid;

use super::{
    KeyControls, KeyRateLimit, KeyStatus, KeySummary, MAX_KEY_LIFETIME, auth_methods,
    new_key_scopes, parse_certificates, parse_description, parse_labels, parse_sources,
    parse_tls_subject, rate_columns, refuse_above_default, words,
};
use crate::domain::{
    ClientId, ClientSecret, Email, KEYS_MANAGE, KeyDescription, KeyName, Principal, UserStatus,
    WebhookSigningKey, now,
};
use crate::service::audit::{self, Event};
use crate::service::{Result, Service, ServiceError, authz};
use crate::storage::{KeyInsert, NewKey, UserRow};

/// A key just created: the only moment its secret exists outside the caller.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: KeySummary,
    pub secret: ClientSecret,
    /// Derived from the secret; shown once with it, for receivers of signed
    /// webhooks.
    pub webhook_signing_key: WebhookSigningKey,
}

pub struct NewKeyRequest<'a> {
    /// The owner's email; `None`: the calling user. Only the operator may
    /// create keys for someone else.
    pub owner_email: Option<&'a str>,
    pub name: &'a str,
    /// `None`: the key holds whatever its owner is permitted, now and later
    /// (or, created through a key or token, exactly that credential's scopes).
    pub scopes: Option<&'a str>,
    pub expires_in: Option<Duration>,
    pub token_ttl: Option<Duration>,
    /// Allow AWS Signature Version 4: the secret is then kept, sealed.
    pub sigv4: bool,
}

pub(super) async fn find_user_by_email(service: &Service, email: &str) -> Result<UserRow> {
    let email = Email::parse(email).map_err(ServiceError::Invalid)?;
    service
        .store
        .find_user_by_email(email.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user with email `{email}`")))
}

/// The user a new key will act as.
async fn new_key_owner(
    service: &Service,
    principal: &Principal,
    owner_email: Option<&str>,
) -> Result<UserRow> {
    let owner = match (principal.user_id(), owner_email) {
        (_, Some(email)) => find_user_by_email(service, email).await?,
        (Some(user_id), None) => service
            .store
            .find_user_by_id(user_id)
            .await?
            .ok_or_else(|| ServiceError::CredentialRevoked("the calling user no longer exists"))?,
        (None, None) => {
            return Err(ServiceError::Invalid(
                "name the user the key acts as".to_owned(),
            ));
        }
    };
    if let Some(user_id) = principal.user_id()
        && user_id != owner.id
    {
        return Err(ServiceError::Forbidden(
            "you may create keys only for yourself".to_owned(),
        ));
    }
    if owner.status != UserStatus::Active.as_str() {
        return Err(ServiceError::Invalid(format!(
            "user `{}` is disabled and cannot hold new keys",
            owner.email
        )));
    }
    Ok(owner)
}

pub async fn create_key(
    service: &Service,
    principal: &Principal,
    request: NewKeyRequest<'_>,
) -> Result<CreatedKey> {
    create_key_with(service, principal, request, KeyControls::default()).await
}

/// [`create_key`] with a description, labels and an allow-list.
pub async fn create_key_with(
    service: &Service,
    principal: &Principal,
    request: NewKeyRequest<'_>,
    controls: KeyControls<'_>,
) -> Result<CreatedKey> {
    let created = create_client(
        service,
        principal,
        request,
        controls,
        ClientAuthSetup::default(),
    )
    .await?;
    let secret = created.secret.ok_or_else(|| {
        ServiceError::Internal("a key created with a secret came back without one".to_owned())
    })?;
    Ok(CreatedKey {
        key: created.key,
        secret,
        webhook_signing_key: created.webhook_signing_key,
    })
}

/// How a new key authenticates at the OAuth endpoints: its secret, its
/// public keys (`private_key_jwt`, RFC 7523), or both.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthSetup<'a> {
    /// False: no secret is shown or kept (only the digest of one thrown
    /// away, so none can match); the key then needs a public key.
    pub secret: bool,
    /// JWKs (ES256, EdDSA, RS256 public keys).
    pub public_keys: &'a [serde_json::Value],
}

impl Default for ClientAuthSetup<'_> {
    fn default() -> Self {
        ClientAuthSetup {
            secret: true,
            public_keys: &[],
        }
    }
}

/// A key just created with [`create_client`]: its secret, if it has one,
/// exists outside the caller only now.
#[derive(Debug)]
pub struct CreatedClient {
    pub key: KeySummary,
    /// `None` for a key created without a secret.
    pub secret: Option<ClientSecret>,
    pub webhook_signing_key: WebhookSigningKey,
    pub public_keys: Vec<crate::service::public_key_values::PublicKeySummary>,
}

/// [`create_key_with`], choosing how the key authenticates: with a secret,
/// public keys, or both.
pub async fn create_client(
    service: &Service,
    principal: &Principal,
    request: NewKeyRequest<'_>,
    controls: KeyControls<'_>,
    auth: ClientAuthSetup<'_>,
) -> Result<CreatedClient> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let public_keys = crate::service::public_key_values::parse_new_public_keys(auth.public_keys)?;
    let tls_subject = controls
        .tls_client_auth
        .flatten()
        .map(parse_tls_subject)
        .transpose()?;
    let certificates = controls
        .tls_client_certificates
        .map(parse_certificates)
        .transpose()?
        .unwrap_or_default();
    if !auth.secret && public_keys.is_empty() && tls_subject.is_none() && certificates.is_empty() {
        return Err(ServiceError::Invalid(
            "a key without a secret needs at least one public key (public_keys) or a \
             certificate (tls_client_auth, tls_client_certificates), or it could never \
             authenticate"
                .to_owned(),
        ));
    }
    let stored_subject = tls_subject.as_ref().map(|s| s.to_stored());
    let stored_certificates = certificates.to_stored();
    if !auth.secret && request.sigv4 {
        return Err(ServiceError::Invalid(
            "SigV4 signs with the secret: a key without a secret cannot allow it".to_owned(),
        ));
    }
    let name = KeyName::parse(request.name).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let description = controls
        .description
        .map(parse_description)
        .transpose()?
        .flatten();
    let labels = controls
        .labels
        .map(parse_labels)
        .transpose()?
        .unwrap_or_default();
    let allowed_sources = controls
        .allowed_sources
        .map(parse_sources)
        .transpose()?
        .unwrap_or_default();
    let stored_labels = labels.to_stored();
    let stored_sources = allowed_sources.to_stored();
    let owner = new_key_owner(service, &principal, request.owner_email).await?;
    let scopes = new_key_scopes(&principal, &owner, request.scopes)?.map(|s| s.to_string());
    let rate_limit = controls.rate_limit.flatten();
    let company_default =
        crate::service::tenants::default_rate_limit(service, &owner.tenant_id).await?;
    refuse_above_default(&principal, rate_limit, company_default)?;
    let max_ttl = service.max_token_ttl();
    let token_ttl_seconds = match request.token_ttl {
        None => None,
        Some(ttl) if ttl.is_zero() || ttl > max_ttl => {
            return Err(ServiceError::Invalid(format!(
                "the token lifetime must be between 1 and {} seconds",
                max_ttl.as_secs()
            )));
        }
        Some(ttl) => Some(ttl.as_secs() as i64),
    };
    let created_at = now();
    let expires_at = match request.expires_in {
        None => None,
        Some(d) if d.is_zero() => {
            return Err(ServiceError::Invalid(
                "the expiry must be in the future".to_owned(),
            ));
        }
        Some(d) if d > MAX_KEY_LIFETIME => {
            return Err(ServiceError::Invalid(format!(
                "a key may expire at most {} seconds (ten years) from now",
                MAX_KEY_LIFETIME.as_secs()
            )));
        }
        Some(d) => Some(created_at + d.as_secs() as i64),
    };
    let limit = service.settings.max_active_keys_per_user;
    let id = Uuid::now_v7().to_string();
    let client_id = ClientId::generate();
    let secret = ClientSecret::generate();
    let digest = secret.digest().to_hex();
    let webhook_signing_key = WebhookSigningKey::derive(&secret);
    let stored_public_keys: Vec<_> = public_keys.iter().map(|k| k.to_new()).collect();
    let inserted = service
        .store
        .insert_key_within_limit(
            NewKey {
                id: &id,
                tenant_id: &owner.tenant_id,
                owner_id: &owner.id,
                client_id: client_id.as_str(),
                secret_digest: &digest,
                name: name.as_str(),
                scopes: scopes.as_deref(),
                token_ttl_seconds,
                expires_at,
                description: description.as_ref().map(KeyDescription::as_str),
                labels: stored_labels.as_deref(),
                allowed_sources: stored_sources.as_deref(),
                webhook_key: &webhook_signing_key,
                rate_limit: rate_limit.map(rate_columns),
                sigv4_secret: request.sigv4.then_some(&secret),
                secret_enabled: auth.secret,
                public_keys: &stored_public_keys,
                require_dpop: controls.require_dpop.unwrap_or(false),
                tls_client_auth: stored_subject.as_deref(),
                tls_client_certificates: stored_certificates.as_deref(),
                now: created_at,
            },
            limit,
        )
        .await;
    // Instances may remember this client ID as unknown (the triggers tell
    // the others).
    service.credentials.forget_key(client_id.as_str());
    let signs_webhooks = match inserted? {
        KeyInsert::Inserted { signs_webhooks } => signs_webhooks,
        KeyInsert::LimitReached { .. } => return Err(ServiceError::KeyLimitReached { limit }),
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("key.create")
            .tenant(&owner.tenant_id)
            .target(client_id.as_str())
            .detail(create_detail(
                name.as_str(),
                request.sigv4,
                auth.secret,
                &public_keys,
            )),
    )
    .await;
    let key = KeySummary {
        id,
        client_id: client_id.to_string(),
        name: name.as_str().to_owned(),
        tenant_id: owner.tenant_id,
        owner_id: owner.id,
        owner_email: owner.email,
        scopes: scopes.as_deref().map(words),
        token_ttl_seconds,
        status: KeyStatus::Active,
        created_at,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        revoked_by: None,
        signs_webhooks,
        disabled_at: None,
        rolled_to: None,
        description: description.map(|d| d.as_str().to_owned()),
        labels,
        allowed_sources: allowed_sources.to_strings(),
        last_used_from: None,
        last_used_kind: None,
        has_webhook_signing_key: true,
        rate_limit: KeyRateLimit::of(rate_limit, company_default),
        sigv4: request.sigv4,
        secret_enabled: auth.secret,
        auth_methods: auth_methods(
            auth.secret,
            public_keys.len() as i64,
            tls_subject.is_some(),
            !certificates.is_empty(),
        ),
        public_key_count: public_keys.len() as i64,
        require_dpop: controls.require_dpop.unwrap_or(false),
        tls_client_auth: stored_subject.clone(),
        tls_client_certificates: certificates.iter().map(|t| t.to_string()).collect(),
    };
    Ok(CreatedClient {
        key,
        // A key without a secret never shows the one whose digest it keeps.
        secret: auth.secret.then_some(secret),
        webhook_signing_key,
        public_keys: public_keys.iter().map(|k| k.summary(created_at)).collect(),
    })
}

/// What the audit trail says of a new key: never a secret, and the
/// thumbprints of its public keys.
fn create_detail(
    name: &str,
    sigv4: bool,
    secret: bool,
    public_keys: &[crate::service::public_key_values::ParsedPublicKey],
) -> String {
    let mut detail = format!("name={name}");
    if sigv4 {
        detail.push_str("; sigv4 allowed");
    }
    if !secret {
        detail.push_str("; no secret");
    }
    for key in public_keys {
        detail.push_str(&format!("; public key {}", key.thumbprint()));
    }
    detail
}
