//! Per-key rate limits for the report and webhook APIs.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket
//! kept as one number): each key has a theoretical arrival time `tat`; a
//! request at `now` is allowed when `max(tat, now) + interval - now` (the
//! backlog) is at most `burst × interval`, and then moves `tat` on by one
//! interval. One number per key, one read and one write per request.
//!
//! With `redis_url` set, that number lives in Redis and the step runs as
//! one Lua script ([`GCRA_SCRIPT`], by EVALSHA, falling back to EVAL when
//! Redis has not seen it), so every instance draws on one allowance and
//! Redis's clock is the only clock. Without Redis, or while Redis does not
//! answer within `redis_timeout_ms`, each instance runs the same step in
//! its own memory: N instances then allow up to N times the rate. A Redis
//! failure never refuses a request; it is counted in
//! `keyport_rate_limit_fallbacks_total`, `keyport_rate_limit_redis_available`
//! drops to 0, and Redis is asked again once a second until it answers.
//!
//! Keys are counted by client ID and rate: a key's tokens and the key
//! presented directly share one allowance. A changed rate starts a bucket
//! of its own with a full burst (GCRA's state is a time, which means
//! something else under another rate); tokens issued before the change
//! keep drawing on the old one until they expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use redis::aio::ConnectionManager;
use redis::{Client, ErrorKind, ServerErrorKind};

use crate::config::RateLimitSettings;
use crate::domain::{Principal, RateLimit};

/// The GCRA step, run atomically by Redis. Times are integer microseconds
/// of Redis's own clock (`TIME`), exact in Lua's doubles: the domain bounds
/// the period and burst so `now + burst × interval` stays below 2^53.
///
/// KEYS[1]: the key's bucket. ARGV[1]: the interval (µs); ARGV[2]: the burst.
/// Returns `{allowed (0/1), remaining, retry_after_us, reset_after_us}`.
pub const GCRA_SCRIPT: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local backlog = tat + interval - now
if backlog > tolerance then
  return {0, 0, backlog - tolerance, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.ceil(backlog / 1000))
return {1, math.floor((tolerance - backlog) / interval), 0, backlog}
"#;

/// How long Redis is left alone after it failed, before one request asks
/// it again.
const REDIS_RETRY: Duration = Duration::from_secs(1);

/// More buckets than this in memory and the idle ones (back to a full
/// burst) are dropped.
const MAX_MEMORY_BUCKETS: usize = 100_000;

/// Where a key stands after one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub limit: RateLimit,
    pub allowed: bool,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Until the whole burst is available again.
    pub reset_after: Duration,
    /// When refused: until one more request would be allowed.
    pub retry_after: Duration,
}

impl Allowance {
    /// `Retry-After` and the like: whole seconds, rounded up, at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        ceil_seconds(self.retry_after).max(1)
    }

    /// The `t` of the `RateLimit` header: whole seconds, rounded up.
    pub fn reset_after_seconds(&self) -> u64 {
        ceil_seconds(self.reset_after)
    }
}

fn ceil_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A request refused: the key used up its rate.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "this key's rate limit of {} is used up; retry in {} s",
    .0.limit,
    .0.retry_after_seconds()
)]
pub struct RateLimited(pub Allowance);

/// One GCRA step on a stored `tat` (µs; `None`: never seen), at `now`
/// (µs): the `tat` to store (`None` when refused) and the allowance. The
/// same arithmetic as [`GCRA_SCRIPT`].
fn gcra(tat: Option<u64>, now: u64, limit: RateLimit) -> (Option<u64>, Allowance) {
    let interval = limit.interval_micros();
    let tolerance = interval.saturating_mul(u64::from(limit.burst()));
    let tat = tat.unwrap_or(now).max(now);
    let backlog = tat - now + interval;
    if backlog > tolerance {
        return (
            None,
            Allowance {
                limit,
                allowed: false,
                remaining: 0,
                reset_after: Duration::from_micros(tat - now),
                retry_after: Duration::from_micros(backlog - tolerance),
            },
        );
    }
    (
        Some(tat + interval),
        Allowance {
            limit,
            allowed: true,
            remaining: u32::try_from((tolerance - backlog) / interval).unwrap_or(u32::MAX),
            reset_after: Duration::from_micros(backlog),
            retry_after: Duration::ZERO,
        },
    )
}

/// The limiter's Prometheus series, registered by `telemetry::Metrics`.
#[derive(Clone)]
pub struct RateLimitCounters {
    pub refused: IntCounter,
    pub fallbacks: IntCounter,
    pub redis_available: IntGauge,
}

