//! Usage per key and per hour, counted without a database write per
//! request: each answer adds one to a counter in memory (sharded by client
//! ID, so requests for different keys rarely meet on a lock, and a lock is
//! held for one hash lookup), and a background task writes what
//! accumulated every `usage_flush_seconds` and at shutdown. Rows are added
//! to (`count = count + excluded.count`), never overwritten, so instances
//! sharing one database each add their own.
//!
//! Counted per key and hour: tokens issued, direct uses (a secret presented
//! on its own, a SigV4 signature), requests made with the key's tokens,
//! refusals by reason, the busiest minute (to compare with the key's rate
//! limit) and the first [`ADDRESSES_PER_HOUR`] distinct addresses.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::keys::KeyRateLimit;
use super::{Result, Service, authz};
use crate::domain::{KEYS_MANAGE, Principal, UnixTime, now};
use crate::storage::{Store, UsageAddress, UsageCount, UsagePeak, UsageRow, UsageScope};

/// Distinct addresses kept per key and hour (per instance): enough to see
/// where a key is used from, bounded whoever calls.
pub const ADDRESSES_PER_HOUR: usize = 10;

/// Keys counted in memory between two flushes, at most; beyond it new
/// keys' counts are dropped (and counted in [`UsageCounter::dropped`]).
const MAX_PENDING_KEYS: usize = 100_000;
const SHARDS: usize = 16;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// How often rows past `usage_retention_days` are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// What happened to one request attributed to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A token was issued to the key (client credentials or exchange).
    TokenIssued,
    /// The key's secret presented on its own (`x-api-key`, `Bearer kps_…`).
    DirectUse,
    /// A request signed with the key's secret (AWS Signature Version 4).
    Sigv4Use,
    /// A request made with one of the key's access tokens.
    TokenUse,
    Refused(Refusal),
}

/// Why a request attributed to a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The wrong secret, or a SigV4 signature made with another one.
    WrongSecret,
    AddressNotAllowed,
    /// Over the key's rate limit (reports and webhooks).
    RateLimited,
    /// Too many failed authentications: refused before any check.
    LockedOut,
    Disabled,
    Expired,
    Revoked,
    OwnerDisabled,
    /// A missing, invalid or replayed DPoP proof (or a nonce to retry with).
    Dpop,
    /// A `private_key_jwt` client assertion that was not accepted.
    Assertion,
    /// A SigV4 signature seen before.
    Replayed,
    Other,
}

impl Refusal {
    pub const ALL: [Refusal; 12] = [
        Refusal::WrongSecret,
        Refusal::AddressNotAllowed,
        Refusal::RateLimited,
        Refusal::LockedOut,
        Refusal::Disabled,
        Refusal::Expired,
        Refusal::Revoked,
        Refusal::OwnerDisabled,
        Refusal::Dpop,
        Refusal::Assertion,
        Refusal::Replayed,
        Refusal::Other,
    ];

    /// Its name in the usage API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::WrongSecret => "wrong_secret",
            Refusal::AddressNotAllowed => "address_not_allowed",
            Refusal::RateLimited => "rate_limited",
            Refusal::LockedOut => "locked_out",
            Refusal::Disabled => "disabled",
            Refusal::Expired => "expired",
            Refusal::Revoked => "revoked",
            Refusal::OwnerDisabled => "owner_disabled",
            Refusal::Dpop => "dpop",
            Refusal::Assertion => "assertion",
            Refusal::Replayed => "replayed",
            Refusal::Other => "other",
        }
    }

    /// From the reason noted for the request's log line (see
    /// `telemetry::request::note_refusal`); `None` for reasons that name no
    /// key (an unknown or malformed client ID).
    pub fn from_log_reason(reason: &str) -> Option<Refusal> {
        Some(match reason {
            "wrong secret" | "bad credentials" | "malformed secret" => Refusal::WrongSecret,
            "address not allowed" => Refusal::AddressNotAllowed,
            "locked after repeated failures" => Refusal::LockedOut,
            "disabled" => Refusal::Disabled,
            "expired" => Refusal::Expired,
            "revoked" => Refusal::Revoked,
            "owner disabled" => Refusal::OwnerDisabled,
            "unknown client" | "malformed client ID" | "database unavailable" => return None,
            _ => Refusal::Other,
        })
    }
}

impl Outcome {
    const COUNT: usize = 4 + Refusal::ALL.len();

