//! Keys: create, list, show, change, roll, disable, enable, revoke, delete,
//! and the webhook-signing mark. Every operation needs `keys:manage`;
//! members act only on their own keys, admins on every key of their
//! company, the operator on any key. Rolling is the owner's (or the
//! operator's) alone: the new secret acts as the owner.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, Event};
use super::{Result, Service, ServiceError, authz, preview, stored_permissions};
use crate::domain::{
    ClientId, ClientSecret, Email, KEYS_MANAGE, KeyDescription, KeyLabels, KeyName, Principal,
    RateLimit, Role, ScopeSet, SourceAllowList, UnixTime, UserStatus, WebhookSigningKey, now,
};
use crate::storage::{
    KeyDetails, KeyFilter, KeyInsert, KeyRevocation, KeyRoll, KeyRow, NewKey, RateColumns,
    StorageError, UserRow,
};

/// The longest expiry a key may be given: ten years.
pub const MAX_KEY_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a rolled key keeps working when the caller does not say: 24 hours.
pub const DEFAULT_ROLL_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A key's status. When several apply, the first here wins: revoked, then
/// disabled, then expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
    Disabled,
    Expired,
}

impl KeyStatus {
    pub fn of(
        revoked_at: Option<i64>,
        disabled_at: Option<i64>,
        expires_at: Option<i64>,
        at: UnixTime,
    ) -> Self {
        if revoked_at.is_some() {
            KeyStatus::Revoked
        } else if disabled_at.is_some() {
            KeyStatus::Disabled
        } else if expires_at.is_some_and(|e| e <= at) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Expired => "expired",
        }
    }
}

/// A key as shown to people: never the secret, never its digest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeySummary {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub owner_email: String,
    /// `null` when the key holds whatever its owner is permitted.
    pub scopes: Option<Vec<String>>,
    pub token_ttl_seconds: Option<i64>,
    pub status: KeyStatus,
    /// Unix seconds, like every `_at` member.
    #[schema(value_type = i64)]
    pub created_at: UnixTime,
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub last_used_at: Option<UnixTime>,
    #[schema(value_type = Option<i64>)]
    pub revoked_at: Option<UnixTime>,
    pub revoked_by: Option<String>,
    /// Whether this key signs its owner's webhook requests.
    pub signs_webhooks: bool,
    /// Set while the key is disabled (refused like a revoked key, but it can
    /// be enabled again).
    #[schema(value_type = Option<i64>)]
    pub disabled_at: Option<UnixTime>,
    /// The client ID of the key this one was rolled to; this one then
    /// expires at the end of the grace period.
    pub rolled_to: Option<String>,
    /// What the key is for, at length.
    pub description: Option<String>,
    /// Labels such as `{"env": "prod"}`; filter with `?label=env=prod`.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub labels: KeyLabels,
    /// CIDR ranges the key may be used from; empty: anywhere.
    pub allowed_sources: Vec<String>,
    /// The address of the last use.
    pub last_used_from: Option<String>,
    /// How the key was last used: `token` (the OAuth endpoints), `direct`
    /// (the secret presented on its own) or `sigv4` (a request signed with
    /// AWS Signature Version 4).
    #[schema(examples("token", "direct", "sigv4"))]
    pub last_used_kind: Option<String>,
    /// Whether the key has a webhook-signing key. Keys created before
    /// webhook signing have none: they cannot take the webhook-signing mark,
    /// so mark a newer key.
    pub has_webhook_signing_key: bool,
    /// The key's rate for the report and webhook APIs, and whether it is
    /// its own or its company's default; `null`: unlimited.
    pub rate_limit: Option<KeyRateLimit>,
    /// Whether the key may sign requests with AWS Signature Version 4. Such
    /// a key's secret is kept, sealed under the master key (SigV4 needs the
    /// secret itself); every other key keeps only its digest.
    pub sigv4: bool,
    /// Whether the key authenticates with its secret; false for a key
    /// created without one. Listed as `auth_methods`.
    #[serde(skip)]
    pub secret_enabled: bool,
    /// How the key may authenticate at the OAuth endpoints: `client_secret`
    /// (HTTP Basic, the body, or `x-api-key`) unless it was created without
    /// a secret, and `private_key_jwt` while it holds public keys.
    #[schema(examples(json!(["client_secret", "private_key_jwt"])))]
    pub auth_methods: Vec<&'static str>,
    /// How many public keys (`private_key_jwt`) the key holds; see
    /// `GET /api/v1/keys/{id}/public-keys`.
    pub public_key_count: i64,
    /// Whether the key's token requests must carry a DPoP proof (RFC 9449):
    /// its tokens are then always bound to the client's key.
    pub require_dpop: bool,
}