impl RateLimitCounters {
    fn new() -> Self {
        // The names and help texts are constants: these cannot fail.
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("a valid counter");
        RateLimitCounters {
            refused: counter(
                "keyport_rate_limit_refused_total",
                "Report and webhook requests refused (429) by their key's rate limit",
            ),
            fallbacks: counter(
                "keyport_rate_limit_fallbacks_total",
                "Rate-limit checks made in this instance's memory because Redis did not answer",
            ),
            redis_available: IntGauge::new(
                "keyport_rate_limit_redis_available",
                "1 while Redis answers the rate-limit checks; 0 when it does not or is not configured",
            )
            .expect("a valid gauge"),
        }
    }
}

/// The per-key limiter: Redis when configured and answering, this
/// instance's memory otherwise. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// The clock of the memory buckets and of Redis's back-off.
    epoch: Instant,
    memory: Mutex<HashMap<String, u64>>,
    redis: Option<RedisLimiter>,
    counters: RateLimitCounters,
}

impl RateLimiter {
    /// A limiter for `settings`; nothing connects until the first check
    /// (or [`RateLimiter::warm_up`]).
    pub fn new(settings: &RateLimitSettings) -> Self {
        let counters = RateLimitCounters::new();
        let redis = settings.redis_url.as_deref().and_then(|url| {
            match Client::open(url) {
                Ok(client) => Some(RedisLimiter::new(client, settings)),
                // The settings checked the URL; this is only belt and braces.
                Err(err) => {
                    log::error!(
                        "rate limits: redis_url is not usable ({err}); limiting per instance"
                    );
                    None
                }
            }
        });
        counters.redis_available.set(i64::from(redis.is_some()));
        RateLimiter {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                memory: Mutex::new(HashMap::new()),
                redis,
                counters,
            }),
        }
    }

    pub fn counters(&self) -> &RateLimitCounters {
        &self.inner.counters
    }

    /// Whether the counters are shared through Redis (when it answers).
    pub fn uses_redis(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Connects to Redis in the background, so the first request does not
    /// wait for it and the availability gauge is right from the start.
    pub fn warm_up(&self) {
        if self.inner.redis.is_none() {
            return;
        }
        let limiter = self.clone();
        tokio::spawn(async move {
            if let Some(redis) = &limiter.inner.redis {
                let now = limiter.now();
                redis.ping(now, &limiter.inner.counters).await;
            }
        });
    }

    /// Admits a request of `principal` to the report and webhook APIs:
    /// `Ok(None)` when its key has no rate (or no key made the call),
    /// `Ok(Some(allowance))` within its rate, `Err` past it.
    pub async fn admit(&self, principal: &Principal) -> Result<Option<Allowance>, RateLimited> {
        let Some((client_id, limit)) = principal.credential.rate_limit() else {
            return Ok(None);
        };
        let allowance = self.check(client_id, limit).await;
        if allowance.allowed {
            Ok(Some(allowance))
        } else {
            Err(RateLimited(allowance))
        }
    }

    /// One request of the key `client_id` under `limit`.
    pub async fn check(&self, client_id: &str, limit: RateLimit) -> Allowance {
        let inner = &self.inner;
        let bucket = bucket(client_id, limit);
        let allowance = match &inner.redis {
            None => self.check_memory(bucket, limit),
            Some(redis) => match redis
                .check(&bucket, limit, self.now(), &inner.counters)
                .await
            {
                Some(allowance) => allowance,
                None => {
                    inner.counters.fallbacks.inc();
                    self.check_memory(bucket, limit)
                }
            },
        };
        if !allowance.allowed {
            inner.counters.refused.inc();
        }
        allowance
    }

    /// The check of `bucket` ([`bucket`]) in this instance's memory only.
    fn check_memory(&self, bucket: String, limit: RateLimit) -> Allowance {
        use std::collections::hash_map::Entry;
        let now = self.now();
        let mut buckets = self.inner.memory.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_MEMORY_BUCKETS && !buckets.contains_key(&bucket) {
            // A bucket whose tat has passed is back to a full burst:
            // forgetting it changes nothing.
            buckets.retain(|_, tat| *tat > now);
        }
        // One hash of the bucket's name, whether it is new or not.
        match buckets.entry(bucket) {
            Entry::Occupied(mut stored) => {
                let (tat, allowance) = gcra(Some(*stored.get()), now, limit);
                if let Some(tat) = tat {
                    stored.insert(tat);
                }
                allowance
            }
            Entry::Vacant(slot) => {
                let (tat, allowance) = gcra(None, now, limit);
                if let Some(tat) = tat {
                    slot.insert(tat);
                }
                allowance
            }
        }
    }

    /// Microseconds since the limiter started (monotonic).
    fn now(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// The bucket of a key under a rate: `{client_id}:{requests}:{per_seconds}:{burst}`
/// (in Redis, after `{redis_key_prefix}rl:`).
fn bucket(client_id: &str, limit: RateLimit) -> String {
    format!(
        "{client_id}:{}:{}:{}",
        limit.requests(),
        limit.per_seconds(),
        limit.burst()
    )
}

/// The Redis side: a connection made on first use that reconnects by
/// itself, and a back-off so a Redis that is down costs requests nothing.
struct RedisLimiter {
    client: Client,
    manager: OnceLock<ConnectionManager>,
    /// `{redis_key_prefix}rl:`, then the [`bucket`].
    key_prefix: String,
    timeout: Duration,
    script_sha: String,
    /// Limiter microseconds before which Redis is not asked; 0: it answers.
    down_until: AtomicU64,
}

/// Why one Redis check gave no answer; for the log line.
#[derive(Debug, thiserror::Error)]
enum RedisFailure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer {0:?}")]
    Answer((i64, i64, i64, i64)),
}

impl RedisLimiter {
    fn new(client: Client, settings: &RateLimitSettings) -> Self {
        RedisLimiter {
            client,
            manager: OnceLock::new(),
            key_prefix: format!("{}rl:", settings.redis_key_prefix),
            timeout: settings.redis_timeout,
            script_sha: redis::Script::new(GCRA_SCRIPT).get_hash().to_owned(),
            down_until: AtomicU64::new(0),
        }
    }

    /// The shared connection, made (lazily: it connects on first use) the
    /// first time it is needed, inside the runtime.
    fn manager(&self) -> Result<ConnectionManager, redis::RedisError> {
        if let Some(manager) = self.manager.get() {
            return Ok(manager.clone());
        }
        // One attempt per check, each bounded by the timeout; the back-off
        // below spaces the attempts out.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        Ok(self.manager.get_or_init(|| manager).clone())
    }

    /// The check in Redis, or `None` when Redis is not asked (it failed
    /// less than [`REDIS_RETRY`] ago) or does not answer in time.
    async fn check(
        &self,
        bucket: &str,
        limit: RateLimit,
        now: u64,
        counters: &RateLimitCounters,
    ) -> Option<Allowance> {
        if !self.may_ask(now) {
            return None;
        }
        let outcome = tokio::time::timeout(self.timeout, self.run_script(bucket, limit))
            .await
            .unwrap_or(Err(RedisFailure::Timeout(self.timeout)));
        match outcome {
            Ok(allowance) => {
                self.answered(counters);
                Some(allowance)
            }
            Err(err) => {
                self.failed(now, counters, &err);
                None
            }
        }
    }

    /// Whether to ask Redis now: always while it answers; after a failure,
    /// once per [`REDIS_RETRY`], by the one request that claims the retry.
    fn may_ask(&self, now: u64) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        now >= until
            && self
                .down_until
                .compare_exchange(
                    until,
                    now + retry_micros(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn answered(&self, counters: &RateLimitCounters) {
        if self.down_until.swap(0, Ordering::AcqRel) != 0 {
            log::info!(
                "rate limits: Redis at {} answers again; limits are shared across instances",
                self.client.get_connection_info().addr()
            );
        }
        counters.redis_available.set(1);
    }

    fn failed(&self, now: u64, counters: &RateLimitCounters, err: &RedisFailure) {
        let was_up = self
            .down_until
            .swap(now.saturating_add(retry_micros()).max(1), Ordering::AcqRel)
            == 0;
        counters.redis_available.set(0);
        if was_up {
            log::warn!(
                "rate limits: Redis at {} failed ({err}); each instance limits on its own \
                 until it answers again",
                self.client.get_connection_info().addr()
            );
        } else {
            log::debug!("rate limits: Redis still failing ({err})");
        }
    }

    /// Connects (or not) and sets the gauge, for [`RateLimiter::warm_up`].
    async fn ping(&self, now: u64, counters: &RateLimitCounters) {
        let ping = async {
            let mut manager = self.manager()?;
            redis::cmd("PING")
                .query_async::<String>(&mut manager)
                .await
                .map_err(RedisFailure::from)
        };
        match tokio::time::timeout(self.timeout, ping)
            .await
            .unwrap_or(Err(RedisFailure::Timeout(self.timeout)))
        {
            Ok(_) => self.answered(counters),
            Err(err) => self.failed(now, counters, &err),
        }
    }

    /// EVALSHA, or EVAL when Redis does not have the script (after a
    /// restart or `SCRIPT FLUSH`); EVAL also caches it for the next EVALSHA.
    async fn run_script(&self, bucket: &str, limit: RateLimit) -> Result<Allowance, RedisFailure> {
        let mut manager = self.manager()?;
        let key = format!("{}{bucket}", self.key_prefix);
        let interval = limit.interval_micros();
        let burst = limit.burst();
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(&self.script_sha)
            .arg(1)
            .arg(&key)
            .arg(interval)
            .arg(burst);
        let reply: (i64, i64, i64, i64) = match evalsha.query_async(&mut manager).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(GCRA_SCRIPT)
                    .arg(1)
                    .arg(&key)
                    .arg(interval)
                    .arg(burst);
                eval.query_async(&mut manager).await?
            }
            other => other?,
        };
        let (allowed, remaining, retry_after, reset_after) = reply;
        let micros = |value: i64| u64::try_from(value).map(Duration::from_micros);
        match (
            allowed,
            u32::try_from(remaining),
            micros(retry_after),
            micros(reset_after),
        ) {
            (0 | 1, Ok(remaining), Ok(retry_after), Ok(reset_after)) => Ok(Allowance {
                limit,
                allowed: allowed == 1,
                remaining,
                reset_after,
                retry_after,
            }),
            _ => Err(RedisFailure::Answer(reply)),
        }
    }
}

fn retry_micros() -> u64 {
    REDIS_RETRY.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: i64, per: i64, burst: i64) -> RateLimit {
        RateLimit::new(requests, per, Some(burst)).unwrap()
    }

    /// Runs `steps` of (µs since start) through the memory GCRA, returning
    /// who was allowed and what remained.
    fn run(limit: RateLimit, steps: &[u64]) -> Vec<(bool, u32)> {
        let mut tat = None;
        steps
            .iter()
            .map(|&now| {
                let (next, allowance) = gcra(tat, now, limit);
                if next.is_some() {
                    tat = next;
                }
                (allowance.allowed, allowance.remaining)
            })
            .collect()
    }

    #[test]
    fn a_burst_is_allowed_at_once_and_the_next_request_is_refused() {
        let limit = limit(5, 60, 3);
        assert_eq!(
            run(limit, &[0, 0, 0, 0]),
            [(true, 2), (true, 1), (true, 0), (false, 0)]
        );
    }

    #[test]
    fn the_allowance_comes_back_one_interval_at_a_time() {
        // 5 a minute: one every 12 s, 2 at once.
        let limit = limit(5, 60, 2);
        let s = 1_000_000;
        assert_eq!(
            run(
                limit,
                &[0, 0, 11 * s, 12 * s, 12 * s, 36 * s, 36 * s, 36 * s]
            ),
            [
                (true, 1),
                (true, 0),
                (false, 0),
                (true, 0),
                (false, 0),
                (true, 1),
                (true, 0),
                (false, 0)
            ]
        );
    }

    #[test]
    fn a_refusal_says_when_to_retry_and_when_the_burst_is_back() {
        let limit = limit(5, 60, 2);
        let (tat, _) = gcra(None, 0, limit);
        let (tat, _) = gcra(tat, 0, limit);
        let (stored, refused) = gcra(tat, 1_000_000, limit);
        assert_eq!(stored, None, "a refusal stores nothing");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(11));
        assert_eq!(refused.reset_after, Duration::from_secs(23));
        assert_eq!(refused.retry_after_seconds(), 11);
        let (_, allowed) = gcra(None, 0, limit);
        assert_eq!(allowed.reset_after_seconds(), 12);
    }

    #[test]
    fn a_fractional_interval_never_lets_more_than_the_rate_through() {
        // 7 a second: 142,857 µs apart; over ten seconds at most 7 × 10 + burst.
        let limit = limit(7, 1, 1);
        let steps: Vec<u64> = (0..10_000).map(|n| n * 1_000).collect();
        let allowed = run(limit, &steps).iter().filter(|(ok, _)| *ok).count();
        assert!((70..=71).contains(&allowed), "{allowed}");
    }

    fn settings(redis_url: Option<String>, prefix: &str) -> RateLimitSettings {
        RateLimitSettings {
            redis_url,
            redis_key_prefix: prefix.to_owned(),
            redis_timeout: Duration::from_secs(2),
        }
    }

    fn principal(rate_limit: Option<RateLimit>) -> Principal {
        let mut principal = Principal::operator();
        principal.credential = crate::domain::Credential::AccessToken {
            jti: "jti".to_owned(),
            client_id: "kpc_test".to_owned(),
            expires_at: 0,
            rate_limit,
        };
        principal
    }

    #[tokio::test]
    async fn a_key_without_a_rate_is_never_counted() {
        let limiter = RateLimiter::new(&settings(None, "unused:"));
        for _ in 0..100 {
            assert_eq!(limiter.admit(&principal(None)).await.unwrap(), None);
        }
        let limited = principal(Some(limit(1, 60, 1)));
        assert!(limiter.admit(&limited).await.unwrap().is_some());
        let refused = limiter.admit(&limited).await.expect_err("over the rate");
        assert!(
            refused.to_string().contains("1 requests per 60 s"),
            "{refused}"
        );
        assert_eq!(limiter.counters().refused.get(), 1);
        assert_eq!(limiter.counters().redis_available.get(), 0);
    }

    /// The Lua script and the memory step agree, request for request, on
    /// the machine's Redis (127.0.0.1:6379, as the API tests use).
    #[tokio::test]
    async fn the_redis_script_decides_like_the_memory_step() {
        let prefix = format!("keyport-unit-{}:", uuid::Uuid::new_v4().simple());
        let limiter = RateLimiter::new(&settings(
            Some("redis://127.0.0.1:6379".to_owned()),
            &prefix,
        ));
        let memory = RateLimiter::new(&settings(None, "unused:"));
        let limit = limit(3, 60, 3);
        for _ in 0..5 {
            let shared = limiter.check("kpc_same", limit).await;
            let local = memory.check("kpc_same", limit).await;
            assert_eq!(
                (shared.allowed, shared.remaining),
                (local.allowed, local.remaining)
            );
            assert_eq!(shared.retry_after_seconds(), local.retry_after_seconds());
            assert_eq!(shared.reset_after_seconds(), local.reset_after_seconds());
        }
        assert_eq!(limiter.counters().fallbacks.get(), 0, "Redis answered");
        assert_eq!(limiter.counters().redis_available.get(), 1);
        assert_eq!(limiter.counters().refused.get(), 2);

        // A Redis that does not know the script (restarted, or flushed) is
        // sent it with EVAL. Shown with a digest Redis has never seen, not
        // SCRIPT FLUSH: that would reach every other test using this Redis.
        let mut forgetful = RateLimiter::new(&settings(
            Some("redis://127.0.0.1:6379".to_owned()),
            &prefix,
        ));
        Arc::get_mut(&mut forgetful.inner)
            .and_then(|inner| inner.redis.as_mut())
            .expect("not shared yet, with Redis")
            .script_sha = "0".repeat(40);
        let other = forgetful.check("kpc_other", limit).await;
        assert!(other.allowed);
        assert_eq!(other.remaining, 2);
        assert_eq!(forgetful.counters().fallbacks.get(), 0, "EVAL answered");
        let client = Client::open("redis://127.0.0.1:6379").unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg(format!("{prefix}rl:kpc_same:3:60:3"))
            .arg(format!("{prefix}rl:kpc_other:3:60:3"))
            .query_async(&mut connection)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_changed_rate_starts_a_bucket_of_its_own() {
        let limiter = RateLimiter::new(&settings(None, "unused:"));
        let slow = limit(1, 60, 1);
        assert!(limiter.check("kpc_k", slow).await.allowed);
        assert!(!limiter.check("kpc_k", slow).await.allowed);
        let fast = limit(600, 60, 100);
        let allowance = limiter.check("kpc_k", fast).await;
        assert!(allowance.allowed, "not held to the slow rate's debt");
        assert_eq!(allowance.remaining, 99);
        assert!(
            !limiter.check("kpc_k", slow).await.allowed,
            "the old bucket stays spent"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_memory_and_is_left_alone_for_a_while() {
        // A port just freed: connections to it are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let limiter = RateLimiter::new(&settings(
            Some(format!("redis://127.0.0.1:{port}")),
            "unused:",
        ));
        let limit = limit(2, 60, 2);
        let decisions: Vec<bool> =
            futures_util::future::join_all((0..3).map(|_| limiter.check("kpc_x", limit)))
                .await
                .into_iter()
                .map(|a| a.allowed)
                .collect();
        assert_eq!(
            decisions.iter().filter(|ok| **ok).count(),
            2,
            "{decisions:?}"
        );
        assert_eq!(limiter.counters().fallbacks.get(), 3);
        assert_eq!(limiter.counters().redis_available.get(), 0);
        let redis = limiter.inner.redis.as_ref().unwrap();
        assert!(!redis.may_ask(limiter.now()), "not asked again at once");
    }
}
