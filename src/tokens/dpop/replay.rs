//! Where proofs seen within the window are remembered (§11.1): the trait
//! every store fills, and the in-memory store of a single resource server.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::domain::now;

/// A replay store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the DPoP replay store failed: {0}")]
pub struct ReplayStoreError(pub String);

/// Where proofs seen within the window are remembered (§11.1). `first_use`
/// records `id` (a digest of the proof's key thumbprint and `jti`) until
/// `expires_at` (Unix seconds) and says whether it was new; it must be
/// atomic, so two requests racing with one proof cannot both see `true`.
pub trait ReplayStore: Send + Sync {
    fn first_use(
        &self,
        id: [u8; 32],
        expires_at: i64,
    ) -> BoxFuture<'_, Result<bool, ReplayStoreError>>;
}

/// A replay store in this process's memory: right for one resource server
/// instance (several instances need a shared store, or a replay at another
/// instance goes unseen).
pub struct MemoryReplayStore {
    seen: Mutex<HashMap<[u8; 32], i64>>,
    capacity: usize,
}

impl MemoryReplayStore {
    /// Holds at most `capacity` unexpired proofs; beyond that, new proofs
    /// are refused (fail closed) until some expire.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }
}

impl Default for MemoryReplayStore {
    /// A million proofs: about 50 MiB, a window's worth at 3,000 requests/s.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use(
        &self,
        id: [u8; 32],
        expires_at: i64,
    ) -> BoxFuture<'_, Result<bool, ReplayStoreError>> {
        let at = now();
        let outcome = (|| {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(until) = seen.get(&id)
                && *until >= at
            {
                return Ok(false);
            }
            if seen.len() >= self.capacity {
                seen.retain(|_, until| *until >= at);
                if seen.len() >= self.capacity {
                    return Err(ReplayStoreError("the in-memory store is full".to_owned()));
                }
            }
            seen.insert(id, expires_at);
            Ok(true)
        })();
        Box::pin(std::future::ready(outcome))
    }
}

/// What the replay store keys a proof by: SHA-256 over the key's thumbprint
/// and the `jti` (two clients may pick the same `jti`; one key may not).
pub fn replay_id(jkt: &str, jti: &str) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(jkt.as_bytes());
    digest.update([0u8]);
    digest.update(jti.as_bytes());
    digest.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_sees_a_proof_once_and_fails_closed_when_full() {
        let store = MemoryReplayStore::new(2);
        let later = now() + 60;
        assert!(store.first_use([1; 32], later).await.unwrap());
        assert!(!store.first_use([1; 32], later).await.unwrap());
        assert!(store.first_use([2; 32], later).await.unwrap());
        assert!(store.first_use([3; 32], later).await.is_err());
    }
}