    fn index(self) -> usize {
        match self {
            Outcome::TokenIssued => 0,
            Outcome::DirectUse => 1,
            Outcome::Sigv4Use => 2,
            Outcome::TokenUse => 3,
            Outcome::Refused(refusal) => {
                4 + Refusal::ALL
                    .iter()
                    .position(|r| *r == refusal)
                    .unwrap_or(Refusal::ALL.len() - 1)
            }
        }
    }

    fn from_index(index: usize) -> Outcome {
        match index {
            0 => Outcome::TokenIssued,
            1 => Outcome::DirectUse,
            2 => Outcome::Sigv4Use,
            3 => Outcome::TokenUse,
            n => Outcome::Refused(Refusal::ALL[(n - 4).min(Refusal::ALL.len() - 1)]),
        }
    }

    /// Its name in the database: `tokens_issued`, …, `refused:<reason>`.
    pub fn as_stored(self) -> String {
        match self {
            Outcome::TokenIssued => "tokens_issued".to_owned(),
            Outcome::DirectUse => "direct_uses".to_owned(),
            Outcome::Sigv4Use => "sigv4_uses".to_owned(),
            Outcome::TokenUse => "token_uses".to_owned(),
            Outcome::Refused(refusal) => format!("refused:{}", refusal.as_str()),
        }
    }
}

/// One key's tally for one hour, on this instance.
#[derive(Debug, Clone)]
struct Tally {
    counts: [u64; Outcome::COUNT],
    /// The minute being counted, and its requests so far.
    minute: i64,
    in_minute: u64,
    /// The busiest minute of the hour so far.
    peak: u64,
    addresses: Vec<IpAddr>,
    /// Addresses already written (the first ones of `addresses`).
    addresses_written: usize,
    /// Anything new since the last flush.
    dirty: bool,
}

impl Tally {
    fn new() -> Self {
        Tally {
            counts: [0; Outcome::COUNT],
            minute: 0,
            in_minute: 0,
            peak: 0,
            addresses: Vec::new(),
            addresses_written: 0,
            dirty: false,
        }
    }

    fn add(&mut self, outcome: Outcome, at: UnixTime, address: Option<IpAddr>) {
        self.counts[outcome.index()] += 1;
        let minute = at.div_euclid(60);
        if minute == self.minute {
            self.in_minute += 1;
        } else if minute > self.minute {
            self.minute = minute;
            self.in_minute = 1;
        }
        self.peak = self.peak.max(self.in_minute);
        if let Some(address) = address.map(|a| a.to_canonical())
            && self.addresses.len() < ADDRESSES_PER_HOUR
            && !self.addresses.contains(&address)
        {
            self.addresses.push(address);
        }
        self.dirty = true;
    }
}

/// Per client ID, its tallies by hour (one, two around the hour's turn).
type Shard = HashMap<Box<str>, Vec<(i64, Tally)>>;

/// `client_id`'s tally for `hour`, made if there is room.
fn tally_in<'a>(shard: &'a mut Shard, client_id: &str, hour: i64) -> Option<&'a mut Tally> {
    if !shard.contains_key(client_id) {
        if shard.len() >= MAX_PENDING_KEYS / SHARDS {
            return None;
        }
        shard.insert(Box::from(client_id), Vec::new());
    }
    let hours = shard.get_mut(client_id)?;
    let index = match hours.iter().position(|(h, _)| *h == hour) {
        Some(index) => index,
        None => {
            hours.push((hour, Tally::new()));
            hours.len() - 1
        }
    };
    Some(&mut hours[index].1)
}

/// The counters of this instance, cheap to clone (shared).
#[derive(Clone)]
pub struct UsageCounter {
    shards: Arc<[Mutex<Shard>; SHARDS]>,
    hasher: std::collections::hash_map::RandomState,
    enabled: bool,
    dropped: Arc<AtomicU64>,
}

impl Default for UsageCounter {
    fn default() -> Self {
        UsageCounter::new(true)
    }
}

