use super::{Result, StorageError, Store};

const TABLE: &str = "signing_keys";
const PRIVATE_HALF: &str = "private_key_sealed";

/// A signing key as the server uses it: the private half in clear, in
/// memory only. The database holds it sealed (see `sealed`).
#[derive(Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    pub private_key_pem: String,
    pub state: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_key_pem", &"<redacted>")
            .field("state", &self.state)
            .finish()
    }
}

#[derive(sqlx::FromRow)]
struct StoredSigningKey {
    kid: String,
    algorithm: String,
    private_key_sealed: String,
    state: String,
    created_at: i64,
    retired_at: Option<i64>,
}

impl Store {
    fn sealed_private_half(&self, key: &SigningKeyRow) -> Result<String> {
        self.seal(
            TABLE,
            PRIVATE_HALF,
            &key.kid,
            key.private_key_pem.as_bytes(),
        )
    }

    fn open_signing_key(&self, stored: StoredSigningKey) -> Result<SigningKeyRow> {
        let clear = self.open(TABLE, PRIVATE_HALF, &stored.kid, &stored.private_key_sealed)?;
        let private_key_pem = String::from_utf8(clear).map_err(|_| {
            StorageError::Corrupt(format!("signing key {} is not PEM text", stored.kid))
        })?;
        Ok(SigningKeyRow {
            kid: stored.kid,
            algorithm: stored.algorithm,
            private_key_pem,
            state: stored.state,
            created_at: stored.created_at,
            retired_at: stored.retired_at,
        })
    }

    /// Keys that sign now, will sign next, or retired recently enough that
    /// tokens they signed may still be alive (`retired_at > retired_after`).
    pub async fn publishable_signing_keys(&self, retired_after: i64) -> Result<Vec<SigningKeyRow>> {
        let _span = self.span("publishable_signing_keys");
        sqlx::query_as::<_, StoredSigningKey>(
            "SELECT kid, algorithm, private_key_sealed, state, created_at, retired_at \
             FROM signing_keys WHERE state <> 'retired' OR retired_at > $1 \
             ORDER BY created_at, kid",
        )
        .bind(retired_after)
        .fetch_all(self.db()?)
        .await?
        .into_iter()
        .map(|stored| self.open_signing_key(stored))
        .collect()
    }

    /// Stores `key` as the active key unless an active key of its algorithm
    /// already exists. Two instances starting at once may both insert; readers
    /// then agree on the oldest active key, so they still sign alike.
    pub async fn insert_signing_key_if_none_active(&self, key: &SigningKeyRow) -> Result<bool> {
        let _span = self.span("insert_signing_key_if_none_active");
        // Read first: when a key exists (every start but the first) nothing is
        // written, so an instance can start on a read-only database.
        let active = sqlx::query(
            "SELECT 1 FROM signing_keys WHERE state = 'active' AND algorithm = $1 LIMIT 1",
        )
        .bind(&key.algorithm)
        .fetch_optional(self.db()?)
        .await?;
        if active.is_some() {
            return Ok(false);
        }
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key_sealed, state, created_at, updated_at) \
             SELECT $1, $2, $3, 'active', $4, $4 WHERE NOT EXISTS \
             (SELECT 1 FROM signing_keys WHERE state = 'active' AND algorithm = $2)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(self.sealed_private_half(key)?)
        .bind(key.created_at)
        .execute(self.db()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Retires every active key and makes `key` the active one, atomically.
    pub async fn rotate_signing_key(&self, key: &SigningKeyRow) -> Result<()> {
        let _span = self.span("rotate_signing_key");
        let mut tx = self.db()?.begin().await?;
        sqlx::query(
            "UPDATE signing_keys SET state = 'retired', retired_at = $1, updated_at = $1 \
             WHERE state = 'active'",
        )
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key_sealed, state, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $4)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(self.sealed_private_half(key)?)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
