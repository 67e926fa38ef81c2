//! A key's public keys (RFC 7523 `private_key_jwt`) and the store of
//! assertion `jti`s already used (migration 0011).

use super::{Result, Store};

/// A public key to register: already parsed and checked by
/// `tokens::PublicJwk`; `jwk` is its stored form (public members, `kid`,
/// `alg`).
#[derive(Debug, Clone)]
pub struct NewPublicKey {
    pub thumbprint: String,
    pub kid: Option<String>,
    pub alg: String,
    pub jwk: String,
}

/// A registered public key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PublicKeyRow {
    pub key_id: String,
    pub thumbprint: String,
    pub kid: Option<String>,
    pub alg: String,
    pub jwk: String,
    pub created_at: i64,
}

/// Outcome of [`Store::add_public_key`].
#[derive(Debug, PartialEq, Eq)]
pub enum PublicKeyAdd {
    Added,
    /// The key holds `max` public keys already.
    LimitReached,
    /// This thumbprint is registered already.
    DuplicateThumbprint,
    /// Another public key of this key has the same `kid`.
    DuplicateKid,
    /// The key does not exist (deleted meanwhile).
    NoSuchKey,
}

/// Outcome of [`Store::remove_public_key`].
#[derive(Debug, PartialEq, Eq)]
pub enum PublicKeyRemoval {
    Removed(PublicKeyRow),
    NotFound,
    /// The key has no secret and this is its last public key: removing it
    /// would leave no way to authenticate.
    LastWayIn,
}

type Transaction<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Inserts a new key's public keys and, for a key without a secret, says
/// so; inside the transaction that inserts the key.
pub(super) async fn insert_client_auth(
    tx: &mut Transaction<'_>,
    key_id: &str,
    secret_enabled: bool,
    public_keys: &[NewPublicKey],
    now: i64,
) -> Result<()> {
    if !secret_enabled {
        sqlx::query("UPDATE api_keys SET secret_enabled = 0 WHERE id = $1")
            .bind(key_id)
            .execute(&mut **tx)
            .await?;
    }
    for key in public_keys {
        insert_public_key(tx, key_id, key, now).await?;
    }
    Ok(())
}