impl UsageCounter {
    /// `enabled: false` counts nothing (`usage_counting = false`).
    pub fn new(enabled: bool) -> Self {
        UsageCounter {
            shards: Arc::new(std::array::from_fn(|_| Mutex::new(HashMap::new()))),
            hasher: std::collections::hash_map::RandomState::new(),
            enabled,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts for the key behind `client_id` whatever happened at `at`.
    pub fn count(&self, client_id: &str, outcome: Outcome, at: UnixTime, address: Option<IpAddr>) {
        if !self.enabled {
            return;
        }
        let hour = at - at.rem_euclid(HOUR);
        let mut shard = self
            .shard_of(client_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The usual case, a key already counted this hour, allocates nothing.
        match tally_in(&mut shard, client_id, hour) {
            Some(tally) => tally.add(outcome, at, address),
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Requests not counted because too many keys were pending.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes what accumulated since the last flush. The current hour's
    /// tallies stay (their minute and peak carry on); earlier hours' go.
    fn take(&self, current_hour: i64) -> Batch {
        let mut batch = Batch::default();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|client_id, hours| {
                hours.retain_mut(|(hour, tally)| {
                    if tally.dirty {
                        batch.add(client_id, *hour, tally);
                        tally.counts = [0; Outcome::COUNT];
                        tally.addresses_written = tally.addresses.len();
                        tally.dirty = false;
                    }
                    *hour >= current_hour
                });
                !hours.is_empty()
            });
        }
        batch
    }

    /// Puts back a batch that could not be written, for the next flush.
    fn restore(&self, batch: Batch) {
        for count in batch.counts {
            let mut shard = self
                .shard_of(&count.client_id)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(tally) = tally_in(&mut shard, &count.client_id, count.hour) else {
                continue;
            };
            let index = stored_index(&count.outcome);
            tally.counts[index] += count.count as u64;
            tally.dirty = true;
        }
        for peak in batch.peaks {
            let mut shard = self
                .shard_of(&peak.client_id)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(tally) = tally_in(&mut shard, &peak.client_id, peak.hour) else {
                continue;
            };
            tally.peak = tally.peak.max(peak.per_minute as u64);
            tally.dirty = true;
        }
        for address in batch.addresses {
            let mut shard = self
                .shard_of(&address.client_id)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let Some(tally) = tally_in(&mut shard, &address.client_id, address.hour) else {
                continue;
            };
            if let Ok(ip) = address.address.parse::<IpAddr>() {
                tally.addresses.retain(|a| *a != ip);
                tally.addresses.insert(0, ip);
                tally.addresses_written = 0;
                tally.dirty = true;
            }
        }
    }

    fn shard_of(&self, client_id: &str) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(client_id) as usize) % SHARDS]
    }

    /// Writes what accumulated; on failure it is kept for next time.
    pub async fn flush(&self, store: &Store) {
        let at = now();
        let mut batch = self.take(at - at.rem_euclid(HOUR));
        if batch.is_empty() {
            return;
        }
        // One order for every instance: concurrent flushes then wait for
        // each other's row locks instead of deadlocking.
        batch.counts.sort_by(|a, b| {
            (&a.client_id, a.hour, &a.outcome).cmp(&(&b.client_id, b.hour, &b.outcome))
        });
        batch
            .peaks
            .sort_by(|a, b| (&a.client_id, a.hour).cmp(&(&b.client_id, b.hour)));
        batch.addresses.sort_by(|a, b| {
            (&a.client_id, a.hour, &a.address).cmp(&(&b.client_id, b.hour, &b.address))
        });
        if let Err(err) = store
            .add_key_usage(&batch.counts, &batch.peaks, &batch.addresses)
            .await
        {
            log::warn!(
                "could not record key usage: {}",
                crate::telemetry::error_chain(&err)
            );
            self.restore(batch);
        }
    }

    /// Flushes every `every`, and deletes rows older than `retention` every
    /// hour, until `alive` reports the application is gone.
    pub fn spawn_flusher(
        &self,
        store: Store,
        every: Duration,
        retention: Duration,
        alive: Weak<()>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            let mut last_sweep: Option<tokio::time::Instant> = None;
            loop {
                ticker.tick().await;
                this.flush(&store).await;
                if alive.upgrade().is_none() {
                    break;
                }
                if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
                    last_sweep = Some(tokio::time::Instant::now());
                    let before = now() - retention.as_secs() as i64;
                    if let Err(err) = store.sweep_key_usage(before).await {
                        log::warn!(
                            "could not delete old key usage: {}",
                            crate::telemetry::error_chain(&err)
                        );
                    }
                }
            }
        });
    }
}