/// What [`KeySummary::auth_methods`] lists.
pub fn auth_methods(secret_enabled: bool, public_key_count: i64) -> Vec<&'static str> {
    let mut methods = Vec::with_capacity(2);
    if secret_enabled {
        methods.push("client_secret");
    }
    if public_key_count > 0 {
        methods.push("private_key_jwt");
    }
    methods
}

/// A key's rate as listings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyRateLimit {
    /// Requests per period.
    pub requests: u32,
    /// The period, in seconds.
    pub per_seconds: u32,
    /// Requests allowed at once.
    pub burst: u32,
    pub source: RateLimitSource,
}

/// Where a key's rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitSource {
    /// The key's own.
    Key,
    /// Its company's default: the key has none of its own.
    Default,
}

impl KeyRateLimit {
    /// The key's own rate, else its company's default, else none.
    pub fn of(own: Option<RateLimit>, company_default: Option<RateLimit>) -> Option<Self> {
        let (limit, source) = match (own, company_default) {
            (Some(own), _) => (own, RateLimitSource::Key),
            (None, Some(company)) => (company, RateLimitSource::Default),
            (None, None) => return None,
        };
        Some(KeyRateLimit {
            requests: limit.requests(),
            per_seconds: limit.per_seconds(),
            burst: limit.burst(),
            source,
        })
    }

    fn limit(self) -> Option<RateLimit> {
        RateLimit::new(
            self.requests.into(),
            self.per_seconds.into(),
            Some(self.burst.into()),
        )
        .ok()
    }
}

/// A rate as the storage layer's three columns.
fn rate_columns(limit: RateLimit) -> RateColumns {
    let (requests, per_seconds, burst) = limit.to_stored();
    RateColumns {
        requests,
        per_seconds,
        burst,
    }
}

/// Splits a stored space-separated list (scopes, address ranges).
fn words(stored: &str) -> Vec<String> {
    stored
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl KeySummary {
    fn from_row(row: KeyRow, at: UnixTime) -> Result<Self, StorageError> {
        let labels = KeyLabels::from_stored(row.labels.as_deref())
            .map_err(|e| StorageError::Corrupt(format!("key {}: {e}", row.id)))?;
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
        Ok(KeySummary {
            status: KeyStatus::of(row.revoked_at, row.disabled_at, row.expires_at, at),
            scopes: row.scopes.as_deref().map(words),
            allowed_sources: row
                .allowed_sources
                .as_deref()
                .map(words)
                .unwrap_or_default(),
            labels,
            id: row.id,
            client_id: row.client_id,
            name: row.name,
            tenant_id: row.tenant_id,
            owner_id: row.owner_id,
            owner_email: row.owner_email,
            token_ttl_seconds: row.token_ttl_seconds,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            revoked_by: row.revoked_by,
            signs_webhooks: row.signs_webhooks != 0,
            disabled_at: row.disabled_at,
            rolled_to: row.rolled_to,
            description: row.description,
            last_used_from: row.last_used_from,
            last_used_kind: row.last_used_kind,
            has_webhook_signing_key: row.has_webhook_key != 0,
            rate_limit: KeyRateLimit::of(own, company_default),
            sigv4: row.sigv4 != 0,
            secret_enabled: row.secret_enabled != 0,
            auth_methods: auth_methods(row.secret_enabled != 0, row.public_keys),
            public_key_count: row.public_keys,
            require_dpop: row.require_dpop != 0,
        })
    }

    /// The key's own rate (not its company's default), if it has one.
    pub fn own_rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
            .filter(|r| r.source == RateLimitSource::Key)
            .and_then(KeyRateLimit::limit)
    }

    /// The phrase a person types to confirm deleting this key.
    pub fn deletion_phrase(&self) -> String {
        format!("delete {}", self.client_id)
    }
}

