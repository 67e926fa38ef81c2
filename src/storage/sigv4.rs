//! The SigV4 replay cache: signatures of writes accepted within their
//! window, shared by every instance on one database (see migration 0014 for
//! the table, and why it is logged on PostgreSQL).

use super::{Result, Store};

const FIRST_USE: &str =
    "INSERT INTO sigv4_replays (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";

impl Store {
    /// Records the signature `id` (hex of its replay digest) until
    /// `expires_at`; `true` if it was not seen before. One statement: the
    /// primary key decides between two requests racing with one signature,
    /// on any instance. On a SQLite file the insert runs on the calling
    /// thread (see `DirectReader::first_use`), else through the pool.
    pub async fn first_sigv4_use(&self, id: &str, expires_at: i64) -> Result<bool> {
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

    /// Deletes signatures whose window ended before `now`; how many.
    pub async fn sweep_sigv4_replays(&self, now: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sigv4_replays WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
