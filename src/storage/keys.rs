use super::client_keys::{NewPublicKey, insert_client_auth};
use super::webhooks::{EventData, WebhookEvent, record_event};
use super::{Result, StorageError, Store};
use crate::domain::{ClientSecret, WebhookSigningKey};

pub struct NewKey<'a> {
    pub id: &'a str,
    pub tenant_id: &'a str,
    pub owner_id: &'a str,
    pub client_id: &'a str,
    pub secret_digest: &'a str,
    pub name: &'a str,
    pub scopes: Option<&'a str>,
    pub token_ttl_seconds: Option<i64>,
    pub expires_at: Option<i64>,
    pub description: Option<&'a str>,
    /// JSON object text (`KeyLabels::to_stored`).
    pub labels: Option<&'a str>,
    /// Space-separated CIDR ranges (`SourceAllowList::to_stored`).
    pub allowed_sources: Option<&'a str>,
    /// Derived from the secret; stored only sealed.
    pub webhook_key: &'a WebhookSigningKey,
    /// The key's own rate; `None`: its company's default applies.
    pub rate_limit: Option<RateColumns>,
    /// The secret itself, for a key that allows SigV4 signing: stored only
    /// sealed. `None`: only the digest is kept.
    pub sigv4_secret: Option<&'a ClientSecret>,
    /// False: the key authenticates only with its public keys
    /// (`secret_digest` is then of a secret nobody kept).
    pub secret_enabled: bool,
    /// Public keys for `private_key_jwt`, inserted with the key.
    pub public_keys: &'a [NewPublicKey],
    /// RFC 9449: token requests must carry a DPoP proof.
    pub require_dpop: bool,
    /// RFC 8705 (`TlsClientSubject::to_stored`, `RegisteredCertificates::to_stored`).
    pub tls_client_auth: Option<&'a str>,
    pub tls_client_certificates: Option<&'a str>,
    pub now: i64,
}

/// A rate as its three columns (`RateLimit::to_stored`); stored all set or
/// all NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateColumns {
    pub requests: i64,
    pub per_seconds: i64,
    pub burst: i64,
}

impl RateColumns {
    pub(super) fn split(rate: Option<RateColumns>) -> (Option<i64>, Option<i64>, Option<i64>) {
        match rate {
            Some(r) => (Some(r.requests), Some(r.per_seconds), Some(r.burst)),
            None => (None, None, None),
        }
    }
}

/// A key as listed to people: never the secret or its digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub owner_email: String,
    pub client_id: String,
    pub name: String,
    pub scopes: Option<String>,
    pub token_ttl_seconds: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub created_at: i64,
    pub signs_webhooks: i64,
    pub disabled_at: Option<i64>,
    pub rolled_to: Option<String>,
    pub description: Option<String>,
    pub labels: Option<String>,
    pub allowed_sources: Option<String>,
    pub last_used_from: Option<String>,
    pub last_used_kind: Option<String>,
    /// 1 when the key has a webhook-signing key (keys created before
    /// webhook signing have none).
    pub has_webhook_key: i64,
    pub rate_limit_requests: Option<i64>,
    pub rate_limit_per_seconds: Option<i64>,
    pub rate_limit_burst: Option<i64>,
    /// The company's default rate, for keys without their own.
    pub default_rate_limit_requests: Option<i64>,
    pub default_rate_limit_per_seconds: Option<i64>,
    pub default_rate_limit_burst: Option<i64>,
    /// 1 when the key allows SigV4 signing (its secret is kept sealed).
    pub sigv4: i64,
    /// 0 for a key without a secret (`private_key_jwt` only).
    pub secret_enabled: i64,
    /// How many public keys the key holds.
    pub public_keys: i64,
    /// 1 when the key's token requests must carry a DPoP proof.
    pub require_dpop: i64,
    /// RFC 8705: the subject a `tls_client_auth` certificate must show.
    pub tls_client_auth: Option<String>,
    /// RFC 8705: `self_signed_tls_client_auth` thumbprints, space-separated.
    pub tls_client_certificates: Option<String>,
}