/// A key just created: the only moment its secret exists outside the caller.
#[derive(Debug)]
pub struct CreatedKey {
    pub key: KeySummary,
    pub secret: ClientSecret,
    /// Derived from the secret; shown once with it, for receivers of signed
    /// webhooks.
    pub webhook_signing_key: WebhookSigningKey,
}

/// A key rolled: its successor, with the secret, and the old key as it is
/// now (expiring, naming its successor in `rolled_to`).
#[derive(Debug)]
pub struct RolledKey {
    pub new: CreatedKey,
    pub old: KeySummary,
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

/// A key's description, labels, allow-list and rate, as a caller sent
/// them; each `None` leaves it as it is (at creation: without one).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyControls<'a> {
    /// Free text; empty clears it.
    pub description: Option<&'a str>,
    /// Name/value pairs; the whole set (empty clears it).
    pub labels: Option<&'a [(String, String)]>,
    /// CIDR ranges; the whole list (empty: anywhere).
    pub allowed_sources: Option<&'a [String]>,
    /// The key's own rate for reports and webhooks; `Some(None)` removes
    /// it (the company's default applies, if any).
    pub rate_limit: Option<Option<RateLimit>>,
    /// Whether token requests must carry a DPoP proof (RFC 9449).
    pub require_dpop: Option<bool>,
}

impl KeyControls<'_> {
    fn is_empty(&self) -> bool {
        self.require_dpop.is_none()
            && self.description.is_none()
            && self.labels.is_none()
            && self.allowed_sources.is_none()
            && self.rate_limit.is_none()
    }
}

/// Members may give a key at most their company's default rate: the
/// default is what the admins chose for everyone, and only they go beyond
/// it. Without a default, a rate only ever restricts a key.
fn refuse_above_default(
    principal: &Principal,
    rate: Option<RateLimit>,
    company_default: Option<RateLimit>,
) -> Result<()> {
    let is_member = principal
        .user
        .as_ref()
        .is_some_and(|user| user.role != Role::Admin);
    match (rate, company_default) {
        (Some(rate), Some(ceiling)) if is_member && rate.exceeds(ceiling) => {
            Err(ServiceError::Forbidden(format!(
                "a member may give a key at most the company's default rate ({ceiling}); \
                 {rate} is above it: ask an admin"
            )))
        }
        _ => Ok(()),
    }
}

/// A description as sent: empty or blank means none.
fn parse_description(raw: &str) -> Result<Option<KeyDescription>> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    KeyDescription::parse(raw)
        .map(Some)
        .map_err(|e| ServiceError::Invalid(e.to_string()))
}

fn parse_labels(pairs: &[(String, String)]) -> Result<KeyLabels> {
    KeyLabels::parse(pairs).map_err(|e| ServiceError::Invalid(e.to_string()))
}

fn parse_sources(ranges: &[String]) -> Result<SourceAllowList> {
    SourceAllowList::parse(ranges)
        .map_err(|e| ServiceError::Invalid(format!("allowed_sources: {e}")))
}