fn stored_index(stored: &str) -> usize {
    (0..Outcome::COUNT)
        .find(|&i| Outcome::from_index(i).as_stored() == stored)
        .unwrap_or(Outcome::COUNT - 1)
}

#[derive(Default)]
struct Batch {
    counts: Vec<UsageCount>,
    peaks: Vec<UsagePeak>,
    addresses: Vec<UsageAddress>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.peaks.is_empty() && self.addresses.is_empty()
    }

    fn add(&mut self, client_id: &str, hour: i64, tally: &Tally) {
        for (index, count) in tally.counts.iter().enumerate() {
            if *count > 0 {
                self.counts.push(UsageCount {
                    client_id: client_id.to_owned(),
                    hour,
                    outcome: Outcome::from_index(index).as_stored(),
                    count: *count as i64,
                });
            }
        }
        self.peaks.push(UsagePeak {
            client_id: client_id.to_owned(),
            hour,
            per_minute: tally.peak as i64,
        });
        for address in &tally.addresses[tally.addresses_written..] {
            self.addresses.push(UsageAddress {
                client_id: client_id.to_owned(),
                hour,
                address: address.to_string(),
            });
        }
    }
}

/// Hours or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            _ => Err("granularity must be `hour` or `day`".to_owned()),
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Hour => HOUR,
            Granularity::Day => DAY,
        }
    }

    /// The longest range one request may ask for: 31 days of hours (744
    /// buckets), 400 days of days.
    pub fn max_range(self) -> i64 {
        match self {
            Granularity::Hour => 31 * DAY,
            Granularity::Day => 400 * DAY,
        }
    }

    /// The range asked for when `from` is not given.
    fn default_range(self) -> i64 {
        match self {
            Granularity::Hour => DAY,
            Granularity::Day => 30 * DAY,
        }
    }
}

/// The period a usage report covers: buckets starting in `[from, to)`,
/// `from` rounded down to a bucket boundary (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRange {
    pub from: UnixTime,
    pub to: UnixTime,
    pub granularity: Granularity,
}

impl UsageRange {
    /// `to` defaults to now, `from` to a day (hours) or 30 days (days)
    /// before it; refused when `from` is after `to` or the range is longer
    /// than [`Granularity::max_range`].
    pub fn parse(
        from: Option<UnixTime>,
        to: Option<UnixTime>,
        granularity: Option<&str>,
        at: UnixTime,
    ) -> Result<Self, String> {
        let granularity = granularity.map_or(Ok(Granularity::Hour), Granularity::parse)?;
        let to = to.unwrap_or(at);
        let from = from.unwrap_or(to.saturating_sub(granularity.default_range()));
        if from < 0 || to < 0 {
            return Err("from and to are Unix times in seconds, not negative".to_owned());
        }
        if from > to {
            return Err("from must not be after to".to_owned());
        }
        let from = from - from.rem_euclid(granularity.seconds());
        if to - from > granularity.max_range() {
            return Err(format!(
                "the range may span at most {} days with granularity `{}`",
                granularity.max_range() / DAY,
                match granularity {
                    Granularity::Hour => "hour",
                    Granularity::Day => "day",
                }
            ));
        }
        Ok(UsageRange {
            from,
            to,
            granularity,
        })
    }
}

impl UsageRange {
    /// The `days` 24-hour windows that end with the current hour (the one
    /// holding `at`), oldest first: the last of them is "the last 24
    /// hours" in whole hours, whatever the time of day, and each is read
    /// as one bucket rather than as 24.
    pub fn days_ending_now(at: UnixTime, days: i64) -> Self {
        let next_hour = at - at.rem_euclid(HOUR) + HOUR;
        UsageRange {
            from: next_hour - days * DAY,
            to: at,
            granularity: Granularity::Day,
        }
    }
}

/// What a key (or several) did in one bucket, or in the whole range.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UsageCounts {
    /// Tokens issued to the key.
    pub tokens_issued: u64,
    /// Requests with the key's secret presented on its own (`x-api-key`).
    pub direct_uses: u64,
    /// Requests signed with AWS Signature Version 4.
    pub sigv4_uses: u64,
    /// Requests made with the key's access tokens.
    pub token_uses: u64,
    /// Refused requests, all reasons together.
    pub refused: u64,
    /// Refused requests by reason: `wrong_secret`, `address_not_allowed`,
    /// `rate_limited`, `locked_out`, `disabled`, `expired`, `revoked`,
    /// `owner_disabled`, `dpop`, `assertion`, `replayed`, `other`.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub refusals: BTreeMap<&'static str, u64>,
    /// The most requests in one minute (of one instance), to compare with
    /// the key's rate limit.
    pub peak_per_minute: u64,
    /// Addresses the key was used from (the first few per hour).
    pub addresses: Vec<String>,
}

