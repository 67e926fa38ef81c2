//! Waiting for what another process (the CLI, a sibling instance, a
//! delivery worker) changes: bounded, never a fixed sleep that hopes.

use std::time::{Duration, Instant};

/// Calls `probe` every 100 ms until it returns true; panics naming `what`
/// if it has not after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
