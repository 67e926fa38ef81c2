//! The DPoP replay cache (RFC 9449 §11.1), shared by every instance on one
//! database: see migration 0010 for the table and why it is UNLOGGED on
//! PostgreSQL.

use super::{Backend, Result, Store};

/// Whether a one-time insert waits for its own disk flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    Default,
    /// PostgreSQL's `synchronous_commit = off`: see `storage/sigv4.rs` for
    /// why the SigV4 replay cache needs no flush of its own.
    NoFlushWait,
}

const FIRST_USE: &str =
    "INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";

impl Store {
    /// Records the proof `id` (hex of its replay digest) until `expires_at`;
    /// `true` if it was not seen before. One statement: the primary key
    /// decides between two requests racing with one proof, on any instance.
    /// On a SQLite file the insert runs on the calling thread, without a
    /// disk sync (see `DirectReader::first_dpop_use`), else through the pool.
    pub async fn first_dpop_use(&self, id: &str, expires_at: i64) -> Result<bool> {
        let _span = self.span("first_dpop_use");
        self.insert_once(FIRST_USE, id, expires_at, Commit::Default)
            .await
    }

    /// Runs `sql`, an `INSERT … ON CONFLICT (id) DO NOTHING` of `(id,
    /// expires_at)`; `true` if it inserted. On a SQLite file it runs on the
    /// calling thread without a disk sync of its own, else through the pool
    /// (on PostgreSQL, with `commit` deciding whether to wait for the flush).
    pub(super) async fn insert_once(
        &self,
        sql: &'static str,
        id: &str,
        expires_at: i64,
        commit: Commit,
    ) -> Result<bool> {
        if let Some(first) = self.read_direct(|direct| direct.first_use(sql, id, expires_at)) {
            return Ok(first);
        }
        let insert = sqlx::query(sql).bind(id).bind(expires_at);
        let done = if commit == Commit::NoFlushWait && self.backend == Backend::Postgres {
            let mut tx = self.db()?.begin().await?;
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
            let done = insert.execute(&mut *tx).await?;
            tx.commit().await?;
            done
        } else {
            // One statement, no transaction to open: the common case.
            insert.execute(self.db()?).await?
        };
        Ok(done.rows_affected() == 1)
    }

    /// Deletes proofs whose window ended before `now`; how many.
    pub async fn sweep_dpop_proofs(&self, now: i64) -> Result<u64> {
        let _span = self.span("sweep_dpop_proofs");
        let done = sqlx::query("DELETE FROM dpop_proofs WHERE expires_at < $1")
            .bind(now)
            .execute(self.db()?)
            .await?;
        Ok(done.rows_affected())
    }
}
