//! Access tokens revoked through RFC 7009, by `jti`. Each instance keeps the
//! live ones in memory (re-read every `revocation_refresh_seconds`) so its own
//! resource endpoints refuse them without a database round trip. Offline
//! validators elsewhere cannot know: they accept a revoked token until `exp`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::{UnixTime, now};
use crate::storage::{StorageError, Store};

#[derive(Clone, Default)]
pub struct RevokedTokens {
    jtis: Arc<RwLock<HashMap<String, UnixTime>>>,
}

impl RevokedTokens {
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.jtis
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(jti)
    }

    pub async fn revoke(
        &self,
        store: &Store,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<(), StorageError> {
        store.insert_revoked_token(jti, expires_at, now()).await?;
        self.jtis
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(jti.to_owned(), expires_at);
        Ok(())
    }

    pub async fn refresh(&self, store: &Store) -> Result<(), StorageError> {
        let live: HashMap<String, UnixTime> = store
            .live_revoked_tokens(now())
            .await?
            .into_iter()
            .collect();
        *self.jtis.write().unwrap_or_else(|e| e.into_inner()) = live;
        Ok(())
    }

    pub fn spawn_refresher(&self, store: Store, every: Duration, alive: std::sync::Weak<()>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                if alive.upgrade().is_none() {
                    break;
                }
                if let Err(err) = this.refresh(&store).await {
                    log::warn!(
                        "could not refresh revoked tokens: {}",
                        crate::telemetry::error_chain(&err)
                    );
                }
            }
        });
    }
}