/// What client authentication needs in one round trip: the key, its digest
/// and its owner's current standing.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyAuthRow {
    pub id: String,
    pub tenant_id: String,
    pub owner_id: String,
    pub client_id: String,
    pub secret_digest: String,
    pub scopes: Option<String>,
    pub token_ttl_seconds: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub owner_role: String,
    pub owner_permissions: String,
    pub owner_status: String,
    pub disabled_at: Option<i64>,
    pub allowed_sources: Option<String>,
    pub rate_limit_requests: Option<i64>,
    pub rate_limit_per_seconds: Option<i64>,
    pub rate_limit_burst: Option<i64>,
    pub default_rate_limit_requests: Option<i64>,
    pub default_rate_limit_per_seconds: Option<i64>,
    pub default_rate_limit_burst: Option<i64>,
    /// 1 when the key's token requests must carry a DPoP proof.
    pub require_dpop: i64,
    /// RFC 8705: the subject a `tls_client_auth` certificate must show.
    pub tls_client_auth: Option<String>,
    /// RFC 8705: `self_signed_tls_client_auth` thumbprints, space-separated.
    pub tls_client_certificates: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub tenant_id: Option<String>,
    pub owner_id: Option<String>,
}

/// Outcome of [`Store::insert_key_within_limit`].
#[derive(Debug, PartialEq, Eq)]
pub enum KeyInsert {
    /// Inserted; `signs_webhooks` tells whether it took the mark (it does
    /// when its owner has no active key holding it).
    Inserted {
        signs_webhooks: bool,
    },
    LimitReached {
        active: i64,
    },
}

/// Outcome of [`Store::revoke_key`].
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRevocation {
    Revoked {
        /// The key held the webhook-signing mark.
        signed_webhooks: bool,
        /// The client ID of the key that took the mark over, if any.
        mark_moved_to: Option<String>,
    },
    AlreadyRevoked,
}

/// Outcome of [`Store::roll_key`].
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRoll {
    Rolled {
        /// The old key held the webhook-signing mark, and the new one has it now.
        moved_mark: bool,
        /// The new key took the mark because no active key of the owner held it.
        took_mark: bool,
    },
    /// Revoked, disabled, expired or rolled already, by the time the
    /// transaction ran.
    NotRollable,
}

/// One key's use, coalesced in memory and written by
/// [`Store::record_last_used`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: String,
    pub at: i64,
    pub address: Option<String>,
    /// `token`, `direct` or `sigv4`.
    pub kind: &'static str,
}

/// A key's details as [`Store::update_key_details`] writes them, whole.
pub struct KeyDetails<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub labels: Option<&'a str>,
    pub allowed_sources: Option<&'a str>,
    pub rate_limit: Option<RateColumns>,
    pub require_dpop: bool,
    pub tls_client_auth: Option<&'a str>,
    pub tls_client_certificates: Option<&'a str>,
}

/// A key for SigV4 verification: what client authentication reads, and the
/// sealed secret (`None` when the key does not allow SigV4).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Sigv4KeyRow {
    #[sqlx(flatten)]
    pub key: KeyAuthRow,
    pub sigv4_secret_sealed: Option<String>,
}

macro_rules! key_auth_columns {
    () => {
        "SELECT k.id, k.tenant_id, k.owner_id, k.client_id, k.secret_digest, k.scopes, \
         k.token_ttl_seconds, k.expires_at, k.revoked_at, u.role AS owner_role, \
         u.permissions AS owner_permissions, u.status AS owner_status, k.disabled_at, \
         k.allowed_sources, k.rate_limit_requests, k.rate_limit_per_seconds, k.rate_limit_burst, \
         t.default_rate_limit_requests, t.default_rate_limit_per_seconds, \
         t.default_rate_limit_burst, k.require_dpop, k.tls_client_auth, \
         k.tls_client_certificates"
    };
}

macro_rules! key_auth_from {
    () => {
        " FROM api_keys k JOIN users u ON u.id = k.owner_id JOIN tenants t ON t.id = k.tenant_id "
    };
}

pub(super) const KEY_AUTH_BY_CLIENT_ID: &str = concat!(
    key_auth_columns!(),
    key_auth_from!(),
    "WHERE k.client_id = $1"
);
pub(super) const KEY_AUTH_BY_DIGEST: &str = concat!(
    key_auth_columns!(),
    key_auth_from!(),
    "WHERE k.secret_digest = $1"
);
/// [`KEY_AUTH_BY_CLIENT_ID`] and, last, the sealed SigV4 secret.
pub(super) const SIGV4_KEY_BY_CLIENT_ID: &str = concat!(
    key_auth_columns!(),
    ", k.sigv4_secret_sealed",
    key_auth_from!(),
    "WHERE k.client_id = $1"
);

