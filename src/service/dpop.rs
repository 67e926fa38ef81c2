//! DPoP (RFC 9449) as Keyport runs it: the §4.3 checks of the
//! `keyport_verify` library (through [`crate::tokens::dpop`]), with nonces
//! derived from the master key (every instance accepts every other's) and
//! the replay cache (each proof once, RFC 9449 §11.1) where it costs least
//! and still sees every proof:
//! Chosen by `dpop_replay_store`; `auto` (the default) picks:
//! - SQLite (one instance): this process's memory. It refuses proofs dated
//!   before the process started (see `MemoryReplayStore::restart_safe`):
//!   persisting every proof is the database write this avoids, and a proof
//!   made before a restart is the only one the memory cannot vouch for.
//! - PostgreSQL with `redis_url`: Redis, `SET NX` with the proof's expiry,
//!   shared by every instance; if Redis does not answer, the proof is
//!   refused (503), never let through unchecked.
//! - PostgreSQL without Redis: the database (table `dpop_proofs`).
//!
//! Measured (`bash benches/dpop.sh`, RESULTS.md): the memory store and Redis
//! take the replay check off the database's write path.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::Settings;
use crate::domain::now;
use crate::storage::Store;
use crate::telemetry::error_chain;
use crate::tokens::dpop::{
    DpopNonces, DpopVerifier, MemoryReplayStore, ReplayStore, ReplayStoreError,
};
use keyport_verify::dpop::ReplayFuture;

/// What the nonce key is derived for (HKDF `info`); changing it changes
/// every nonce.
const NONCE_KEY_PURPOSE: &[u8] = b"keyport dpop nonce v1";

/// How often expired proofs are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The replay cache in table `dpop_proofs` (migration 0010).
struct DatabaseReplay(Store);

impl ReplayStore for DatabaseReplay {
    fn first_use(&self, id: [u8; 32], expires_at: i64) -> ReplayFuture<'_> {
        Box::pin(async move {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            self.0
                .first_dpop_use(&hex, expires_at)
                .await
                .map_err(|err| ReplayStoreError(error_chain(&err)))
        })
    }
}

/// The replay cache in Redis: `SET {prefix}dpop:{id} 1 NX EXAT expires_at`.
struct RedisReplay {
    client: redis::Client,
    manager: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    key_prefix: String,
    timeout: Duration,
}

impl RedisReplay {
    async fn first_use(&self, id: [u8; 32], expires_at: i64) -> Result<bool, String> {
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                redis::aio::ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(|err| err.to_string())?;
        let mut connection = manager.clone();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut command = redis::cmd("SET");
        command
            .arg(format!("{}dpop:{hex}", self.key_prefix))
            .arg(1)
            .arg("NX")
            .arg("EXAT")
            .arg(expires_at);
        let set = command.query_async::<Option<String>>(&mut connection);
        match tokio::time::timeout(self.timeout, set).await {
            Ok(Ok(answer)) => Ok(answer.is_some()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("Redis gave no answer within {:?}", self.timeout)),
        }
    }
}

impl ReplayStore for RedisReplay {
    fn first_use(&self, id: [u8; 32], expires_at: i64) -> ReplayFuture<'_> {
        Box::pin(async move {
            RedisReplay::first_use(self, id, expires_at)
                .await
                .map_err(|err| ReplayStoreError(format!("Redis: {err}")))
        })
    }
}

/// Where this server keeps the proofs it has seen (see the module's doc).
pub fn replay_store(store: &Store, settings: &Settings) -> Arc<dyn ReplayStore> {
    use crate::config::DpopReplayStore as Choice;
    use crate::storage::Backend;
    let redis_url = settings.rate_limits.redis_url.as_deref();
    let choice = match settings.dpop.replay_store {
        Choice::Auto => match (store.backend(), redis_url) {
            (Backend::Sqlite, _) => Choice::Memory,
            (Backend::Postgres, Some(_)) => Choice::Redis,
            (Backend::Postgres, None) => Choice::Database,
        },
        chosen => chosen,
    };
    match (choice, redis_url) {
        (Choice::Memory, _) => Arc::new(MemoryReplayStore::restart_safe(MEMORY_CAPACITY)),
        (Choice::Redis, Some(url)) => match redis::Client::open(url) {
            Ok(client) => Arc::new(RedisReplay {
                client,
                manager: tokio::sync::OnceCell::new(),
                key_prefix: settings.rate_limits.redis_key_prefix.clone(),
                timeout: settings.rate_limits.redis_timeout,
            }),
            // The settings checked the URL; this is only belt and braces.
            Err(err) => {
                log::error!(
                    "DPoP: redis_url is not usable ({err}); proofs are kept in the database"
                );
                Arc::new(DatabaseReplay(store.clone()))
            }
        },
        _ => Arc::new(DatabaseReplay(store.clone())),
    }
}

/// Proofs the memory store holds at most (about 50 MB): past it, proofs
/// are refused (503) rather than one forgotten.
const MEMORY_CAPACITY: usize = 1_000_000;

/// The verifier Keyport's token endpoint and `Caller` use: `htu` is
/// compared with the issuer (the public URL clients use, a proxy's
/// included) followed by the request's path.
pub fn verifier(store: &Store, settings: &Settings) -> DpopVerifier {
    let dpop = &settings.dpop;
    let verifier = DpopVerifier::new(
        Some(&settings.tokens.issuer),
        dpop.max_age,
        dpop.leeway,
        replay_store(store, settings),
    );
    if dpop.require_nonce {
        verifier.with_nonces(DpopNonces::with_keys(
            store.derive_keys(NONCE_KEY_PURPOSE),
            dpop.nonce_lifetime,
        ))
    } else {
        verifier
    }
}

/// Deletes expired proofs every minute, until `alive` is gone. Any instance
/// may sweep; two sweeping at once delete nothing twice.
pub fn spawn_sweeper(store: Store, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SWEEP_EVERY);
        loop {
            ticker.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            if let Err(err) = store.sweep_dpop_proofs(now()).await {
                log::warn!("DPoP replay cache sweep failed: {}", error_chain(&err));
            }
        }
    });
}
