//! "Last used" without a database write per request: uses (when, from which
//! address, and how) are coalesced in memory and written in one batch every
//! `last_used_flush_seconds`. Per key, the latest use wins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::UnixTime;
use crate::storage::{KeyUse, Store};

/// How a key was used, as `last_used_kind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseKind {
    /// Client authentication at the OAuth endpoints (a token request, an
    /// introspection or a revocation).
    Token,
    /// The secret presented on its own (`x-api-key`, `Bearer kps_…`).
    Direct,
    /// A request signed with AWS Signature Version 4.
    Sigv4,
}

impl UseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UseKind::Token => "token",
            UseKind::Direct => "direct",
            UseKind::Sigv4 => "sigv4",
        }
    }

    fn from_str(kind: &str) -> Self {
        match kind {
            "direct" => UseKind::Direct,
            "sigv4" => UseKind::Sigv4,
            _ => UseKind::Token,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    at: UnixTime,
    address: Option<IpAddr>,
    kind: UseKind,
}

#[derive(Clone, Default)]
pub struct LastUsed {
    pending: Arc<Mutex<HashMap<String, Seen>>>,
}

impl LastUsed {
    pub fn touch(&self, key_id: &str, at: UnixTime, address: Option<IpAddr>, kind: UseKind) {
        let seen = Seen { at, address, kind };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(key_id) {
            Some(earlier) if earlier.at > at => {}
            Some(earlier) => *earlier = seen,
            None => {
                pending.insert(key_id.to_owned(), seen);
            }
        }
    }

    /// Writes what accumulated; on failure the uses are kept for next time.
    pub async fn flush(&self, store: &Store) {
        let batch: Vec<KeyUse> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .drain()
                .map(|(key_id, seen)| KeyUse {
                    key_id,
                    at: seen.at,
                    address: seen.address.map(|ip| ip.to_canonical().to_string()),
                    kind: seen.kind.as_str(),
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(err) = store.record_last_used(&batch).await {
            log::warn!(
                "could not record last-used times: {}",
                crate::telemetry::error_chain(&err)
            );
            for key_use in batch {
                let kind = UseKind::from_str(key_use.kind);
                let address = key_use.address.and_then(|a| a.parse().ok());
                self.touch(&key_use.key_id, key_use.at, address, kind);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_use_of_a_key_wins_with_its_address_and_kind() {
        let last_used = LastUsed::default();
        let here: IpAddr = "10.0.0.1".parse().unwrap();
        let there: IpAddr = "2001:db8::1".parse().unwrap();
        last_used.touch("k", 10, Some(here), UseKind::Token);
        last_used.touch("k", 12, Some(there), UseKind::Direct);
        last_used.touch("k", 11, Some(here), UseKind::Token);
        let pending = last_used.pending.lock().unwrap();
        assert_eq!(
            pending["k"],
            Seen {
                at: 12,
                address: Some(there),
                kind: UseKind::Direct
            }
        );
    }
}