impl UsageCounts {
    fn add(&mut self, outcome: &str, count: u64) {
        match outcome {
            "tokens_issued" => self.tokens_issued += count,
            "direct_uses" => self.direct_uses += count,
            "sigv4_uses" => self.sigv4_uses += count,
            "token_uses" => self.token_uses += count,
            other => {
                let reason = other.strip_prefix("refused:").unwrap_or(other);
                let reason = Refusal::ALL
                    .iter()
                    .find(|r| r.as_str() == reason)
                    .map_or("other", |r| r.as_str());
                *self.refusals.entry(reason).or_default() += count;
                self.refused += count;
            }
        }
    }

    fn merge(&mut self, other: &UsageCounts) {
        self.tokens_issued += other.tokens_issued;
        self.direct_uses += other.direct_uses;
        self.sigv4_uses += other.sigv4_uses;
        self.token_uses += other.token_uses;
        self.refused += other.refused;
        for (reason, count) in &other.refusals {
            *self.refusals.entry(reason).or_default() += count;
        }
        self.peak_per_minute = self.peak_per_minute.max(other.peak_per_minute);
        for address in &other.addresses {
            if !self.addresses.contains(address) {
                self.addresses.push(address.clone());
            }
        }
    }
}

/// One bucket: the hour or day starting at `start` (Unix seconds, UTC).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UsageBucket {
    pub start: UnixTime,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// One key's share of a company's usage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct KeyUsageTotal {
    pub key_id: String,
    pub client_id: String,
    pub name: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// A usage report: buckets with any activity, oldest first, and totals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The key reported on; absent in a company's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The start of the first bucket (Unix seconds, rounded down).
    pub from: UnixTime,
    /// The end of the range (Unix seconds, exclusive).
    pub to: UnixTime,
    pub granularity: Granularity,
    /// The key's current rate for reports and webhooks; `null`: unlimited.
    /// Absent in a company's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<KeyRateLimit>)]
    pub rate_limit: Option<Option<KeyRateLimit>>,
    /// Buckets with any activity, oldest first; the others are all zero.
    pub buckets: Vec<UsageBucket>,
    pub total: UsageCounts,
    /// A company's report: each key's totals, busiest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyUsageTotal>>,
}

/// Builds the buckets and totals from stored rows.
fn report(rows: &[UsageRow], range: UsageRange) -> (Vec<UsageBucket>, UsageCounts) {
    let mut buckets: BTreeMap<i64, UsageCounts> = BTreeMap::new();
    for row in rows {
        let start = row.bucket;
        let counts = buckets.entry(start).or_default();
        match row.what.as_str() {
            "peak" => counts.peak_per_minute = counts.peak_per_minute.max(row.value as u64),
            "address" => {
                if let Some(address) = &row.address
                    && !counts.addresses.contains(address)
                {
                    counts.addresses.push(address.clone());
                }
            }
            outcome => counts.add(outcome, row.value.max(0) as u64),
        }
    }
    let mut total = UsageCounts::default();
    let buckets: Vec<UsageBucket> = buckets
        .into_iter()
        .filter(|(start, _)| *start >= range.from && *start < range.to)
        .map(|(start, counts)| {
            total.merge(&counts);
            UsageBucket { start, counts }
        })
        .collect();
    (buckets, total)
}

/// A key's usage, for whoever may manage the key: another company's key
/// does not exist for them (404), a colleague's is forbidden to a member.
pub async fn key_usage(
    service: &Service,
    principal: &Principal,
    key: &str,
    range: UsageRange,
) -> Result<UsageReport> {
    let key = super::keys::find_key(service, principal, key).await?;
    let rows = service
        .store
        .key_usage_rows(
            &UsageScope::Key(&key.id),
            None,
            range.from,
            range.to,
            range.granularity.seconds(),
        )
        .await?;
    let (buckets, total) = report(&rows, range);
    Ok(UsageReport {
        key_id: Some(key.id.clone()),
        from: range.from,
        to: range.to,
        granularity: range.granularity,
        rate_limit: Some(key.rate_limit),
        buckets,
        total,
        keys: None,
    })
}