async fn insert_public_key(
    tx: &mut Transaction<'_>,
    key_id: &str,
    key: &NewPublicKey,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO client_public_keys (key_id, thumbprint, kid, alg, jwk, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key_id)
    .bind(&key.thumbprint)
    .bind(key.kid.as_deref())
    .bind(&key.alg)
    .bind(&key.jwk)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes the key's row lock (PostgreSQL) or the write lock (SQLite), so
/// concurrent changes to one key's public keys are serialised; false when
/// the key does not exist.
async fn lock_key(tx: &mut Transaction<'_>, key_id: &str) -> Result<bool> {
    let locked = sqlx::query("UPDATE api_keys SET updated_at = updated_at WHERE id = $1")
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    Ok(locked.rows_affected() == 1)
}

async fn rows_of_key(tx: &mut Transaction<'_>, key_id: &str) -> Result<Vec<PublicKeyRow>> {
    Ok(sqlx::query_as::<_, PublicKeyRow>(
        "SELECT key_id, thumbprint, kid, alg, jwk, created_at FROM client_public_keys \
         WHERE key_id = $1 ORDER BY created_at, thumbprint",
    )
    .bind(key_id)
    .fetch_all(&mut **tx)
    .await?)
}

impl Store {
    /// The public keys of the key with `client_id`, oldest first: what an
    /// assertion is checked against. Read on every assertion (which costs a
    /// write for its `jti` anyway), so a removal counts at once everywhere.
    pub async fn public_keys_of_client(&self, client_id: &str) -> Result<Vec<PublicKeyRow>> {
        let _span = self.span("public_keys_of_client");
        Ok(sqlx::query_as::<_, PublicKeyRow>(
            "SELECT p.key_id, p.thumbprint, p.kid, p.alg, p.jwk, p.created_at \
             FROM client_public_keys p JOIN api_keys k ON k.id = p.key_id \
             WHERE k.client_id = $1 ORDER BY p.created_at, p.thumbprint",
        )
        .bind(client_id)
        .fetch_all(self.db()?)
        .await?)
    }

    /// The public keys of the key `key_id`, oldest first.
    pub async fn public_keys_of_key(&self, key_id: &str) -> Result<Vec<PublicKeyRow>> {
        let _span = self.span("public_keys_of_key");
        Ok(sqlx::query_as::<_, PublicKeyRow>(
            "SELECT key_id, thumbprint, kid, alg, jwk, created_at FROM client_public_keys \
             WHERE key_id = $1 ORDER BY created_at, thumbprint",
        )
        .bind(key_id)
        .fetch_all(self.db()?)
        .await?)
    }

    /// Registers a public key with `key_id`, unless it holds `max` already
    /// or the thumbprint or `kid` is taken, in one transaction under the
    /// key's lock.
    pub async fn add_public_key(
        &self,
        key_id: &str,
        key: &NewPublicKey,
        max: usize,
        now: i64,
    ) -> Result<PublicKeyAdd> {
        let _span = self.span("add_public_key");
        let mut tx = self.db()?.begin().await?;
        if !lock_key(&mut tx, key_id).await? {
            tx.rollback().await?;
            return Ok(PublicKeyAdd::NoSuchKey);
        }
        let existing = rows_of_key(&mut tx, key_id).await?;
        let outcome = if existing.iter().any(|k| k.thumbprint == key.thumbprint) {
            PublicKeyAdd::DuplicateThumbprint
        } else if key.kid.is_some() && existing.iter().any(|k| k.kid == key.kid) {
            PublicKeyAdd::DuplicateKid
        } else if existing.len() >= max {
            PublicKeyAdd::LimitReached
        } else {
            insert_public_key(&mut tx, key_id, key, now).await?;
            PublicKeyAdd::Added
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Removes the public key `thumbprint` from `key_id`, unless it is the
    /// last way the key can authenticate (no secret, no other public key).
    /// Under the key's lock, so two removals cannot both take "the other
    /// one" away.
    pub async fn remove_public_key(
        &self,
        key_id: &str,
        thumbprint: &str,
    ) -> Result<PublicKeyRemoval> {
        let _span = self.span("remove_public_key");
        let mut tx = self.db()?.begin().await?;
        if !lock_key(&mut tx, key_id).await? {
            tx.rollback().await?;
            return Ok(PublicKeyRemoval::NotFound);
        }
        let existing = rows_of_key(&mut tx, key_id).await?;
        let Some(found) = existing
            .iter()
            .find(|k| k.thumbprint == thumbprint)
            .cloned()
        else {
            tx.rollback().await?;
            return Ok(PublicKeyRemoval::NotFound);
        };
        let (secret_enabled,): (i64,) =
            sqlx::query_as("SELECT secret_enabled FROM api_keys WHERE id = $1")
                .bind(key_id)
                .fetch_one(&mut *tx)
                .await?;
        if secret_enabled == 0 && existing.len() <= 1 {
            tx.rollback().await?;
            return Ok(PublicKeyRemoval::LastWayIn);
        }
        sqlx::query("DELETE FROM client_public_keys WHERE key_id = $1 AND thumbprint = $2")
            .bind(key_id)
            .bind(thumbprint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PublicKeyRemoval::Removed(found))
    }

    /// Records that `client_id` used the assertion whose `jti` has
    /// `jti_digest`; false when it was recorded before (a replay). One
    /// statement, so two instances racing on one PostgreSQL cannot both
    /// win: the primary key lets one row in, and the other INSERT does
    /// nothing.
    pub async fn use_assertion_jti(
        &self,
        client_id: &str,
        jti_digest: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let _span = self.span("use_assertion_jti");
        let inserted = sqlx::query(
            "INSERT INTO client_assertion_jtis (client_id, jti_digest, expires_at) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(client_id)
        .bind(jti_digest)
        .bind(expires_at)
        .execute(self.db()?)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Deletes the used `jti`s whose assertions have expired: they would be
    /// refused as expired anyway. Returns how many.
    pub async fn sweep_assertion_jtis(&self, now: i64) -> Result<u64> {
        let _span = self.span("sweep_assertion_jtis");
        let swept = sqlx::query("DELETE FROM client_assertion_jtis WHERE expires_at < $1")
            .bind(now)
            .execute(self.db()?)
            .await?;
        Ok(swept.rows_affected())
    }
}
