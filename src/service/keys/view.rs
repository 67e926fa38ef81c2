//! A key as people are shown it: its status, rate, auth methods and
//! deletion phrase; never its secret or digest.

use serde::Serialize;

use crate::domain::{KeyLabels, RateLimit, UnixTime};
use crate::service::Result;
use crate::storage::{KeyRow, StorageError};

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
    /// a secret, `private_key_jwt` while it holds public keys, and
    /// `tls_client_auth` / `self_signed_tls_client_auth` (RFC 8705) while it
    /// has a certificate subject / registered certificates.
    #[schema(examples(json!(["client_secret", "private_key_jwt"])))]
    pub auth_methods: Vec<&'static str>,
    /// How many public keys (`private_key_jwt`) the key holds; see
    /// `GET /api/v1/keys/{id}/public-keys`.
    pub public_key_count: i64,
    /// Whether the key's token requests must carry a DPoP proof (RFC 9449):
    /// its tokens are then always bound to the client's key.
    pub require_dpop: bool,
    /// RFC 8705 `tls_client_auth`: what the key's certificate must show,
    /// `subject_dn:<DN>` or `san_dns:` / `san_uri:` / `san_ip:` /
    /// `san_email:` one subject alternative name; it must also chain to the
    /// server's client CAs.
    #[schema(examples("san_dns:erp.example.com"))]
    pub tls_client_auth: Option<String>,
    /// RFC 8705 `self_signed_tls_client_auth`: the `x5t#S256` thumbprints of
    /// the certificates the key accepts (at most 5).
    pub tls_client_certificates: Vec<String>,
}

#[cfg(test)]
impl KeySummary {
    /// An active key of user `u` in company `t`, made at `created_at`, with
    /// a secret and nothing else set: what unit tests start from.
    pub fn example(name: &str, created_at: i64) -> KeySummary {
        KeySummary {
            id: name.to_owned(),
            client_id: format!("kpc_{name}"),
            name: name.to_owned(),
            tenant_id: "t".to_owned(),
            owner_id: "u".to_owned(),
            owner_email: "u@example.com".to_owned(),
            scopes: None,
            token_ttl_seconds: None,
            status: KeyStatus::Active,
            created_at,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
            signs_webhooks: false,
            disabled_at: None,
            rolled_to: None,
            description: None,
            labels: Default::default(),
            allowed_sources: Vec::new(),
            last_used_from: None,
            last_used_kind: None,
            has_webhook_signing_key: true,
            rate_limit: None,
            sigv4: false,
            secret_enabled: true,
            auth_methods: vec!["client_secret"],
            public_key_count: 0,
            require_dpop: false,
            tls_client_auth: None,
            tls_client_certificates: Vec::new(),
        }
    }
}

/// What [`KeySummary::auth_methods`] lists.
pub fn auth_methods(
    secret_enabled: bool,
    public_key_count: i64,
    tls_client_auth: bool,
    self_signed_certificates: bool,
) -> Vec<&'static str> {
    let mut methods = Vec::with_capacity(2);
    if secret_enabled {
        methods.push("client_secret");
    }
    if public_key_count > 0 {
        methods.push("private_key_jwt");
    }
    if tls_client_auth {
        methods.push("tls_client_auth");
    }
    if self_signed_certificates {
        methods.push("self_signed_tls_client_auth");
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

    pub(super) fn limit(self) -> Option<RateLimit> {
        RateLimit::new(
            self.requests.into(),
            self.per_seconds.into(),
            Some(self.burst.into()),
        )
        .ok()
    }
}

/// Splits a stored space-separated list (scopes, address ranges).
pub(super) fn words(stored: &str) -> Vec<String> {
    stored
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl KeySummary {
    pub(super) fn from_row(row: KeyRow, at: UnixTime) -> Result<Self, StorageError> {
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
            auth_methods: auth_methods(
                row.secret_enabled != 0,
                row.public_keys,
                row.tls_client_auth.is_some(),
                row.tls_client_certificates.is_some(),
            ),
            public_key_count: row.public_keys,
            require_dpop: row.require_dpop != 0,
            tls_client_auth: row.tls_client_auth,
            tls_client_certificates: row
                .tls_client_certificates
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
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

    /// Whether `typed` confirms deleting this key: the deletion phrase, or
    /// the key's name in any case (what the console asks for).
    pub fn confirms_deletion(&self, typed: &str) -> bool {
        let typed = typed.trim();
        typed == self.deletion_phrase()
            || (!typed.is_empty() && typed.to_lowercase() == self.name.trim().to_lowercase())
    }
}
