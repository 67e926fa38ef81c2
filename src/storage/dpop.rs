//! The DPoP replay cache (RFC 9449 §11.1), shared by every instance on one
//! database: see migration 0010 for the table and why it is UNLOGGED on
//! PostgreSQL.

use super::{Result, Store};

const FIRST_USE: &str =
    "INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";

impl Store {
    /// Records the proof `id` (hex of its replay digest) until `expires_at`;
    /// `true` if it was not seen before. One statement: the primary key
    /// decides between two requests racing with one proof, on any instance.
    /// On a SQLite file the insert runs on the calling thread, without a
    /// disk sync (see `DirectReader::first_dpop_use`), else through the pool.
    pub async fn first_dpop_use(&self, id: &str, expires_at: i64) -> Result<bool> {
        if let Some(first) = self.read_direct(|direct| direct.first_use(FIRST_USE, id, expires_at))
        {
            return Ok(first);
        }
        let done = sqlx::query(FIRST_USE)
            .bind(id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes proofs whose window ended before `now`; how many.
    pub async fn sweep_dpop_proofs(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM dpop_proofs WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
