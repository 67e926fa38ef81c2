//! DPoP (RFC 9449) as Keyport runs it: the §4.3 checks of the
//! `keyport_verify` library (through [`crate::tokens::dpop`]), with the
//! replay cache in the database (every
//! instance on one database sees every proof) and nonces derived from the
//! master key (every instance accepts every other's).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::Settings;
use crate::domain::now;
use crate::storage::Store;
use crate::telemetry::error_chain;
use crate::tokens::dpop::{DpopNonces, DpopVerifier, ReplayStore, ReplayStoreError};
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

/// The verifier Keyport's token endpoint and `Caller` use: `htu` is
/// compared with the issuer (the public URL clients use, a proxy's
/// included) followed by the request's path.
pub fn verifier(store: &Store, settings: &Settings) -> DpopVerifier {
    let dpop = &settings.dpop;
    let verifier = DpopVerifier::new(
        Some(&settings.tokens.issuer),
        dpop.max_age,
        dpop.leeway,
        Arc::new(DatabaseReplay(store.clone())),
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
