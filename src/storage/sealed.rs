//! Every sealed column, and the two passes over all of them: sealing values
//! still stored in clear (a database from before sealed storage, on first
//! start) and re-sealing values under the current master key (a rotation).

use super::{Result, Store};
use crate::progress::Progress;
use crate::sealing::{SealedAt, Sealer};

/// One column that holds sealed values, with the static SQL to walk it.
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub(super) select: &'static str,
    update: &'static str,
}

macro_rules! sealed_column {
    ($table:literal, $column:literal, $row:literal) => {
        SealedColumn {
            table: $table,
            column: $column,
            select: concat!(
                "SELECT ",
                $row,
                ", ",
                $column,
                " FROM ",
                $table,
                " WHERE ",
                $column,
                " IS NOT NULL ORDER BY ",
                $row
            ),
            // Compare-and-set: two instances converting at once never seal
            // a value twice, and a value changed meanwhile is left alone.
            update: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $column,
                " = $1 WHERE ",
                $row,
                " = $2 AND ",
                $column,
                " = $3"
            ),
        }
    };
}

/// Every column whose values are sealed. The test that scans every column of
/// every table for secrets in clear relies on this list being complete.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    sealed_column!("signing_keys", "private_key_sealed", "kid"),
    sealed_column!("api_keys", "webhook_key_sealed", "id"),
    sealed_column!("api_keys", "sigv4_secret_sealed", "id"),
];

/// What a pass over the sealed columns did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SealReport {
    /// Values that were stored in clear and are now sealed.
    pub sealed: u64,
    /// Values re-sealed under the current master key.
    pub resealed: u64,
    /// Values already sealed under the current master key.
    pub unchanged: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    ConvertClear,
    Rotate,
}

impl Store {
    /// Seals, in one transaction, every value still stored in clear. Run at
    /// start-up after the migrations.
    pub async fn seal_clear_values(&self) -> Result<SealReport> {
        let _span = self.span("seal_clear_values");
        self.walk_sealed_columns(Pass::ConvertClear, &crate::progress::Silent)
            .await
    }

    /// Re-seals, in one transaction, every value sealed under another master
    /// key than the current one (which the previous key must still open), and
    /// seals values still in clear.
    pub async fn reseal_all(&self) -> Result<SealReport> {
        let _span = self.span("reseal_all");
        self.walk_sealed_columns(Pass::Rotate, &crate::progress::Silent)
            .await
    }

    /// [`Store::reseal_all`], reporting values walked.
    pub async fn reseal_all_with(&self, progress: &dyn Progress) -> Result<SealReport> {
        let _span = self.span("reseal_all_with");
        self.walk_sealed_columns(Pass::Rotate, progress).await
    }

    async fn walk_sealed_columns(&self, pass: Pass, progress: &dyn Progress) -> Result<SealReport> {
        let sealer: &Sealer = &self.sealer;
        let mut report = SealReport::default();
        let mut tx = self.db()?.begin().await?;
        let mut columns = Vec::with_capacity(SEALED_COLUMNS.len());
        for column in SEALED_COLUMNS {
            let rows: Vec<(String, String)> =
                sqlx::query_as(column.select).fetch_all(&mut *tx).await?;
            columns.push((column, rows));
        }
        let total: u64 = columns.iter().map(|(_, rows)| rows.len() as u64).sum();
        let mut done = 0u64;
        progress.update(0, total);
        for (column, rows) in columns {
            for (row, stored) in rows {
                done += 1;
                progress.update(done, total);
                let at = SealedAt {
                    table: column.table,
                    column: column.column,
                    row: &row,
                };
                let replacement = if !Sealer::is_sealed(&stored) {
                    report.sealed += 1;
                    sealer.seal(at, stored.as_bytes())?
                } else if pass == Pass::Rotate && sealer.needs_reseal(&stored) {
                    report.resealed += 1;
                    let clear = sealer.open(at, &stored)?;
                    sealer.seal(at, &clear)?
                } else {
                    report.unchanged += 1;
                    continue;
                };
                sqlx::query(column.update)
                    .bind(replacement)
                    .bind(&row)
                    .bind(&stored)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Seals `clear` for `table.column` of `row` with the current master key.
    pub(super) fn seal(
        &self,
        table: &'static str,
        column: &'static str,
        row: &str,
        clear: &[u8],
    ) -> Result<String> {
        Ok(self.sealer.seal(SealedAt { table, column, row }, clear)?)
    }

    pub(super) fn open(
        &self,
        table: &'static str,
        column: &'static str,
        row: &str,
        sealed: &str,
    ) -> Result<Vec<u8>> {
        Ok(self.sealer.open(SealedAt { table, column, row }, sealed)?)
    }
}