async fn find_user_by_email(service: &Service, email: &str) -> Result<UserRow> {
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

/// The scopes to store for a new key. Never beyond the owner's permissions;
/// created through a key or token, never beyond that credential's scopes.
fn new_key_scopes(
    principal: &Principal,
    owner: &UserRow,
    requested: Option<&str>,
) -> Result<Option<ScopeSet>> {
    let (_, permitted) = stored_permissions(&owner.role, &owner.permissions)?;
    // A session holds its user's permissions; a key or token may hold less.
    let ceiling = principal
        .credential
        .is_delegated()
        .then(|| principal.scopes.intersection(&permitted));
    let Some(raw) = requested else {
        return Ok(ceiling);
    };
    let wanted = ScopeSet::parse_known(raw).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if wanted.is_empty() {
        return Err(ServiceError::Invalid(
            "a key needs at least one scope; leave scopes out to inherit the owner's permissions"
                .to_owned(),
        ));
    }
    let beyond = wanted.missing_from(&permitted);
    if !beyond.is_empty() {
        return Err(ServiceError::Invalid(format!(
            "the owner is not permitted these scopes: {beyond}"
        )));
    }
    if let Some(ceiling) = &ceiling {
        let beyond = wanted.missing_from(ceiling);
        if !beyond.is_empty() {
            return Err(ServiceError::Invalid(format!(
                "a key cannot create a key with more than its own scopes; not held: {beyond}"
            )));
        }
    }
    Ok(Some(wanted))
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
    pub public_keys: Vec<super::public_key_values::PublicKeySummary>,
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
    let public_keys = super::public_key_values::parse_new_public_keys(auth.public_keys)?;
    if !auth.secret && public_keys.is_empty() {
        return Err(ServiceError::Invalid(
            "a key without a secret needs at least one public key (public_keys), \
             or it could never authenticate"
                .to_owned(),
        ));
    }
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
    let company_default = super::tenants::default_rate_limit(service, &owner.tenant_id).await?;
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
        auth_methods: auth_methods(auth.secret, public_keys.len() as i64),
        public_key_count: public_keys.len() as i64,
        require_dpop: controls.require_dpop.unwrap_or(false),
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
    public_keys: &[super::public_key_values::ParsedPublicKey],
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

/// Which keys the operator lists; people always see what they may manage.
pub enum KeyListing<'a> {
    All,
    OwnedBy(&'a str),
    InTenant(&'a str),
}

/// The keys `principal` may manage: an admin's whole tenant, a member's own
/// keys; the operator's `listing`.
pub async fn list_keys(
    service: &Service,
    principal: &Principal,
    listing: KeyListing<'_>,
) -> Result<Vec<KeySummary>> {
    list_keys_labelled::<&str>(service, principal, listing, &[]).await
}

/// [`list_keys`], keeping only the keys that carry every one of `labels`
/// (each `name=value`).
pub async fn list_keys_labelled<S: AsRef<str>>(
    service: &Service,
    principal: &Principal,
    listing: KeyListing<'_>,
    labels: &[S],
) -> Result<Vec<KeySummary>> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let wanted = labels
        .iter()
        .map(|raw| KeyLabels::parse_assignment(raw.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Invalid(format!("label filter: {e}")))?;
    let filter = match (&principal.user, listing) {
        (Some(user), _) => KeyFilter {
            tenant_id: Some(user.tenant_id.clone()),
            owner_id: (user.role != Role::Admin).then(|| user.user_id.clone()),
        },
        (None, KeyListing::All) => KeyFilter::default(),
        (None, KeyListing::OwnedBy(email)) => KeyFilter {
            owner_id: Some(find_user_by_email(service, email).await?.id),
            ..KeyFilter::default()
        },
        (None, KeyListing::InTenant(tenant)) => KeyFilter {
            tenant_id: Some(super::tenants::find_tenant(service, tenant).await?.id),
            ..KeyFilter::default()
        },
    };
    let at = now();
    // A tenant's keys are few (a handful per user), so labels are matched
    // here rather than in SQL both databases would have to agree on.
    let mut keys = Vec::new();
    for row in service.store.list_keys(&filter).await? {
        let key = KeySummary::from_row(row, at)?;
        if key.labels.has_all(&wanted) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Finds a key `principal` may manage: another tenant's key does not exist
/// for them (404); a colleague's key is forbidden to a member (403).
pub async fn find_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    visible_key(service, &principal, key).await
}

/// [`find_key`] for a principal already checked.
pub(super) async fn visible_key(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<KeySummary> {
    let not_found =
        || ServiceError::NotFound(format!("no key with id or client ID `{}`", preview(key)));
    let found = service
        .store
        .find_key(key)
        .await?
        .map(|row| KeySummary::from_row(row, now()))
        .transpose()?
        .ok_or_else(not_found)?;
    match &principal.user {
        None => Ok(found),
        Some(user) if user.tenant_id != found.tenant_id => Err(not_found()),
        Some(user) if user.role == Role::Admin || user.user_id == found.owner_id => Ok(found),
        Some(_) => Err(ServiceError::Forbidden(
            "members may manage only their own keys".to_owned(),
        )),
    }
}

/// Revokes a key at once, always: a leaked key must stop working even if it
/// signs webhooks (the mark then moves to its owner's newest other active
/// key, or the owner is left without one). Revoking a revoked key is an
/// error, so a typo'd id never looks like success. Revoked keys never return.
pub async fn revoke_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    let already = || ServiceError::Conflict(format!("key {} is already revoked", found.client_id));
    if found.status == KeyStatus::Revoked {
        return Err(already());
    }
    let revocation = service
        .store
        .revoke_key(&found.id, principal.actor_label(), now())
        .await;
    service.credentials.forget_key(&found.client_id);
    service.sigv4_keys.forget(&found.id);
    let revocation = revocation?;
    let KeyRevocation::Revoked {
        signed_webhooks,
        mark_moved_to,
    } = revocation
    else {
        // Revoked by someone else between the lookup and now.
        return Err(already());
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("key.revoke")
            .tenant(&found.tenant_id)
            .target(&found.client_id),
    )
    .await;
    if signed_webhooks {
        let event = match &mark_moved_to {
            Some(successor) => Event::new("key.mark_webhook_signing")
                .target(successor)
                .detail(format!("moved from revoked key {}", found.client_id)),
            None => Event::new("key.unmark_webhook_signing")
                .target(&found.client_id)
                .detail("revoked; the owner has no other active key to sign webhooks".to_owned()),
        };
        audit::record(&service.store, &principal, event.tenant(&found.tenant_id)).await;
    }
    visible_key(service, &principal, &found.id).await
}

fn refuse_if_signing_webhooks(key: &KeySummary) -> Result<()> {
    // A disabled key keeps its mark: it may come back.
    if key.signs_webhooks && matches!(key.status, KeyStatus::Active | KeyStatus::Disabled) {
        return Err(ServiceError::Conflict(format!(
            "key {} signs webhooks and cannot be deleted: mark another key to sign webhooks, or revoke it first",
            key.client_id
        )));
    }
    Ok(())
}

/// Deletes a key. People must confirm with [`KeySummary::deletion_phrase`];
/// the operator's CLI need not. The key that signs webhooks is not deleted
/// while active: its signatures must stay explainable.
pub async fn delete_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    confirmation: Option<&str>,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    refuse_if_signing_webhooks(&found)?;
    if !principal.is_operator() {
        let phrase = found.deletion_phrase();
        if confirmation.map(str::trim) != Some(phrase.as_str()) {
            return Err(ServiceError::ConfirmationRequired { phrase });
        }
    }
    let deleted = service.store.delete_key(&found.id, now()).await;
    service.credentials.forget_key(&found.client_id);
    service.sigv4_keys.forget(&found.id);
    if !deleted? {
        return Err(ServiceError::NotFound(format!(
            "key {} was already deleted",
            found.client_id
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("key.delete")
            .tenant(&found.tenant_id)
            .target(&found.client_id),
    )
    .await;
    Ok(found)
}

/// Makes `key` the one that signs its owner's webhooks (the mark moves; it is
/// never on two keys of one owner).
pub async fn mark_webhook_signing(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    if found.status != KeyStatus::Active {
        return Err(ServiceError::Conflict(format!(
            "key {} is {} and cannot sign webhooks",
            found.client_id,
            found.status.as_str()
        )));
    }
    if !found.has_webhook_signing_key {
        return Err(ServiceError::Conflict(format!(
            "key {} was created before webhook signing and has no webhook-signing key; \
             mark a key created since",
            found.client_id
        )));
    }
    service
        .store
        .mark_webhook_signing(&found.owner_id, &found.id, now())
        .await?;
    audit::record(
        &service.store,
        &principal,
        Event::new("key.mark_webhook_signing")
            .tenant(&found.tenant_id)
            .target(&found.client_id),
    )
    .await;
    visible_key(service, &principal, &found.id).await
}

/// What [`update_key`] changes; `None` leaves that part as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyChange<'a> {
    pub name: Option<&'a str>,
    pub controls: KeyControls<'a>,
}

/// Changes a key's name, description, labels, allow-list or rate. A new
/// allow-list applies to the key's next authentication, and to its tokens
/// at Keyport's management endpoints at once; tokens issued before keep
/// the ranges they carry until they expire. A new rate applies to the key
/// presented directly at once, and to tokens issued from now on (a token
/// carries the rate it was issued with, in `kp_rl`). A member may not set
/// a rate above the company's default. A revoked key is not changed.
pub async fn update_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    change: KeyChange<'_>,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    if change.name.is_none() && change.controls.is_empty() {
        return Err(ServiceError::Invalid(
            "nothing to change: send name, description, labels, allowed_sources, rate_limit or require_dpop"
                .to_owned(),
        ));
    }
    if found.status == KeyStatus::Revoked {
        return Err(ServiceError::Conflict(format!(
            "key {} is revoked and cannot be changed",
            found.client_id
        )));
    }
    let name = match change.name {
        Some(raw) => KeyName::parse(raw)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?
            .as_str()
            .to_owned(),
        None => found.name.clone(),
    };
    let description = match change.controls.description {
        Some(raw) => parse_description(raw)?.map(|d| d.as_str().to_owned()),
        None => found.description.clone(),
    };
    let labels = match change.controls.labels {
        Some(pairs) => parse_labels(pairs)?,
        None => found.labels.clone(),
    };
    let allowed_sources = match change.controls.allowed_sources {
        Some(ranges) => parse_sources(ranges)?,
        None => SourceAllowList::parse(&found.allowed_sources).map_err(StorageError::Corrupt)?,
    };
    let rate_limit = match change.controls.rate_limit {
        Some(rate) => {
            let company_default =
                super::tenants::default_rate_limit(service, &found.tenant_id).await?;
            refuse_above_default(&principal, rate, company_default)?;
            rate
        }
        None => found.own_rate_limit(),
    };
    let stored_labels = labels.to_stored();
    let stored_sources = allowed_sources.to_stored();
    let updated = service
        .store
        .update_key_details(
            &found.id,
            KeyDetails {
                name: &name,
                description: description.as_deref(),
                labels: stored_labels.as_deref(),
                allowed_sources: stored_sources.as_deref(),
                rate_limit: rate_limit.map(rate_columns),
                require_dpop: change.controls.require_dpop.unwrap_or(found.require_dpop),
            },
            now(),
        )
        .await;
    service.credentials.forget_key(&found.client_id);
    if !updated? {
        return Err(ServiceError::NotFound(format!(
            "key {} was deleted",
            found.client_id
        )));
    }
    let mut changed: Vec<String> = Vec::new();
    if change.name.is_some() {
        changed.push("name".to_owned());
    }
    if change.controls.description.is_some() {
        changed.push("description".to_owned());
    }
    if change.controls.labels.is_some() {
        changed.push("labels".to_owned());
    }
    if change.controls.allowed_sources.is_some() {
        changed.push(format!(
            "allowed_sources=[{}]",
            allowed_sources.to_strings().join(" ")
        ));
    }
    match change.controls.rate_limit {
        Some(Some(rate)) => changed.push(format!("rate_limit=[{rate}]")),
        Some(None) => changed.push("rate_limit=none".to_owned()),
        None => {}
    }
    if let Some(required) = change.controls.require_dpop {
        changed.push(format!("require_dpop={required}"));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new("key.update")
            .tenant(&found.tenant_id)
            .target(&found.client_id)
            .detail(format!("changed {}", changed.join(", "))),
    )
    .await;
    visible_key(service, &principal, &found.id).await
}

/// Disables a key: from now on it is refused everywhere, exactly like a
/// revoked key (the token endpoint, `x-api-key`, its tokens at the
/// management endpoints, introspection), until [`enable_key`]. It keeps
/// its webhook-signing mark and still counts toward its owner's limit.
pub async fn disable_key(
    service: &Service,
    principal: &Principal,
    key: &str,
) -> Result<KeySummary> {
    set_disabled(service, principal, key, true).await
}

/// Enables a disabled key again, at once. Revoked keys never come back.
pub async fn enable_key(service: &Service, principal: &Principal, key: &str) -> Result<KeySummary> {
    set_disabled(service, principal, key, false).await
}

async fn set_disabled(
    service: &Service,
    principal: &Principal,
    key: &str,
    disable: bool,
) -> Result<KeySummary> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let found = visible_key(service, &principal, key).await?;
    let client_id = &found.client_id;
    if found.status == KeyStatus::Revoked {
        return Err(ServiceError::Conflict(if disable {
            format!("key {client_id} is revoked already, for good")
        } else {
            format!("key {client_id} is revoked, and a revoked key can never be enabled again")
        }));
    }
    let is_disabled = found.disabled_at.is_some();
    if disable == is_disabled {
        return Err(ServiceError::Conflict(format!(
            "key {client_id} is {} already",
            if disable { "disabled" } else { "enabled" }
        )));
    }
    let at = now();
    let changed = service
        .store
        .set_key_disabled(
            &found.id,
            disable.then_some((at, principal.actor_label())),
            at,
        )
        .await;
    service.credentials.forget_key(client_id);
    if disable {
        service.sigv4_keys.forget(&found.id);
    }
    if !changed? {
        return Err(ServiceError::Conflict(format!(
            "key {client_id} changed meanwhile (revoked, or {} by someone else)",
            if disable { "disabled" } else { "enabled" }
        )));
    }
    audit::record(
        &service.store,
        &principal,
        Event::new(if disable { "key.disable" } else { "key.enable" })
            .tenant(&found.tenant_id)
            .target(client_id),
    )
    .await;
    visible_key(service, &principal, &found.id).await
}

/// Refuses a key or token that would hand out a key holding more than it
/// holds itself (what [`new_key_scopes`] ensures at creation). `act`
/// completes "a key cannot … a key with more than its own scopes".
pub(super) fn refuse_beyond_caller(
    principal: &Principal,
    owner: &UserRow,
    key_scopes: Option<&[String]>,
    act: &str,
) -> Result<()> {
    if !principal.credential.is_delegated() {
        return Ok(());
    }
    let (_, permitted) = stored_permissions(&owner.role, &owner.permissions)?;
    let held = match key_scopes {
        None => permitted.clone(),
        Some(scopes) => ScopeSet::parse(&scopes.join(" "))
            .map_err(|e| StorageError::Corrupt(e.to_string()))?
            .intersection(&permitted),
    };
    let beyond = held.missing_from(&principal.scopes.intersection(&permitted));
    if beyond.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "a key cannot {act} a key with more than its own scopes; not held: {beyond}"
        )))
    }
}

