//! Failing fast while PostgreSQL is down. Without this, every request that
//! needs the database waits out the pool's acquire timeout (5 s by default)
//! before answering 503; with it, once a probe has found the database down,
//! every query fails at once with [`StorageError::Unavailable`] (503 with
//! `Retry-After`), and the probe, on a connection of its own, lets queries
//! through again as soon as the database answers.
//!
//! The probe connects and runs `SELECT 1` every [`PROBE_EVERY`]. The
//! breaker opens when the connection fails (refused, closed, reset: what a
//! restart or a crash looks like), or when a `SELECT 1` goes unanswered for
//! [`STALLED`] (a partition). Slowness alone (an overloaded database answers
//! late) does not open it: that would turn load into refusals. SQLite (a
//! file) has no breaker.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{StorageError, Store};

/// How often the probe runs.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);

/// How long a `SELECT 1` on an open connection may go unanswered before
/// the database counts as unreachable.
const STALLED: Duration = Duration::from_secs(3);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the database is known to be down.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    open: AtomicBool,
}

impl Breaker {
    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens or closes; true if that changed anything.
    fn set(&self, open: bool) -> bool {
        self.open.swap(open, Ordering::SeqCst) != open
    }
}

/// The error every query gets while the breaker is open.
pub(super) fn known_down() -> StorageError {
    StorageError::Unavailable(sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "the database is down (a probe retries every 100 ms)",
    )))
}

impl Store {
    /// Whether the database is known to be down: queries fail at once.
    pub fn database_down(&self) -> bool {
        self.breaker.is_open()
    }

    /// Starts the probe (PostgreSQL only), until `alive` is gone; false
    /// when there is nothing to probe.
    pub fn spawn_breaker_probe(&self, alive: Weak<()>) -> bool {
        let super::notify::WatchTarget::Postgres(url) = &self.watch else {
            return false;
        };
        let (url, breaker) = (url.clone(), std::sync::Arc::clone(&self.breaker));
        tokio::spawn(async move {
            use sqlx::Connection as _;
            use sqlx::postgres::{PgConnectOptions, PgConnection};
            let mut connection: Option<PgConnection> = None;
            let mut ticker = tokio::time::interval(PROBE_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if alive.upgrade().is_none() {
                    return;
                }
                let probed = match connection.as_mut() {
                    Some(open) => match tokio::time::timeout(STALLED, open.ping()).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(err)) => Err(crate::telemetry::error_chain(&err)),
                        Err(_) => Err(format!("no answer within {STALLED:?}")),
                    },
                    None => {
                        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
                            let options = url
                                .parse::<PgConnectOptions>()?
                                .application_name("keyport-database-probe");
                            PgConnection::connect_with(&options).await
                        })
                        .await;
                        match connected {
                            Ok(Ok(open)) => {
                                connection = Some(open);
                                Ok(())
                            }
                            Ok(Err(err)) => Err(crate::telemetry::error_chain(&err)),
                            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
                        }
                    }
                };
                match probed {
                    Ok(()) => {
                        if breaker.set(false) {
                            log::info!("the database answers again: queries run again");
                        }
                    }
                    Err(why) => {
                        connection = None;
                        if breaker.set(true) {
                            log::warn!(
                                "the database is down ({why}): what needs it answers 503 at once \
                                 until it answers again"
                            );
                        }
                    }
                }
            }
        });
        true
    }
}