/// The columns of a [`KeyRow`]; a macro so `concat!` can build `'static` queries.
macro_rules! key_select {
    () => {
        "SELECT k.id, k.tenant_id, k.owner_id, u.email AS owner_email, k.client_id, \
         k.name, k.scopes, k.token_ttl_seconds, k.expires_at, k.last_used_at, k.revoked_at, \
         k.revoked_by, k.created_at, k.signs_webhooks, k.disabled_at, k.rolled_to, k.description, \
         k.labels, k.allowed_sources, k.last_used_from, k.last_used_kind, \
         CAST(CASE WHEN k.webhook_key_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_webhook_key, \
         k.rate_limit_requests, k.rate_limit_per_seconds, k.rate_limit_burst, \
         t.default_rate_limit_requests, t.default_rate_limit_per_seconds, \
         t.default_rate_limit_burst, \
         CAST(CASE WHEN k.sigv4_secret_sealed IS NULL THEN 0 ELSE 1 END AS BIGINT) AS sigv4, \
         k.secret_enabled, \
         (SELECT COUNT(*) FROM client_public_keys p WHERE p.key_id = k.id) AS public_keys, \
         k.require_dpop, k.tls_client_auth, k.tls_client_certificates \
         FROM api_keys k JOIN users u ON u.id = k.owner_id JOIN tenants t ON t.id = k.tenant_id "
    };
}

const WEBHOOK_KEY_TABLE: &str = "api_keys";
const WEBHOOK_KEY_COLUMN: &str = "webhook_key_sealed";
const SIGV4_SECRET_COLUMN: &str = "sigv4_secret_sealed";

/// A new key's sealed values: its webhook-signing key, and its secret when
/// it allows SigV4.
struct SealedKeyValues {
    webhook_key: String,
    sigv4_secret: Option<String>,
}

impl Store {
    fn seal_key_values(&self, key: &NewKey<'_>) -> Result<SealedKeyValues> {
        Ok(SealedKeyValues {
            webhook_key: self.seal(
                WEBHOOK_KEY_TABLE,
                WEBHOOK_KEY_COLUMN,
                key.id,
                key.webhook_key.expose(),
            )?,
            sigv4_secret: key
                .sigv4_secret
                .map(|secret| {
                    self.seal(
                        WEBHOOK_KEY_TABLE,
                        SIGV4_SECRET_COLUMN,
                        key.id,
                        secret.expose().as_bytes(),
                    )
                })
                .transpose()?,
        })
    }

    /// A key and its sealed SigV4 secret, by client ID (the access key ID).
    pub async fn find_key_for_sigv4(&self, client_id: &str) -> Result<Option<Sigv4KeyRow>> {
        let _span = self.span("find_key_for_sigv4");
        if let Some(row) =
            self.read_direct(|direct| direct.sigv4_key(SIGV4_KEY_BY_CLIENT_ID, client_id))
        {
            return Ok(row);
        }
        Ok(sqlx::query_as::<_, Sigv4KeyRow>(SIGV4_KEY_BY_CLIENT_ID)
            .bind(client_id)
            .fetch_optional(self.db()?)
            .await?)
    }

    /// Opens a key's sealed SigV4 secret.
    pub fn open_sigv4_secret(&self, key_id: &str, sealed: &str) -> Result<ClientSecret> {
        let clear = self.open(WEBHOOK_KEY_TABLE, SIGV4_SECRET_COLUMN, key_id, sealed)?;
        std::str::from_utf8(&clear)
            .ok()
            .and_then(|text| ClientSecret::parse(text).ok())
            .ok_or_else(|| StorageError::Corrupt(format!("key {key_id}: bad SigV4 secret")))
    }

    /// The key's webhook-signing key, opened; `None` for a key created
    /// before webhook signing (or no such key).
    pub async fn webhook_signing_key(&self, key_id: &str) -> Result<Option<WebhookSigningKey>> {
        let _span = self.span("webhook_signing_key");
        let sealed: Option<(Option<String>,)> =
            sqlx::query_as("SELECT webhook_key_sealed FROM api_keys WHERE id = $1")
                .bind(key_id)
                .fetch_optional(self.db()?)
                .await?;
        let Some((Some(sealed),)) = sealed else {
            return Ok(None);
        };
        let clear = self.open(WEBHOOK_KEY_TABLE, WEBHOOK_KEY_COLUMN, key_id, &sealed)?;
        WebhookSigningKey::from_bytes(&clear)
            .map(Some)
            .ok_or_else(|| StorageError::Corrupt(format!("key {key_id}: bad webhook key length")))
    }