/// Rolls a key: one call creates its successor (same owner, name, scopes,
/// token lifetime, allow-list, description, labels, rate and public keys; the same lifetime
/// the old key was given, counted from now), moves the webhook-signing mark
/// to it if the old key held it, and sets the old key to expire at the end
/// of `grace_seconds` (default 24 hours or `max_roll_grace_seconds` if that
/// is shorter; at most `max_roll_grace_seconds`;
/// an earlier expiry stays). The new key replaces the old one against the
/// active-key limit (a rolled key in its grace period does not count), so
/// an owner at the limit can roll. A key already rolled, or not active, is not
/// rolled. Only the key's owner (or the operator) may roll it: the new
/// secret acts as the owner, and people create keys only for themselves.
pub async fn roll_key(
    service: &Service,
    principal: &Principal,
    key: &str,
    grace_seconds: Option<i64>,
) -> Result<RolledKey> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let old = visible_key(service, &principal, key).await?;
    authz::require_key_owner(
        &principal,
        &old.owner_id,
        "roll it, since the new secret acts as the owner; revoke or disable it instead",
    )?;
    let max_grace = service.settings.max_roll_grace.as_secs() as i64;
    let grace = grace_seconds.unwrap_or((DEFAULT_ROLL_GRACE.as_secs() as i64).min(max_grace));
    if !(1..=max_grace).contains(&grace) {
        return Err(ServiceError::Invalid(format!(
            "the grace period must be between 1 and {max_grace} seconds (max_roll_grace_seconds), not {grace}"
        )));
    }
    if old.status != KeyStatus::Active {
        return Err(ServiceError::Conflict(format!(
            "key {} is {} and cannot be rolled{}",
            old.client_id,
            old.status.as_str(),
            if old.status == KeyStatus::Disabled {
                ": enable it first, or create a new key"
            } else {
                ""
            }
        )));
    }
    if !old.secret_enabled {
        return Err(ServiceError::Conflict(format!(
            "key {} has no secret to roll: rotate its public keys instead \
             (add the new one, switch the client to it, remove the old one)",
            old.client_id
        )));
    }
    if let Some(successor) = &old.rolled_to {
        return Err(ServiceError::Conflict(format!(
            "key {} is already being rolled out to {successor}; roll {successor} instead",
            old.client_id
        )));
    }
    let owner = service
        .store
        .find_user_by_id(&old.owner_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("key {} has no owner", old.client_id)))?;
    if owner.status != UserStatus::Active.as_str() {
        return Err(ServiceError::Invalid(format!(
            "user `{}` is disabled and cannot hold new keys",
            owner.email
        )));
    }
    refuse_beyond_caller(&principal, &owner, old.scopes.as_deref(), "roll")?;

    let created_at = now();
    let expires_at = old.expires_at.map(|e| {
        let lifetime = (e - old.created_at).clamp(1, MAX_KEY_LIFETIME.as_secs() as i64);
        created_at + lifetime
    });
    let scopes = old.scopes.as_ref().map(|s| s.join(" "));
    let labels = old.labels.to_stored();
    let allowed_sources = (!old.allowed_sources.is_empty()).then(|| old.allowed_sources.join(" "));
    let rate_limit = old.own_rate_limit();
    // The successor keeps the old key's public keys, so an integration
    // using private_key_jwt goes on signing with its key under the new
    // client ID.
    let public_keys: Vec<crate::storage::NewPublicKey> = service
        .store
        .public_keys_of_key(&old.id)
        .await?
        .into_iter()
        .map(|row| crate::storage::NewPublicKey {
            thumbprint: row.thumbprint,
            kid: row.kid,
            alg: row.alg,
            jwk: row.jwk,
        })
        .collect();
    let id = Uuid::now_v7().to_string();
    let client_id = ClientId::generate();
    let secret = ClientSecret::generate();
    let digest = secret.digest().to_hex();
    let webhook_signing_key = WebhookSigningKey::derive(&secret);
    let old_expires_at = created_at + grace;
    let rolled = service
        .store
        .roll_key(
            &old.id,
            old_expires_at,
            NewKey {
                id: &id,
                tenant_id: &old.tenant_id,
                owner_id: &old.owner_id,
                client_id: client_id.as_str(),
                secret_digest: &digest,
                name: &old.name,
                scopes: scopes.as_deref(),
                token_ttl_seconds: old.token_ttl_seconds,
                expires_at,
                description: old.description.as_deref(),
                labels: labels.as_deref(),
                allowed_sources: allowed_sources.as_deref(),
                webhook_key: &webhook_signing_key,
                rate_limit: rate_limit.map(rate_columns),
                sigv4_secret: old.sigv4.then_some(&secret),
                secret_enabled: true,
                public_keys: &public_keys,
                require_dpop: old.require_dpop,
                now: created_at,
            },
        )
        .await;
    // The old key's expiry moved; the new client ID may be remembered as
    // unknown.
    service.credentials.forget_key(&old.client_id);
    service.credentials.forget_key(client_id.as_str());
    let moved_mark = match rolled? {
        KeyRoll::Rolled { moved_mark, .. } => moved_mark,
        KeyRoll::NotRollable => {
            return Err(ServiceError::Conflict(format!(
                "key {} was revoked, disabled or rolled meanwhile; nothing was created",
                old.client_id
            )));
        }
    };
    audit::record(
        &service.store,
        &principal,
        Event::new("key.roll")
            .tenant(&old.tenant_id)
            .target(&old.client_id)
            .detail(format!(
                "rolled to {client_id}; the old key expires at {}",
                old_expires_at.min(old.expires_at.unwrap_or(i64::MAX))
            )),
    )
    .await;
    if moved_mark {
        audit::record(
            &service.store,
            &principal,
            Event::new("key.mark_webhook_signing")
                .tenant(&old.tenant_id)
                .target(client_id.as_str())
                .detail(format!("moved from rolled key {}", old.client_id)),
        )
        .await;
    }
    let key = visible_key(service, &principal, &id).await?;
    let old = visible_key(service, &principal, &old.id).await?;
    Ok(RolledKey {
        new: CreatedKey {
            key,
            secret,
            webhook_signing_key,
        },
        old,
    })
}
