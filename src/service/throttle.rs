//! Throttling of failed client authentications, in memory, per instance.
//!
//! Failures are counted per (client ID, source address) and per source
//! address. A guesser hammering one client ID from one address is refused
//! with 429 until the window ends, while the real integration, calling from
//! its own address, is not affected. Successes never count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// More entries than this and expired ones are swept; an attacker cannot make
/// the map grow without bound.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub struct FailureThrottle {
    inner: Arc<Mutex<HashMap<ThrottleKey, Window>>>,
    max_per_client: u32,
    max_per_address: u32,
    window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ThrottleKey {
    Address(IpAddr),
    ClientAtAddress(String, IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl FailureThrottle {
    pub fn new(max_per_client: u32, window: Duration) -> Self {
        FailureThrottle {
            inner: Arc::new(Mutex::new(HashMap::new())),
            max_per_client,
            max_per_address: max_per_client.saturating_mul(10),
            window,
        }
    }

    fn keys(client_id: &str, address: IpAddr) -> [(ThrottleKey, bool); 2] {
        // Client IDs are attacker-chosen text: bound what we keep.
        let client: String = client_id.chars().take(64).collect();
        [
            (ThrottleKey::ClientAtAddress(client, address), true),
            (ThrottleKey::Address(address), false),
        ]
    }

    /// `Some(retry_after)` while this client ID or address is throttled.
    pub fn check(&self, client_id: &str, address: IpAddr) -> Option<Duration> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // The usual case, nothing failed lately: skip building the keys.
        if map.is_empty() {
            return None;
        }
        let now = Instant::now();
        Self::keys(client_id, address)
            .into_iter()
            .filter_map(|(key, per_client)| {
                let window = map.get(&key)?;
                let limit = if per_client {
                    self.max_per_client
                } else {
                    self.max_per_address
                };
                let elapsed = now.duration_since(window.started);
                (elapsed < self.window && window.failures >= limit).then(|| self.window - elapsed)
            })
            .max()
    }

    /// `Some(retry_after)` while this client ID is throttled at this address,
    /// whatever the address's other failures.
    pub fn check_client(&self, client_id: &str, address: IpAddr) -> Option<Duration> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        let [(key, _), _] = Self::keys(client_id, address);
        let window = map.get(&key)?;
        let elapsed = Instant::now().duration_since(window.started);
        (elapsed < self.window && window.failures >= self.max_per_client)
            .then(|| self.window - elapsed)
    }

    pub fn record_failure(&self, client_id: &str, address: IpAddr) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_ENTRIES {
            let window = self.window;
            map.retain(|_, w| now.duration_since(w.started) < window);
        }
        for (key, _) in Self::keys(client_id, address) {
            let entry = map.entry(key).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(entry.started) >= self.window {
                *entry = Window {
                    started: now,
                    failures: 0,
                };
            }
            entry.failures = entry.failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_throttled_only_at_the_guessing_address() {
        let throttle = FailureThrottle::new(3, Duration::from_secs(60));
        let attacker: IpAddr = "10.0.0.66".parse().unwrap();
        let integration: IpAddr = "10.0.0.7".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check("kpc_x", attacker).is_none());
            throttle.record_failure("kpc_x", attacker);
        }
        assert!(throttle.check("kpc_x", attacker).is_some());
        assert!(throttle.check("kpc_x", integration).is_none());
    }

    #[test]
    fn an_address_guessing_many_client_ids_is_throttled() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let attacker: IpAddr = "10.0.0.66".parse().unwrap();
        for n in 0..20 {
            throttle.record_failure(&format!("kpc_{n}"), attacker);
        }
        assert!(throttle.check("kpc_fresh", attacker).is_some());
    }

    #[test]
    fn a_client_checked_on_its_own_ignores_the_address_bucket() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.66".parse().unwrap();
        for n in 0..20 {
            throttle.record_failure(&format!("kps_{n}"), ip);
        }
        assert!(throttle.check("kps_valid", ip).is_some());
        assert!(throttle.check_client("kps_valid", ip).is_none());
        throttle.record_failure("kps_valid", ip);
        throttle.record_failure("kps_valid", ip);
        assert!(throttle.check_client("kps_valid", ip).is_some());
    }

    #[test]
    fn the_window_expires() {
        let throttle = FailureThrottle::new(1, Duration::from_millis(20));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        throttle.record_failure("kpc_x", ip);
        assert!(throttle.check("kpc_x", ip).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(throttle.check("kpc_x", ip).is_none());
    }
}
