//! "Last used" without a database write per request: uses are coalesced in
//! memory and written in one batch every `last_used_flush_seconds`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::UnixTime;
use crate::storage::Store;

#[derive(Clone, Default)]
pub struct LastUsed {
    pending: Arc<Mutex<HashMap<String, UnixTime>>>,
}

impl LastUsed {
    pub fn touch(&self, key_id: &str, at: UnixTime) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(key_id) {
            Some(seen) => *seen = (*seen).max(at),
            None => {
                pending.insert(key_id.to_owned(), at);
            }
        }
    }

    /// Writes what accumulated; on failure the uses are kept for next time.
    pub async fn flush(&self, store: &Store) {
        let batch: Vec<(String, UnixTime)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(err) = store.record_last_used(&batch).await {
            log::warn!(
                "could not record last-used times: {}",
                crate::telemetry::error_chain(&err)
            );
            for (key_id, at) in batch {
                self.touch(&key_id, at);
            }
        }
    }

    /// Flushes every `every` until `alive` reports the application is gone.
    pub fn spawn_flusher(&self, store: Store, every: Duration, alive: std::sync::Weak<()>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                this.flush(&store).await;
                if alive.upgrade().is_none() {
                    break;
                }
            }
        });
    }
}