    /// Inserts the key unless its owner already holds `max_active` active keys.
    /// The owner's row is locked first (an UPDATE takes a row lock on
    /// PostgreSQL and the write lock on SQLite), so concurrent creations for one
    /// user are serialised and can never overshoot the limit.
    pub async fn insert_key_within_limit(
        &self,
        key: NewKey<'_>,
        max_active: u32,
    ) -> Result<KeyInsert> {
        let _span = self.span("insert_key_within_limit");
        let sealed = self.seal_key_values(&key)?;
        let mut tx = self.db()?.begin().await?;
        lock_owner(&mut tx, key.owner_id).await?;
        let active = count_active(&mut tx, key.owner_id, key.now).await?;
        if active >= i64::from(max_active) {
            tx.rollback().await?;
            return Ok(KeyInsert::LimitReached { active });
        }
        let signs_webhooks = take_mark_if_unheld(&mut tx, key.owner_id, key.now).await?;
        insert_key(&mut tx, &key, &sealed, signs_webhooks).await?;
        insert_client_auth(
            &mut tx,
            key.id,
            key.secret_enabled,
            key.public_keys,
            key.now,
        )
        .await?;
        record_event(&mut tx, &key_event("key.created", &key), key.now).await?;
        tx.commit().await?;
        Ok(KeyInsert::Inserted { signs_webhooks })
    }

    pub async fn find_key_for_auth(&self, client_id: &str) -> Result<Option<KeyAuthRow>> {
        let _span = self.span("find_key_for_auth");
        self.key_for_auth(KEY_AUTH_BY_CLIENT_ID, client_id).await
    }

    /// For a secret presented on its own (`x-api-key`): the digest is unique.
    pub async fn find_key_for_auth_by_digest(&self, digest: &str) -> Result<Option<KeyAuthRow>> {
        let _span = self.span("find_key_for_auth_by_digest");
        self.key_for_auth(KEY_AUTH_BY_DIGEST, digest).await
    }

    /// Runs a key-for-auth query straight against a SQLite file when it can
    /// (see `direct`), through the pool otherwise or when that read fails.
    async fn key_for_auth(&self, sql: &'static str, value: &str) -> Result<Option<KeyAuthRow>> {
        if let Some(row) = self.read_direct(|direct| direct.key_for_auth(sql, value)) {
            return Ok(row);
        }
        Ok(sqlx::query_as::<_, KeyAuthRow>(sql)
            .bind(value)
            .fetch_optional(self.db()?)
            .await?)
    }