/// The usage of every key `principal` may manage: an admin's whole
/// company, a member's own keys; the operator's, every company's.
pub async fn company_usage(
    service: &Service,
    principal: &Principal,
    range: UsageRange,
) -> Result<UsageReport> {
    let rows = visible_rows(service, principal, range, None).await?;
    let (buckets, total) = report(&rows, range);
    let mut per_key: BTreeMap<&str, (&UsageRow, Vec<UsageRow>)> = BTreeMap::new();
    for row in &rows {
        per_key
            .entry(row.key_id.as_str())
            .or_insert_with(|| (row, Vec::new()))
            .1
            .push(row.clone());
    }
    let mut keys: Vec<KeyUsageTotal> = per_key
        .into_values()
        .map(|(first, rows)| KeyUsageTotal {
            key_id: first.key_id.clone(),
            client_id: first.client_id.clone(),
            name: first.name.clone(),
            counts: report(&rows, range).1,
        })
        .collect();
    keys.sort_by(|a, b| {
        volume(&b.counts)
            .cmp(&volume(&a.counts))
            .then(a.name.cmp(&b.name))
    });
    Ok(UsageReport {
        key_id: None,
        from: range.from,
        to: range.to,
        granularity: range.granularity,
        rate_limit: None,
        buckets,
        total,
        keys: Some(keys),
    })
}

/// The stored usage of every key `principal` may manage (see
/// [`company_usage`] for whose that is).
async fn visible_rows(
    service: &Service,
    principal: &Principal,
    range: UsageRange,
    only: Option<&[&str]>,
) -> Result<Vec<UsageRow>> {
    let principal = authz::require(service, principal, KEYS_MANAGE).await?;
    let scope = match &principal.user {
        Some(user) => match authz::visible_owner(user.into()) {
            Some(owner) => UsageScope::Owner(&user.tenant_id, owner),
            None => UsageScope::Tenant(&user.tenant_id),
        },
        None => UsageScope::All,
    };
    Ok(service
        .store
        .key_usage_rows(
            &scope,
            only,
            range.from,
            range.to,
            range.granularity.seconds(),
        )
        .await?)
}

/// One key's usage bucket by bucket (buckets with activity only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySeries {
    pub buckets: Vec<UsageBucket>,
    pub total: UsageCounts,
}

/// The usage of every key `principal` may manage (of those among `only`,
/// by id, when given), per key and bucket, by key id: the
/// console's sparklines and overview. Keys without activity are absent.
pub async fn usage_by_key(
    service: &Service,
    principal: &Principal,
    range: UsageRange,
    only: Option<&[&str]>,
) -> Result<BTreeMap<String, KeySeries>> {
    let rows = visible_rows(service, principal, range, only).await?;
    let mut per_key: BTreeMap<String, Vec<UsageRow>> = BTreeMap::new();
    for row in rows {
        per_key.entry(row.key_id.clone()).or_default().push(row);
    }
    Ok(per_key
        .into_iter()
        .map(|(key_id, rows)| {
            let (buckets, total) = report(&rows, range);
            (key_id, KeySeries { buckets, total })
        })
        .collect())
}

