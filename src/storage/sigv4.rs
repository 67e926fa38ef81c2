//! The SigV4 replay cache: signatures of writes accepted within their
//! window, shared by every instance on one database (see migration 0014 for
//! the table, and why it is logged on PostgreSQL).
//!
//! Durable without a disk flush of its own. A row matters only if the write
//! its signature authorised was committed, and that commit comes later in
//! the same write-ahead log, which is flushed in order: once the write is
//! durable, so is the row before it. So the insert does not wait for the
//! flush (SQLite: the direct writer's `synchronous = NORMAL`; PostgreSQL:
//! `synchronous_commit = off` for this transaction only). On PostgreSQL
//! that takes a signed write's extra cost from 3.4 to 3.9 ms to 0.2 to 0.3
//! ms per insert (`pgbench -n -c 1 -t 2000` of this INSERT alone, then of
//! BEGIN, the SET LOCAL, the INSERT, COMMIT; on 127.0.0.1, 2 cores at load
//! average 9). If the server crashes before anything later is flushed, the
//! row may be lost, but then so is the write: a replay afterwards stores
//! at most what was never stored.

use super::dpop::Commit;
use super::{Result, Store};

const FIRST_USE: &str =
    "INSERT INTO sigv4_replays (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";

impl Store {
    /// Records the signature `id` (hex of its replay digest) until
    /// `expires_at`; `true` if it was not seen before. One insert: the
    /// primary key decides between two requests racing with one signature,
    /// on any instance (the second waits for the first's commit, then
    /// inserts nothing). On a SQLite file the insert runs on the calling
    /// thread (see `DirectReader::first_use`), else through the pool.
    pub async fn first_sigv4_use(&self, id: &str, expires_at: i64) -> Result<bool> {
        let _span = self.span("first_sigv4_use");
        self.insert_once(FIRST_USE, id, expires_at, Commit::NoFlushWait)
            .await
    }

    /// Deletes signatures whose window ended before `now`; how many.
    pub async fn sweep_sigv4_replays(&self, now: i64) -> Result<u64> {
        let _span = self.span("sweep_sigv4_replays");
        let done = sqlx::query("DELETE FROM sigv4_replays WHERE expires_at < $1")
            .bind(now)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected())
    }
}