    /// Moves the owner's webhook-signing mark to `key_id`, atomically.
    pub async fn mark_webhook_signing(&self, owner_id: &str, key_id: &str, now: i64) -> Result<()> {
        let _span = self.span("mark_webhook_signing");
        let mut tx = self.db()?.begin().await?;
        sqlx::query("UPDATE api_keys SET signs_webhooks = 0, webhook_unmarked_at = $2, updated_at = $2 WHERE owner_id = $1 AND signs_webhooks = 1 AND id <> $3")
            .bind(owner_id)
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE api_keys SET signs_webhooks = 1, updated_at = $3 WHERE id = $1 AND owner_id = $2")
            .bind(key_id)
            .bind(owner_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes coalesced uses (time, address, kind); never moves one backwards.
    pub async fn record_last_used(&self, uses: &[KeyUse]) -> Result<()> {
        let _span = self.span("record_last_used");
        let mut tx = self.db()?.begin().await?;
        for key_use in uses {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $2, last_used_from = $3, last_used_kind = $4 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2)",
            )
            .bind(&key_use.key_id)
            .bind(key_use.at)
            .bind(key_use.address.as_deref())
            .bind(key_use.kind)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Rolls `old_id` over to the new key `new`, in one transaction: the new
    /// key is inserted, the old one is set to expire at `old_expires_at`
    /// (never later than it already would) and names its successor, and the
    /// webhook-signing mark moves to the new key if the old one held it. The
    /// owner's row is locked first, as for any creation. The active-key
    /// limit does not apply: the successor replaces the old key, which stops
    /// counting once rolled (see `count_active`), so an owner at the limit
    /// can still roll without downtime.
    pub async fn roll_key(
        &self,
        old_id: &str,
        old_expires_at: i64,
        new: NewKey<'_>,
    ) -> Result<KeyRoll> {
        let _span = self.span("roll_key");
        let sealed = self.seal_key_values(&new)?;
        let mut tx = self.db()?.begin().await?;
        lock_owner(&mut tx, new.owner_id).await?;
        let rolled = sqlx::query(
            "UPDATE api_keys SET rolled_to = $2, updated_at = $4, \
             expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < $3 THEN expires_at ELSE $3 END \
             WHERE id = $1 AND owner_id = $5 AND rolled_to IS NULL AND revoked_at IS NULL \
             AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(old_id)
        .bind(new.client_id)
        .bind(old_expires_at)
        .bind(new.now)
        .bind(new.owner_id)
        .execute(&mut *tx)
        .await?;
        if rolled.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(KeyRoll::NotRollable);
        }
        let (signed,): (i64,) = sqlx::query_as("SELECT signs_webhooks FROM api_keys WHERE id = $1")
            .bind(old_id)
            .fetch_one(&mut *tx)
            .await?;
        let moved_mark = signed != 0;
        let took_mark = if moved_mark {
            sqlx::query(
                "UPDATE api_keys SET signs_webhooks = 0, webhook_unmarked_at = $2 WHERE id = $1",
            )
            .bind(old_id)
            .bind(new.now)
            .execute(&mut *tx)
            .await?;
            false
        } else {
            take_mark_if_unheld(&mut tx, new.owner_id, new.now).await?
        };
        insert_key(&mut tx, &new, &sealed, moved_mark || took_mark).await?;
        insert_client_auth(
            &mut tx,
            new.id,
            new.secret_enabled,
            new.public_keys,
            new.now,
        )
        .await?;
        record_event(&mut tx, &key_event("key.created", &new), new.now).await?;
        tx.commit().await?;
        Ok(KeyRoll::Rolled {
            moved_mark,
            took_mark,
        })
    }

    /// Disables (`Some(at)`) or enables (`None`) a key that is not revoked.
    /// False when nothing changed: the key is revoked, or already so.
    pub async fn set_key_disabled(
        &self,
        key_id: &str,
        disabled: Option<(i64, &str)>,
        now: i64,
    ) -> Result<bool> {
        let _span = self.span("set_key_disabled");
        let done =
            match disabled {
                Some((at, by)) => {
                    sqlx::query(
                        "UPDATE api_keys SET disabled_at = $2, disabled_by = $3, updated_at = $4 \
                     WHERE id = $1 AND revoked_at IS NULL AND disabled_at IS NULL",
                    )
                    .bind(key_id)
                    .bind(at)
                    .bind(by)
                    .bind(now)
                    .execute(self.db()?)
                    .await?
                }
                None => sqlx::query(
                    "UPDATE api_keys SET disabled_at = NULL, disabled_by = NULL, updated_at = $2 \
                     WHERE id = $1 AND revoked_at IS NULL AND disabled_at IS NOT NULL",
                )
                .bind(key_id)
                .bind(now)
                .execute(self.db()?)
                .await?,
            };
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a key's name, description, labels, allow-list, rate and
    /// DPoP requirement.
    pub async fn update_key_details(
        &self,
        key_id: &str,
        details: KeyDetails<'_>,
        now: i64,
    ) -> Result<bool> {
        let _span = self.span("update_key_details");
        let (requests, per_seconds, burst) = RateColumns::split(details.rate_limit);
        let done = sqlx::query(
            "UPDATE api_keys SET name = $2, description = $3, labels = $4, allowed_sources = $5, \
             updated_at = $6, rate_limit_requests = $7, rate_limit_per_seconds = $8, \
             rate_limit_burst = $9, require_dpop = $10, tls_client_auth = $11, \
             tls_client_certificates = $12 WHERE id = $1",
        )
        .bind(key_id)
        .bind(details.name)
        .bind(details.description)
        .bind(details.labels)
        .bind(details.allowed_sources)
        .bind(now)
        .bind(requests)
        .bind(per_seconds)
        .bind(burst)
        .bind(i64::from(details.require_dpop))
        .bind(details.tls_client_auth)
        .bind(details.tls_client_certificates)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every active key, for the metrics gauge (disabled keys are not).
    pub async fn count_all_active_keys(&self, now: i64) -> Result<i64> {
        let _span = self.span("count_all_active_keys");
        let (active,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL AND disabled_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now)
        .fetch_one(self.db()?)
        .await?;
        Ok(active)
    }

    pub async fn count_active_keys(&self, owner_id: &str, now: i64) -> Result<i64> {
        let _span = self.span("count_active_keys");
        let (active,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM api_keys WHERE owner_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(owner_id)
        .bind(now)
        .fetch_one(self.db()?)
        .await?;
        Ok(active)
    }

    /// Finds a key by its id or its client ID.
    pub async fn find_key(&self, id_or_client_id: &str) -> Result<Option<KeyRow>> {
        let _span = self.span("find_key");
        Ok(sqlx::query_as::<_, KeyRow>(concat!(
            key_select!(),
            "WHERE k.id = $1 OR k.client_id = $1"
        ))
        .bind(id_or_client_id)
        .fetch_optional(self.db()?)
        .await?)
    }

    pub async fn list_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyRow>> {
        let _span = self.span("list_keys");
        Ok(sqlx::query_as::<_, KeyRow>(concat!(
            key_select!(),
            "WHERE ($1 IS NULL OR k.tenant_id = $1) AND ($2 IS NULL OR k.owner_id = $2) \
             ORDER BY k.created_at, k.id"
        ))
        .bind(filter.tenant_id.as_deref())
        .bind(filter.owner_id.as_deref())
        .fetch_all(self.db()?)
        .await?)
    }

    /// Marks the key revoked; a key already revoked stays as it was (revoked
    /// keys never come back). When the key signed its owner's webhooks, the
    /// mark moves in the same transaction to the owner's newest other active
    /// key, or leaves the owner without a signing key.
    pub async fn revoke_key(
        &self,
        key_id: &str,
        revoked_by: &str,
        now: i64,
    ) -> Result<KeyRevocation> {
        let _span = self.span("revoke_key");
        let mut tx = self.db()?.begin().await?;
        // Take the write lock (SQLite) or the key's row lock (PostgreSQL)
        // first, so a concurrent creation or mark cannot interleave.
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $2, revoked_by = $3, updated_at = $2 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(key_id)
        .bind(now)
        .bind(revoked_by)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(KeyRevocation::AlreadyRevoked);
        }
        let (owner_id, signed, tenant_id, client_id): (String, i64, String, String) =
            sqlx::query_as(
                "SELECT owner_id, signs_webhooks, tenant_id, client_id FROM api_keys WHERE id = $1",
            )
            .bind(key_id)
            .fetch_one(&mut *tx)
            .await?;
        record_event(
            &mut tx,
            &WebhookEvent {
                tenant_id: &tenant_id,
                subject_owner_id: &owner_id,
                event_type: "key.revoked",
                trace: None,
                collection: None,
                data: key_event_data(key_id, &client_id, &owner_id),
            },
            now,
        )
        .await?;
        let mut mark_moved_to = None;
        if signed != 0 {
            sqlx::query(
                "UPDATE api_keys SET signs_webhooks = 0, webhook_unmarked_at = $2 WHERE id = $1",
            )
            .bind(key_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let successor: Option<(String, String)> = sqlx::query_as(
                "SELECT id, client_id FROM api_keys WHERE owner_id = $1 AND id <> $2 \
                 AND revoked_at IS NULL AND disabled_at IS NULL AND webhook_key_sealed IS NOT NULL \
                 AND (expires_at IS NULL OR expires_at > $3) \
                 ORDER BY created_at DESC, id DESC LIMIT 1",
            )
            .bind(&owner_id)
            .bind(key_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((successor_id, client_id)) = successor {
                sqlx::query(
                    "UPDATE api_keys SET signs_webhooks = 1, updated_at = $2 WHERE id = $1",
                )
                .bind(&successor_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                mark_moved_to = Some(client_id);
            }
        }
        tx.commit().await?;
        Ok(KeyRevocation::Revoked {
            signed_webhooks: signed != 0,
            mark_moved_to,
        })
    }

    /// Deletes the key, announcing `key.deleted` in the same transaction.
    /// The DELETE comes first, so the transaction takes the write lock (SQLite)
    /// before reading anything: a read first would have to be upgraded, and
    /// SQLite refuses that at once ("database is locked") when another
    /// connection (the webhook worker) wrote in between.
    pub async fn delete_key(&self, key_id: &str, now: i64) -> Result<bool> {
        let _span = self.span("delete_key");
        let mut tx = self.db()?.begin().await?;
        let found: Option<(String, String, String)> = sqlx::query_as(
            "DELETE FROM api_keys WHERE id = $1 RETURNING tenant_id, owner_id, client_id",
        )
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        let deleted = found.is_some();
        if let Some((tenant_id, owner_id, client_id)) = found {
            record_event(
                &mut tx,
                &WebhookEvent {
                    tenant_id: &tenant_id,
                    subject_owner_id: &owner_id,
                    event_type: "key.deleted",
                    trace: None,
                    collection: None,
                    data: key_event_data(key_id, &client_id, &owner_id),
                },
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

type Transaction<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// A key event's `data`: ids only.
fn key_event_data(key_id: &str, client_id: &str, owner_id: &str) -> EventData<'static> {
    EventData::Json(
        serde_json::json!({ "key_id": key_id, "client_id": client_id, "owner_id": owner_id }),
    )
}

fn key_event<'a>(event_type: &'static str, key: &'a NewKey<'_>) -> WebhookEvent<'a> {
    WebhookEvent {
        tenant_id: key.tenant_id,
        subject_owner_id: key.owner_id,
        event_type,
        trace: None,
        collection: None,
        data: key_event_data(key.id, key.client_id, key.owner_id),
    }
}

/// Locks the owner's row: an UPDATE takes a row lock on PostgreSQL and the
/// write lock on SQLite, so key creations for one user are serialised.
async fn lock_owner(tx: &mut Transaction<'_>, owner_id: &str) -> Result<()> {
    sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(owner_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The owner's active keys; a disabled key counts (it may come back), a
/// rolled key in its grace period does not (its successor replaces it).
async fn count_active(tx: &mut Transaction<'_>, owner_id: &str, now: i64) -> Result<i64> {
    let (active,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM api_keys WHERE owner_id = $1 AND revoked_at IS NULL \
         AND rolled_to IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(owner_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(active)
}

/// Whether a new key takes the webhook-signing mark: it does when no active
/// (or disabled) key of the owner holds it; a stale mark on an expired or
/// revoked key is cleared then.
async fn take_mark_if_unheld(tx: &mut Transaction<'_>, owner_id: &str, now: i64) -> Result<bool> {
    let (marked,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM api_keys WHERE owner_id = $1 AND signs_webhooks = 1 \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(owner_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let take = marked == 0;
    if take {
        sqlx::query(
            "UPDATE api_keys SET signs_webhooks = 0, webhook_unmarked_at = $2 \
             WHERE owner_id = $1 AND signs_webhooks = 1",
        )
        .bind(owner_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(take)
}

async fn insert_key(
    tx: &mut Transaction<'_>,
    key: &NewKey<'_>,
    sealed: &SealedKeyValues,
    signs_webhooks: bool,
) -> Result<()> {
    let (requests, per_seconds, burst) = RateColumns::split(key.rate_limit);
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, owner_id, client_id, secret_digest, name, scopes, \
         token_ttl_seconds, expires_at, created_at, updated_at, signs_webhooks, description, \
         labels, allowed_sources, webhook_key_sealed, rate_limit_requests, \
         rate_limit_per_seconds, rate_limit_burst, sigv4_secret_sealed, require_dpop, \
         tls_client_auth, tls_client_certificates) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22)",
    )
    .bind(key.id)
    .bind(key.tenant_id)
    .bind(key.owner_id)
    .bind(key.client_id)
    .bind(key.secret_digest)
    .bind(key.name)
    .bind(key.scopes)
    .bind(key.token_ttl_seconds)
    .bind(key.expires_at)
    .bind(key.now)
    .bind(i64::from(signs_webhooks))
    .bind(key.description)
    .bind(key.labels)
    .bind(key.allowed_sources)
    .bind(&sealed.webhook_key)
    .bind(requests)
    .bind(per_seconds)
    .bind(burst)
    .bind(sealed.sigv4_secret.as_deref())
    .bind(i64::from(key.require_dpop))
    .bind(key.tls_client_auth)
    .bind(key.tls_client_certificates)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
