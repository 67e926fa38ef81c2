//! How long admin work (a backup, a restore, a master-key rotation, the
//! migrations) says how far it got, without knowing who is watching: the
//! storage layer reports `done` of `total`, and the command line draws a bar
//! on a terminal, prints a plain line now and then otherwise, or stays
//! silent under `--json` (`cli/progress.rs`).

/// Receives how far a piece of long work got.
pub trait Progress: Send + Sync {
    /// `done` of `total` units (pages, bytes, values, migrations) are
    /// finished; `total` may grow while the work runs.
    fn update(&self, done: u64, total: u64);
}

/// Hears nothing: for callers that do not report progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _done: u64, _total: u64) {}
}