/// Every counted request: uses and refusals.
pub fn volume(counts: &UsageCounts) -> u64 {
    counts.tokens_issued
        + counts.direct_uses
        + counts.sigv4_uses
        + counts.token_uses
        + counts.refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_hour_with_the_busiest_minute_and_the_first_addresses() {
        let counter = UsageCounter::new(true);
        let hour: i64 = 500_001 * 3600;
        for i in 0..3 {
            counter.count("kp_a", Outcome::TokenIssued, hour + i, None);
        }
        counter.count(
            "kp_a",
            Outcome::Refused(Refusal::WrongSecret),
            hour + 61,
            None,
        );
        for n in 0..(ADDRESSES_PER_HOUR as u8 + 5) {
            let address = IpAddr::from([10, 0, 0, n]);
            counter.count("kp_a", Outcome::DirectUse, hour + 120, Some(address));
        }
        let batch = counter.take(hour);
        let stored: BTreeMap<String, i64> = batch
            .counts
            .iter()
            .map(|c| (c.outcome.clone(), c.count))
            .collect();
        assert_eq!(stored["tokens_issued"], 3);
        assert_eq!(stored["refused:wrong_secret"], 1);
        assert_eq!(stored["direct_uses"], ADDRESSES_PER_HOUR as i64 + 5);
        assert_eq!(batch.peaks[0].per_minute, ADDRESSES_PER_HOUR as i64 + 5);
        assert_eq!(batch.addresses.len(), ADDRESSES_PER_HOUR);
        // Taken once: the next flush has nothing new, and an address
        // already written is not written again.
        counter.count(
            "kp_a",
            Outcome::DirectUse,
            hour + 121,
            Some(IpAddr::from([10, 0, 0, 0])),
        );
        let again = counter.take(hour);
        assert_eq!(again.counts.len(), 1);
        assert_eq!(again.counts[0].count, 1);
        assert!(again.addresses.is_empty());
        // The minute carries on across flushes.
        assert_eq!(again.peaks[0].per_minute, ADDRESSES_PER_HOUR as i64 + 6);
    }

    #[test]
    fn a_past_hour_is_written_once_then_forgotten() {
        let counter = UsageCounter::new(true);
        counter.count("kp_a", Outcome::TokenIssued, 7200 + 5, None);
        assert_eq!(counter.take(10_800).counts.len(), 1);
        assert!(counter.take(10_800).is_empty());
        assert!(counter.shards.iter().all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn a_batch_that_could_not_be_written_is_written_next_time() {
        let counter = UsageCounter::new(true);
        counter.count(
            "kp_a",
            Outcome::Refused(Refusal::Dpop),
            3600,
            Some(IpAddr::from([1, 2, 3, 4])),
        );
        let batch = counter.take(3600);
        counter.restore(batch);
        let again = counter.take(3600);
        assert_eq!(again.counts[0].outcome, "refused:dpop");
        assert_eq!(again.counts[0].count, 1);
        assert_eq!(again.addresses[0].address, "1.2.3.4");
    }

    #[test]
    fn counting_off_counts_nothing() {
        let counter = UsageCounter::new(false);
        counter.count("kp_a", Outcome::TokenIssued, 3600, None);
        assert!(counter.take(0).is_empty());
    }

    #[test]
    fn every_outcome_has_its_own_slot() {
        for index in 0..Outcome::COUNT {
            assert_eq!(Outcome::from_index(index).index(), index);
            assert_eq!(stored_index(&Outcome::from_index(index).as_stored()), index);
        }
    }

    #[test]
    fn days_ending_now_end_with_the_current_hour() {
        // 2026-12-05 13:20:00 UTC.
        let at = 1_796_428_800 + 13 * HOUR + 20 * 60;
        let range = UsageRange::days_ending_now(at, 14);
        let next_hour = 1_796_428_800 + 14 * HOUR;
        assert_eq!(range.from, next_hour - 14 * DAY);
        assert_eq!(range.to, at);
        assert_eq!(range.granularity, Granularity::Day);
        // The last window starts 23 hours before the current hour.
        let last = range.from + 13 * DAY;
        assert_eq!(last, at - at % HOUR - 23 * HOUR);
        // On the hour, the current hour is the one just begun.
        let on_the_hour = UsageRange::days_ending_now(1_796_428_800, 1);
        assert_eq!(on_the_hour.from, 1_796_428_800 + HOUR - DAY);
    }

    #[test]
    fn ranges_are_checked_and_rounded_down_to_their_buckets() {
        let at = 1_800_000_000;
        let range = UsageRange::parse(None, None, None, at).unwrap();
        assert_eq!(range.to, at);
        assert_eq!(range.from, at - DAY - (at - DAY).rem_euclid(HOUR));
        let days = UsageRange::parse(Some(at - 10 * DAY), Some(at), Some("day"), at).unwrap();
        assert_eq!(days.from % DAY, 0);
        for (from, to, granularity) in [
            (Some(at), Some(at - 1), None),
            (Some(at - 32 * DAY), Some(at), Some("hour")),
            (Some(at - 401 * DAY), Some(at), Some("day")),
            (None, None, Some("minute")),
            (Some(-5), None, None),
        ] {
            assert!(
                UsageRange::parse(from, to, granularity, at).is_err(),
                "{from:?} {to:?} {granularity:?} was accepted"
            );
        }
    }
}
