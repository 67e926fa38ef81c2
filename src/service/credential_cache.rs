//! What client authentication read from the database, kept in memory, so a
//! token request (or a key presented on its own, or a SigV4-signed request)
//! whose key was read before does no database work at all.
//!
//! **What it holds**: per key, by client ID, what `authorise` decides apart
//! from expiry (revoked, disabled, owner disabled, or the key with its
//! scopes narrowed to its owner's permissions, its allow-list and its rate
//! with the company default), with its secret's digest; an index from secret
//! digest to client ID (for `x-api-key`); and client IDs the database did
//! not know. Expiry is checked against the clock on every hit, so an expired
//! key needs no announcement.
//!
//! **How it follows changes**: whatever changes a key, its owner or their
//! company announces it in the same transaction (triggers, migration 0009;
//! `storage::notify` hears them). The instance that made a change also
//! forgets at once, before answering ([`CredentialCache::forget`]). Every
//! forgetting bumps an epoch first; a value read from the database is kept
//! only if no forgetting happened between the start of its read and its
//! insertion (checked after inserting, so a forgetting racing the insertion
//! removes it either way).
//!
//! **When it is trusted**: only while the watcher has proved, within the
//! last [`lease`](CredentialCache::new) (1 s), that it has heard of
//! everything committed up to then. Until the first proof, after the
//! listening connection is lost, or when proofs stop coming (a connection
//! gone silent), every lookup reads the database, as if there were no cache;
//! `/readyz` and `keyport_credential_cache_trusted` say so. Coming back, the
//! watcher forgets everything first, since changes made meanwhile went
//! unheard.
//!
//! **Catching up (PostgreSQL)**: changes are also numbered in a log
//! (migration 0020), and notifications carry the number. A proof of being
//! up to date then also comes from one query, "every change after N"
//! ([`Store::credential_changes_since`]), read on a connection of its own
//! (never queued behind the pool's queries) by a task on the server's
//! runtime, one at a time: it forgets what the log lists and renews the
//! lease from the instant the query was sent. A background task runs it as
//! soon as the latest proof is older than [`RENEW_AFTER`] (a heartbeat and a
//! half: heartbeats are late), so the lease is renewed while most of it is
//! left. A lookup that still finds it lapsed waits for a catch-up sent less
//! than a lease before the lookup arrived (one query for every lookup
//! waiting, never one per request), at most [`CATCH_UP_WAIT`], and reads the
//! database after that. The promise is kept either way: an answer from
//! memory never rests on a proof more than a lease older than the request.
//! What a lookup cannot avoid is the database's own round trip: measured on
//! a 2-vCPU VM with PostgreSQL starved (two instances, two wrk processes and
//! builds), a round trip took 0.4 to 3.6 s on any connection, so no proof
//! younger than a second existed then and lookups waited (7 to 97 ms). After
//! the listening connection comes back, heartbeats renew the lease again
//! only once a catch-up begun after it has run (changes committed before
//! it were not notified), and nothing is forgotten wholesale unless the
//! changes after N were pruned. On SQLite (one instance) the watcher alone
//! is the proof, as before.
//!
//! **Unknown client IDs**: remembered in a small cache of their own
//! ([`UNKNOWN_CAPACITY`] entries), so an unknown client ID answers as fast as
//! a known one with a wrong secret and costs no database read the second
//! time. Its memory is bounded however many IDs an attacker makes up (the
//! cache evicts, and failures are throttled per address before any lookup),
//! and it cannot push real keys out: they live in the other cache. Unknown
//! digests are not remembered: a secret cannot be enumerated, and failing
//! ones are throttled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGauge, Opts};
use quick_cache::sync::Cache;

use super::clients::{AuthenticatedKey, ClientAuthError, authorise};
use crate::domain::{RegisteredCertificates, ScopeSet, SecretDigest, TlsClientSubject, UnixTime};
use crate::storage::{
    CHANGE_LOG_RETENTION, CREDENTIAL_HEARTBEAT, CredentialChange, KeyAuthRow, StorageError, Store,
    WatchEvent,
};

/// How often an instance prunes the credential change log.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How a key recognises its certificate (RFC 8705 §2): a subject under the
/// configured CAs (`tls_client_auth`), registered thumbprints
/// (`self_signed_tls_client_auth`), or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCertificates {
    pub subject: Option<TlsClientSubject>,
    pub registered: RegisteredCertificates,
}

impl KeyCertificates {
    fn from_stored(
        subject: Option<&str>,
        registered: Option<&str>,
    ) -> Result<Option<Self>, StorageError> {
        let subject = subject
            .map(TlsClientSubject::parse)
            .transpose()
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let registered =
            RegisteredCertificates::from_stored(registered).map_err(StorageError::Corrupt)?;
        Ok(
            (subject.is_some() || !registered.is_empty()).then_some(KeyCertificates {
                subject,
                registered,
            }),
        )
    }
}

/// Client IDs the database did not know, remembered at most.
pub const UNKNOWN_CAPACITY: usize = 10_000;

/// A key as client authentication needs it, decided once when read.
#[derive(Debug)]
pub struct CachedKey {
    digest: SecretDigest,
    /// RFC 8705: how the key's certificate is recognised, if it has one.
    certificates: Option<Box<KeyCertificates>>,
    expires_at: Option<UnixTime>,
    standing: Standing,
}

#[derive(Debug)]
enum Standing {
    /// The key as `authorise` answers it, except its scopes: kept as text
    /// and parsed on each use (a parsed set costs about 300 bytes a key,
    /// the parse a fraction of a microsecond).
    Live {
        key: AuthenticatedKey,
        scopes: Box<str>,
    },
    Refused {
        refusal: Refusal,
        owner_id: Box<str>,
        tenant_id: Box<str>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Revoked,
    Disabled,
    /// Only if `authorise` ever answers it at the beginning of time.
    Expired,
    OwnerDisabled,
}

impl Refusal {
    fn error(self) -> ClientAuthError {
        match self {
            Refusal::Revoked => ClientAuthError::Revoked,
            Refusal::Disabled => ClientAuthError::Disabled,
            Refusal::Expired => ClientAuthError::Expired,
            Refusal::OwnerDisabled => ClientAuthError::OwnerDisabled,
        }
    }
}

impl CachedKey {
    /// What `authorise` decides about `row`, except expiry: it is asked at
    /// the beginning of time, and [`CachedKey::check`] compares the expiry
    /// with the clock on every use. A row that cannot be read (a malformed
    /// digest, role or scope) is an error and is not kept.
    pub fn from_row(row: KeyAuthRow) -> Result<Self, StorageError> {
        let digest = SecretDigest::from_hex(&row.secret_digest).ok_or_else(|| {
            StorageError::Corrupt(format!("key {} has a malformed digest", row.id))
        })?;
        let expires_at = row.expires_at;
        let certificates = KeyCertificates::from_stored(
            row.tls_client_auth.as_deref(),
            row.tls_client_certificates.as_deref(),
        )?
        .map(Box::new);
        let (owner_id, tenant_id) = (row.owner_id.clone(), row.tenant_id.clone());
        let refused = |refusal| Standing::Refused {
            refusal,
            owner_id: owner_id.into_boxed_str(),
            tenant_id: tenant_id.into_boxed_str(),
        };
        let standing = match authorise(row, UnixTime::MIN) {
            Ok(mut key) => {
                let scopes = std::mem::take(&mut key.scopes).to_string().into_boxed_str();
                Standing::Live { key, scopes }
            }
            Err(ClientAuthError::Revoked) => refused(Refusal::Revoked),
            Err(ClientAuthError::Disabled) => refused(Refusal::Disabled),
            Err(ClientAuthError::Expired) => refused(Refusal::Expired),
            Err(ClientAuthError::OwnerDisabled) => refused(Refusal::OwnerDisabled),
            Err(ClientAuthError::Storage(err)) => return Err(err),
            Err(other) => {
                return Err(StorageError::Corrupt(format!(
                    "unexpected refusal of a stored key: {other}"
                )));
            }
        };
        Ok(CachedKey {
            digest,
            certificates,
            expires_at,
            standing,
        })
    }

    /// The stored digest of the key's secret.
    pub fn digest(&self) -> &SecretDigest {
        &self.digest
    }

    /// How the key recognises its certificate; `None`: it has none.
    pub fn certificates(&self) -> Option<&KeyCertificates> {
        self.certificates.as_deref()
    }

    fn owner_id(&self) -> &str {
        match &self.standing {
            Standing::Live { key, .. } => &key.owner_id,
            Standing::Refused { owner_id, .. } => owner_id,
        }
    }

    /// The company the key belongs to.
    pub fn tenant_id(&self) -> &str {
        match &self.standing {
            Standing::Live { key, .. } => &key.tenant_id,
            Standing::Refused { tenant_id, .. } => tenant_id,
        }
    }

    /// What `authorise(row, at)` answers: revoked before disabled before
    /// expired before the owner, as it orders them.
    pub fn check(&self, at: UnixTime) -> Result<AuthenticatedKey, ClientAuthError> {
        if let Standing::Refused {
            refusal: refusal @ (Refusal::Revoked | Refusal::Disabled),
            ..
        } = &self.standing
        {
            return Err(refusal.error());
        }
        if self.expires_at.is_some_and(|e| e <= at) {
            return Err(ClientAuthError::Expired);
        }
        match &self.standing {
            Standing::Live { key, scopes } => {
                let mut key = key.clone();
                key.scopes =
                    ScopeSet::parse(scopes).map_err(|e| StorageError::Corrupt(e.to_string()))?;
                Ok(key)
            }
            Standing::Refused { refusal, .. } => Err(refusal.error()),
        }
    }
}

/// The per-instance credential cache; cheap to clone (one shared cache).
#[derive(Clone)]
pub struct CredentialCache {
    /// `None`: turned off (`credential_cache_capacity = 0`).
    inner: Option<Arc<Inner>>,
    metrics: CacheMetrics,
}

struct Inner {
    /// By client ID.
    keys: Cache<Arc<str>, Arc<CachedKey>>,
    /// Secret digest to client ID (the same allocation as the key's); the
    /// key's entry is authoritative (its digest is compared), so a stale
    /// index entry only costs a read.
    digests: Cache<[u8; 32], Arc<str>>,
    /// Client IDs the database did not know.
    unknown: Cache<String, ()>,
    /// Bumped before every forgetting.
    epoch: AtomicU64,
    /// Milliseconds since `started` until which the cache may be used; 0
    /// (the start) until the watcher first proves itself.
    trusted_until: AtomicU64,
    started: Instant,
    lease: Duration,
    /// A watcher was started (see [`CredentialCache::watch`]).
    watching: std::sync::atomic::AtomicBool,
    /// Milliseconds since `started` of the latest proof, plus one (0: none).
    last_proof: AtomicU64,
    /// How long after the latest proof held keys still answer while the
    /// database is known to be down.
    serve_stale: Duration,
    /// The change log, when the database keeps one (PostgreSQL).
    feed: std::sync::OnceLock<Feed>,
}

/// Following the change log (see "Catching up" above).
struct Feed {
    store: Store,
    state: std::sync::Mutex<FeedState>,
    /// Where catch-ups run: the runtime that started following the log
    /// (not a request's), so a catch-up outlives the lookups waiting for
    /// it and never waits behind their work.
    runtime: tokio::runtime::Handle,
    /// Whether a catch-up runs, and whether another is wanted after it.
    runner: std::sync::Mutex<Runner>,
    /// Woken whenever a catch-up ends (renewed the lease or failed).
    finished: tokio::sync::Notify,
    /// Milliseconds since `started` before which no catch-up is tried after
    /// one failed: lookups read the database meanwhile.
    retry_after: AtomicU64,
    /// The last catch-up failed (its warning was logged).
    failing: std::sync::atomic::AtomicBool,
    /// The last catch-up failed because the database could not be reached:
    /// as good as the breaker's word that it is down, and sooner (the
    /// probe runs every 100 ms; lookups in between would otherwise read the
    /// database that just went away, and fail).
    unreachable: std::sync::atomic::AtomicBool,
}

/// What a caller of [`CredentialCache::request_catch_up`] needs of the
/// catch-up when one is already running.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Any: the lease is renewed early, the running one does that.
    Renewal,
    /// One whose read was sent less than a lease before this instant (a
    /// lookup's arrival).
    Covering(Instant),
    /// One begun after now (the watcher listens again: changes committed
    /// before were not notified).
    BegunAfterNow,
}

/// The one catch-up at a time.
#[derive(Debug, Default)]
struct Runner {
    running: bool,
    /// Milliseconds since `started` when the running catch-up sent its
    /// read (`None`: not yet sent, so it will cover whoever waits now).
    sent: Option<u64>,
    /// Run another once this one ends: its read was sent too early for a
    /// lookup that waits (or before the watcher listened again).
    again: bool,
}

#[derive(Debug, Default)]
struct FeedState {
    /// Every change numbered up to this has been forgotten (applied).
    applied: Option<i64>,
    /// The watcher is listening.
    listening: bool,
    /// Notifications since the last catch-up are known to be complete, so
    /// heartbeats may renew the lease.
    stream_complete: bool,
    /// Bumped whenever the stream may have missed something (connection
    /// lost or opened, a number skipped): a catch-up that began before does
    /// not prove the stream complete.
    generation: u64,
}

/// How long lookups read the database after a failed catch-up before one
/// is tried again.
const CATCH_UP_RETRY: Duration = Duration::from_millis(100);

/// How often the background task checks whether the lease needs renewing.
const RENEW_CHECK: Duration = Duration::from_millis(50);

/// How old the latest proof may get before the background task catches up
/// instead of waiting for the next heartbeat: one heartbeat interval and a
/// half, so the catch-up has most of the lease (about 600 ms of 1 s) to
/// finish before lookups would have to wait for it.
#[allow(clippy::cast_possible_truncation)] // 375
const RENEW_AFTER: Duration =
    Duration::from_millis(CREDENTIAL_HEARTBEAT.as_millis() as u64 * 3 / 2);

/// How long a lookup waits for a catch-up that covers it (one sent less
/// than a lease before the lookup arrived) before it reads the database
/// instead. A read from the database is always right, so this bounds a
/// lookup's wait without weakening anything; it is what a lookup pays
/// when the catch-up is slower than this (a hung connection is given up
/// after 5 s).
pub const CATCH_UP_WAIT: Duration = Duration::from_millis(500);

impl Inner {
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    fn is_trusted(&self) -> bool {
        self.trusted_at(Instant::now())
    }

    /// Whether every change committed more than a lease before `at` has
    /// been forgotten: a lookup that arrived at `at` may use the cache.
    fn trusted_at(&self, at: Instant) -> bool {
        self.millis(at) < self.trusted_until.load(Ordering::SeqCst)
    }

    /// Trusts the cache for a lease from `proof`, an instant before which
    /// every committed change has been forgotten.
    fn renew(&self, proof: Instant) {
        self.last_proof
            .fetch_max(self.millis(proof).saturating_add(1), Ordering::SeqCst);
        let until = self
            .millis(proof)
            .saturating_add(u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX));
        self.trusted_until.fetch_max(until, Ordering::SeqCst);
    }

    /// Whether the latest proof is recent enough to answer for held keys
    /// while the database is down.
    fn may_serve_stale(&self) -> bool {
        let proof = self.last_proof.load(Ordering::SeqCst);
        let stale = u64::try_from(self.serve_stale.as_millis()).unwrap_or(u64::MAX);
        proof > 0 && self.millis(Instant::now()).saturating_sub(proof - 1) <= stale
    }

    /// Milliseconds of trust left.
    fn trust_left(&self) -> u64 {
        self.trusted_until
            .load(Ordering::SeqCst)
            .saturating_sub(self.millis(Instant::now()))
    }

    fn forget(&self, change: &CredentialChange) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        match change {
            CredentialChange::Key(client_id) => {
                self.keys.remove(client_id.as_str());
                self.unknown.remove(client_id.as_str());
            }
            CredentialChange::Owner(owner_id) => {
                self.keys.retain(|_, key| key.owner_id() != owner_id);
            }
            CredentialChange::Tenant(tenant_id) => {
                self.keys.retain(|_, key| key.tenant_id() != tenant_id);
            }
            CredentialChange::Everything => {
                self.keys.clear();
                self.digests.clear();
                self.unknown.clear();
            }
        }
    }

    /// Keeps `key`, read when the epoch was `epoch`, unless something was
    /// forgotten since (or trust was lost): then it is removed again.
    fn remember(&self, epoch: u64, client_id: &str, key: &Arc<CachedKey>) {
        let client_id_shared: Arc<str> = Arc::from(client_id);
        self.keys
            .insert(Arc::clone(&client_id_shared), Arc::clone(key));
        self.digests
            .insert(*key.digest.as_bytes(), client_id_shared);
        if self.epoch.load(Ordering::SeqCst) != epoch || !self.is_trusted() {
            self.keys.remove(client_id);
        }
    }

    fn remember_unknown(&self, epoch: u64, client_id: &str) {
        self.unknown.insert(client_id.to_owned(), ());
        if self.epoch.load(Ordering::SeqCst) != epoch || !self.is_trusted() {
            self.unknown.remove(client_id);
        }
    }
}

impl CredentialCache {
    /// A cache of up to `capacity` keys (0 turns it off), trusted for
    /// `lease` after each proof that the watcher is up to date. It starts
    /// untrusted: a process that never watches (the CLI) always reads the
    /// database.
    pub fn new(capacity: usize, lease: Duration) -> Self {
        let inner = (capacity > 0).then(|| {
            Arc::new(Inner {
                keys: Cache::new(capacity),
                digests: Cache::new(capacity),
                unknown: Cache::new(UNKNOWN_CAPACITY.min(capacity)),
                epoch: AtomicU64::new(0),
                trusted_until: AtomicU64::new(0),
                started: Instant::now(),
                lease,
                watching: std::sync::atomic::AtomicBool::new(false),
                last_proof: AtomicU64::new(0),
                serve_stale: Duration::ZERO,
                feed: std::sync::OnceLock::new(),
            })
        });
        CredentialCache {
            inner,
            metrics: CacheMetrics::new(),
        }
    }

    /// Lets held keys answer for `serve_stale` after the latest proof
    /// while the database is known to be down (PostgreSQL; see
    /// `storage::breaker`). Zero (the default) never does.
    pub fn serving_stale_for(mut self, serve_stale: Duration) -> Self {
        if let Some(inner) = self.inner.as_mut().and_then(Arc::get_mut) {
            inner.serve_stale = serve_stale;
        }
        self
    }

    /// What `/readyz` says of the cache.
    pub fn state(&self) -> CacheState {
        match self.inner.as_deref() {
            Some(inner) if inner.watching.load(Ordering::SeqCst) => {
                if inner.is_trusted() {
                    CacheState::Trusted
                } else {
                    CacheState::Bypassed
                }
            }
            _ => CacheState::Off,
        }
    }

    /// Whether lookups are answered from memory now.
    pub fn is_trusted(&self) -> bool {
        self.inner.as_deref().is_some_and(Inner::is_trusted)
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.inner.as_deref().map_or(0, |inner| inner.keys.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache to use for this lookup, if it may be used: when the lease
    /// lapsed and the database keeps a change log, after catching up.
    async fn usable(&self) -> Option<&Inner> {
        let inner = self.inner.as_deref();
        match inner {
            Some(inner) if inner.is_trusted() => return Some(inner),
            Some(inner) if let Some(feed) = inner.feed.get() => {
                if self.wait_for_catch_up(inner, feed, Instant::now()).await {
                    return Some(inner);
                }
                // The database is down: nothing can be revoked meanwhile, so
                // what was held when it went down is still right, bar what
                // the watcher had not yet heard then (within a lease).
                let down = feed.store.database_down() || feed.unreachable.load(Ordering::SeqCst);
                if down && inner.may_serve_stale() {
                    self.metrics.stale.inc();
                    return Some(inner);
                }
            }
            _ => {}
        }
        self.metrics.bypass.inc();
        None
    }

    /// For a lookup that `arrived` while the lease was lapsed: waits (at
    /// most [`CATCH_UP_WAIT`]) for a catch-up whose read was sent less than
    /// a lease before the lookup arrived, starting one if none runs (or if
    /// the one running was sent too early). One read serves every lookup
    /// waiting. False: read the database instead (the catch-up failed, or
    /// took too long).
    async fn wait_for_catch_up(&self, inner: &Inner, feed: &Feed, arrived: Instant) -> bool {
        let deadline = tokio::time::Instant::from_std(arrived + CATCH_UP_WAIT);
        loop {
            let finished = feed.finished.notified();
            tokio::pin!(finished);
            // Registered before checking: a catch-up ending in between wakes it.
            finished.as_mut().enable();
            if inner.trusted_at(arrived) {
                return true;
            }
            if inner.millis(Instant::now()) < feed.retry_after.load(Ordering::SeqCst) {
                return false;
            }
            self.request_catch_up(inner, feed, Want::Covering(arrived));
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return false;
            }
        }
    }

    /// Starts a catch-up on the feed's runtime unless one runs; if one
    /// runs, whether another follows it is as `want` says.
    fn request_catch_up(&self, inner: &Inner, feed: &Feed, want: Want) {
        {
            let mut runner = feed.runner.lock().unwrap_or_else(|e| e.into_inner());
            if runner.running {
                let lease = u64::try_from(inner.lease.as_millis()).unwrap_or(u64::MAX);
                runner.again |= match want {
                    Want::Renewal => false,
                    Want::Covering(at) => runner
                        .sent
                        .is_some_and(|sent| inner.millis(at) >= sent.saturating_add(lease)),
                    Want::BegunAfterNow => true,
                };
                return;
            }
            runner.running = true;
            runner.sent = None;
        }
        let cache = self.clone();
        feed.runtime.spawn(async move {
            let Some(inner) = cache.inner.as_deref() else {
                return;
            };
            let Some(feed) = inner.feed.get() else {
                return;
            };
            loop {
                cache.catch_up(inner, feed).await;
                let again = {
                    let mut runner = feed.runner.lock().unwrap_or_else(|e| e.into_inner());
                    runner.sent = None;
                    runner.running = std::mem::take(&mut runner.again);
                    runner.running
                };
                feed.finished.notify_waiters();
                if !again {
                    return;
                }
            }
        });
    }

    /// Asks the change log for every change after the last one applied,
    /// forgets them and renews the lease from the instant the read was
    /// sent. Runs only from [`CredentialCache::request_catch_up`]'s task,
    /// one at a time. True when it renewed the lease.
    async fn catch_up(&self, inner: &Inner, feed: &Feed) -> bool {
        let (after, generation) = {
            let state = feed.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.applied, state.generation)
        };
        let sent = Instant::now();
        feed.runner.lock().unwrap_or_else(|e| e.into_inner()).sent = Some(inner.millis(sent));
        let answer = feed.store.credential_changes_since(after).await;
        if sent.elapsed() > inner.lease / 2 {
            // Heartbeats are then late too: the database answers slowly.
            log::debug!(
                "reading the credential change log took {:?}",
                sent.elapsed()
            );
        }
        let since = match answer {
            Ok(since) => since,
            Err(err) => {
                self.metrics.catch_up_failed.inc();
                feed.unreachable
                    .store(err.is_unreachable(), Ordering::SeqCst);
                let retry = inner
                    .millis(Instant::now())
                    .saturating_add(u64::try_from(CATCH_UP_RETRY.as_millis()).unwrap_or(u64::MAX));
                feed.retry_after.store(retry, Ordering::SeqCst);
                // Once per failing stretch: it is retried ten times a second.
                if !feed.failing.swap(true, Ordering::SeqCst) {
                    log::warn!(
                        "cannot read the credential change log (lookups read the database until \
                         it is read): {}",
                        crate::telemetry::error_chain(&err)
                    );
                }
                return false;
            }
        };
        self.metrics.catch_up_ok.inc();
        feed.unreachable.store(false, Ordering::SeqCst);
        if feed.failing.swap(false, Ordering::SeqCst) {
            log::info!("reading the credential change log again");
        }
        match &since.changes {
            Some(changes) => {
                for change in changes {
                    inner.forget(change);
                }
            }
            None => inner.forget(&CredentialChange::Everything),
        }
        {
            let mut state = feed.state.lock().unwrap_or_else(|e| e.into_inner());
            state.applied = Some(state.applied.map_or(since.latest, |a| a.max(since.latest)));
            if state.generation == generation && state.listening {
                state.stream_complete = true;
            }
        }
        inner.renew(sent);
        true
    }

    /// The key behind `client_id`, from memory or else the database;
    /// `None` when the database knows no such client ID.
    pub async fn key_by_client_id(
        &self,
        store: &Store,
        client_id: &str,
    ) -> Result<Option<Arc<CachedKey>>, StorageError> {
        let Some(inner) = self.usable().await else {
            return read(store.find_key_for_auth(client_id).await?);
        };
        if let Some(key) = inner.keys.get(client_id) {
            self.metrics.hit.inc();
            return Ok(Some(key));
        }
        if inner.unknown.get(client_id).is_some() {
            self.metrics.hit.inc();
            return Ok(None);
        }
        self.metrics.miss.inc();
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let key = read(store.find_key_for_auth(client_id).await?)?;
        match &key {
            Some(key) => inner.remember(epoch, client_id, key),
            None => inner.remember_unknown(epoch, client_id),
        }
        Ok(key)
    }

    /// The key whose secret has `digest`, from memory or else the database.
    pub async fn key_by_digest(
        &self,
        store: &Store,
        digest: &SecretDigest,
    ) -> Result<Option<Arc<CachedKey>>, StorageError> {
        let Some(inner) = self.usable().await else {
            return read(store.find_key_for_auth_by_digest(&digest.to_hex()).await?);
        };
        if let Some(client_id) = inner.digests.get(digest.as_bytes())
            && let Some(key) = inner.keys.get(&*client_id)
            && key.digest.matches(digest)
        {
            self.metrics.hit.inc();
            return Ok(Some(key));
        }
        self.metrics.miss.inc();
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let row = store.find_key_for_auth_by_digest(&digest.to_hex()).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let client_id = row.client_id.clone();
        let key = Arc::new(CachedKey::from_row(row)?);
        inner.remember(epoch, &client_id, &key);
        Ok(Some(key))
    }

    /// Forgets what `change` touches, at once: called by the instance that
    /// made the change, after its transaction, before it answers.
    pub fn forget(&self, change: &CredentialChange) {
        if let Some(inner) = self.inner.as_deref() {
            inner.forget(change);
        }
    }

    /// Forgets one key (by client ID).
    pub fn forget_key(&self, client_id: &str) {
        self.forget(&CredentialChange::Key(client_id.to_owned()));
    }

    /// Forgets every key of an owner.
    pub fn forget_owner(&self, owner_id: &str) {
        self.forget(&CredentialChange::Owner(owner_id.to_owned()));
    }

    /// Forgets every key of a company.
    pub fn forget_tenant(&self, tenant_id: &str) {
        self.forget(&CredentialChange::Tenant(tenant_id.to_owned()));
    }

    /// What the watcher reports (see `storage::notify`).
    pub fn on_watch_event(&self, event: WatchEvent) {
        let Some(inner) = self.inner.as_deref() else {
            return;
        };
        if let Some(feed) = inner.feed.get() {
            self.on_feed_event(inner, feed, event);
            return;
        }
        match event {
            WatchEvent::Listening => inner.forget(&CredentialChange::Everything),
            WatchEvent::Changed(change) | WatchEvent::Logged(_, change) => inner.forget(&change),
            WatchEvent::UpToDate(at) => inner.renew(at),
            WatchEvent::Lost => {
                inner.trusted_until.store(0, Ordering::SeqCst);
                inner.forget(&CredentialChange::Everything);
            }
        }
    }

    /// The watcher's reports when the database keeps a change log: nothing
    /// is forgotten wholesale; what may have been missed is caught up.
    fn on_feed_event(&self, inner: &Inner, feed: &Feed, event: WatchEvent) {
        let mut state = feed.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            WatchEvent::Listening => {
                state.listening = true;
                state.stream_complete = false;
                state.generation += 1;
                drop(state);
                // Changes committed while nobody listened were not notified:
                // read them from the log, now that later ones will be (after
                // the one running, if any: it may have been sent before).
                self.request_catch_up(inner, feed, Want::BegunAfterNow);
            }
            WatchEvent::Logged(seq, change) => {
                inner.forget(&change);
                match state.applied {
                    Some(applied) if seq == applied + 1 => state.applied = Some(seq),
                    Some(applied) if seq <= applied => {}
                    // Before the first catch-up: it will say where we are.
                    None => {}
                    Some(_) => {
                        // A number skipped: something was missed.
                        state.stream_complete = false;
                        state.generation += 1;
                        inner.trusted_until.store(0, Ordering::SeqCst);
                    }
                }
            }
            WatchEvent::Changed(change) => inner.forget(&change),
            WatchEvent::UpToDate(at) => {
                if state.stream_complete {
                    inner.renew(at);
                }
            }
            WatchEvent::Lost => {
                state.listening = false;
                state.stream_complete = false;
                state.generation += 1;
                // The next lookup catches up before trusting again.
                inner.trusted_until.store(0, Ordering::SeqCst);
            }
        }
    }

    /// Starts the watcher for `store`'s database, feeding this cache until
    /// `alive` is gone. False when there is nothing to watch (SQLite in
    /// memory) or the cache is off: every lookup then reads the database.
    pub fn watch(&self, store: &Store, sqlite_poll: Duration, alive: std::sync::Weak<()>) -> bool {
        let Some(inner) = self.inner.as_deref() else {
            return false;
        };
        self.follow_change_log(store, alive.clone());
        let cache = self.clone();
        let watching = store.watch_credentials(
            sqlite_poll,
            alive,
            Arc::new(move |event| cache.on_watch_event(event)),
        );
        inner.watching.store(watching, Ordering::SeqCst);
        watching
    }

    /// When `store` keeps a change log (PostgreSQL): lets lookups catch up
    /// from it when the lease lapsed, and starts the task that catches up
    /// before it lapses and prunes the log, until `alive` is gone. Called
    /// by [`CredentialCache::watch`] before the watcher starts; false when
    /// there is no log (or no cache).
    pub fn follow_change_log(&self, store: &Store, alive: std::sync::Weak<()>) -> bool {
        let Some(inner) = self.inner.as_deref() else {
            return false;
        };
        // Catch-ups and the renewing task run on this runtime.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if !store.has_change_log() {
            return false;
        }
        let fresh = inner
            .feed
            .set(Feed {
                store: store.clone(),
                state: std::sync::Mutex::default(),
                runtime,
                runner: std::sync::Mutex::default(),
                finished: tokio::sync::Notify::new(),
                retry_after: AtomicU64::new(0),
                failing: std::sync::atomic::AtomicBool::new(false),
                unreachable: std::sync::atomic::AtomicBool::new(false),
            })
            .is_ok();
        if fresh {
            self.spawn_feed_tasks(alive);
        }
        true
    }

    /// Reads of the change log so far: (renewed the lease, failed).
    pub fn catch_ups(&self) -> (u64, u64) {
        (
            self.metrics.catch_up_ok.get(),
            self.metrics.catch_up_failed.get(),
        )
    }

    /// Lookups that read the database because the cache could not be
    /// trusted (nor caught up).
    pub fn bypasses(&self) -> u64 {
        self.metrics.bypass.get()
    }

    /// With a change log: catches up before the lease lapses when
    /// heartbeats stop renewing it (so lookups do not wait for it), and
    /// prunes the log every minute.
    fn spawn_feed_tasks(&self, alive: std::sync::Weak<()>) {
        let cache = self.clone();
        let renewing = alive.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RENEW_CHECK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if renewing.upgrade().is_none() {
                    return;
                }
                let Some(inner) = cache.inner.as_deref() else {
                    return;
                };
                let Some(feed) = inner.feed.get() else {
                    return;
                };
                // The latest proof is older than a heartbeat and a half:
                // heartbeats are late (or the connection is lost). Catch up
                // now, while most of the lease is left, rather than let
                // lookups wait for it once it lapsed.
                let lease = u64::try_from(inner.lease.as_millis()).unwrap_or(u64::MAX);
                let renew_after =
                    u64::try_from(RENEW_AFTER.min(inner.lease / 2).as_millis()).unwrap_or(u64::MAX);
                let now = inner.millis(Instant::now());
                if inner.trust_left() < lease.saturating_sub(renew_after)
                    && now >= feed.retry_after.load(Ordering::SeqCst)
                {
                    cache.request_catch_up(inner, feed, Want::Renewal);
                }
            }
        });
        let cache = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PRUNE_EVERY);
            loop {
                ticker.tick().await;
                if alive.upgrade().is_none() {
                    return;
                }
                let Some(feed) = cache.inner.as_deref().and_then(|inner| inner.feed.get()) else {
                    return;
                };
                let retention = i64::try_from(CHANGE_LOG_RETENTION.as_secs()).unwrap_or(i64::MAX);
                if let Err(err) = feed
                    .store
                    .prune_credential_change_log(crate::domain::now().saturating_sub(retention))
                    .await
                {
                    log::warn!(
                        "cannot prune the credential change log: {}",
                        crate::telemetry::error_chain(&err)
                    );
                }
            }
        });
    }

    /// The series this cache keeps, for `/metrics`.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(CacheCollector {
            cache: self.clone(),
        })
    }
}

/// Whether lookups are answered from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// Every change is heard: lookups of keys read before do no database work.
    Trusted,
    /// The watcher is not (yet, or any more) proven to hear every change:
    /// every lookup reads the database.
    Bypassed,
    /// No cache (capacity 0, or a SQLite database in memory): every lookup
    /// reads the database.
    Off,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Trusted => "trusted",
            CacheState::Bypassed => "bypassed",
            CacheState::Off => "off",
        }
    }
}

fn read(row: Option<KeyAuthRow>) -> Result<Option<Arc<CachedKey>>, StorageError> {
    row.map(|row| CachedKey::from_row(row).map(Arc::new))
        .transpose()
}

#[derive(Clone)]
struct CacheMetrics {
    lookups: IntCounterVec,
    hit: prometheus::IntCounter,
    /// Answered from memory while the database is down.
    stale: prometheus::IntCounter,
    miss: prometheus::IntCounter,
    bypass: prometheus::IntCounter,
    trusted: IntGauge,
    entries: IntGauge,
    catch_ups: IntCounterVec,
    catch_up_ok: prometheus::IntCounter,
    catch_up_failed: prometheus::IntCounter,
}

impl CacheMetrics {
    fn new() -> Self {
        // The names and labels are constants: these cannot fail.
        let lookups = IntCounterVec::new(
            Opts::new(
                "keyport_credential_cache_lookups_total",
                "Client authentication lookups: answered from memory (hit), answered from \
                 memory while the database is down (stale), read from the database and kept \
                 (miss), or read from the database because the cache is not trusted (bypass)",
            ),
            &["result"],
        )
        .expect("a valid counter");
        let trusted = IntGauge::new(
            "keyport_credential_cache_trusted",
            "1 while this instance hears every credential change and answers from memory; \
             0 while it reads the database for every lookup",
        )
        .expect("a valid gauge");
        let entries = IntGauge::new(
            "keyport_credential_cache_entries",
            "Keys held in the credential cache",
        )
        .expect("a valid gauge");
        let catch_ups = IntCounterVec::new(
            Opts::new(
                "keyport_credential_cache_catch_ups_total",
                "Reads of the credential change log (PostgreSQL) that renewed the cache's \
                 lease (ok) or could not (failed): one per lapse of the lease, not per request",
            ),
            &["result"],
        )
        .expect("a valid counter");
        CacheMetrics {
            catch_up_ok: catch_ups.with_label_values(&["ok"]),
            catch_up_failed: catch_ups.with_label_values(&["failed"]),
            catch_ups,
            hit: lookups.with_label_values(&["hit"]),
            stale: lookups.with_label_values(&["stale"]),
            miss: lookups.with_label_values(&["miss"]),
            bypass: lookups.with_label_values(&["bypass"]),
            lookups,
            trusted,
            entries,
        }
    }
}

/// Reads the gauges when `/metrics` is served.
struct CacheCollector {
    cache: CredentialCache,
}

impl Collector for CacheCollector {
    fn desc(&self) -> Vec<&Desc> {
        let metrics = &self.cache.metrics;
        let mut descs = metrics.lookups.desc();
        descs.extend(metrics.trusted.desc());
        descs.extend(metrics.entries.desc());
        descs.extend(metrics.catch_ups.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let metrics = &self.cache.metrics;
        metrics.trusted.set(i64::from(self.cache.is_trusted()));
        metrics
            .entries
            .set(i64::try_from(self.cache.len()).unwrap_or(i64::MAX));
        let mut families = metrics.lookups.collect();
        families.extend(metrics.trusted.collect());
        families.extend(metrics.entries.collect());
        families.extend(metrics.catch_ups.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientSecret;

    fn row(client_id: &str, owner: &str, tenant: &str, secret: &ClientSecret) -> KeyAuthRow {
        KeyAuthRow {
            id: format!("id-{client_id}"),
            tenant_id: tenant.to_owned(),
            owner_id: owner.to_owned(),
            client_id: client_id.to_owned(),
            secret_digest: secret.digest().to_hex(),
            scopes: None,
            token_ttl_seconds: None,
            expires_at: None,
            revoked_at: None,
            owner_role: "member".to_owned(),
            owner_permissions: "reports:read".to_owned(),
            owner_status: "active".to_owned(),
            disabled_at: None,
            allowed_sources: None,
            rate_limit_requests: None,
            rate_limit_per_seconds: None,
            rate_limit_burst: None,
            default_rate_limit_requests: None,
            default_rate_limit_per_seconds: None,
            default_rate_limit_burst: None,
            require_dpop: 0,
            tls_client_auth: None,
            tls_client_certificates: None,
        }
    }

    fn trusted_cache() -> (CredentialCache, Arc<Inner>) {
        let cache = CredentialCache::new(100, Duration::from_secs(60));
        cache.on_watch_event(WatchEvent::Listening);
        cache.on_watch_event(WatchEvent::UpToDate(Instant::now()));
        let inner = Arc::clone(cache.inner.as_ref().expect("on"));
        (cache, inner)
    }

    /// Each refusal, and expiry against the clock, answers what `authorise`
    /// answers for the same row at the same time.
    #[test]
    fn a_cached_key_answers_what_authorise_answers() {
        let secret = ClientSecret::generate();
        let base = row("kpc_a", "u1", "t1", &secret);
        let mut cases = Vec::new();
        for (revoked, disabled, expires, owner) in [
            (None, None, None, "active"),
            (Some(5), None, None, "active"),
            (None, Some(5), Some(50), "active"),
            (Some(5), Some(5), Some(50), "disabled"),
            (None, None, Some(50), "active"),
            (None, None, Some(50), "disabled"),
            (None, None, Some(150), "disabled"),
            (None, None, None, "disabled"),
        ] {
            let mut r = base.clone();
            r.revoked_at = revoked;
            r.disabled_at = disabled;
            r.expires_at = expires;
            r.owner_status = owner.to_owned();
            cases.push(r);
        }
        for r in cases {
            let cached = CachedKey::from_row(r.clone()).expect("readable");
            for at in [0, 49, 50, 100, 200] {
                let direct = authorise(r.clone(), at).map(|k| k.scopes.to_string());
                let from_cache = cached.check(at).map(|k| k.scopes.to_string());
                assert_eq!(
                    format!("{from_cache:?}"),
                    format!("{direct:?}"),
                    "{r:?} at {at}"
                );
            }
        }
    }

    #[test]
    fn an_unreadable_row_is_an_error_not_a_cached_refusal() {
        let secret = ClientSecret::generate();
        let mut bad = row("kpc_a", "u1", "t1", &secret);
        bad.secret_digest = "zz".to_owned();
        assert!(CachedKey::from_row(bad).is_err());
        let mut bad = row("kpc_a", "u1", "t1", &secret);
        bad.owner_role = "emperor".to_owned();
        assert!(CachedKey::from_row(bad).is_err());
    }

    #[test]
    fn forgetting_a_key_an_owner_or_a_tenant_drops_exactly_theirs() {
        let (_cache, inner) = trusted_cache();
        let secret = ClientSecret::generate();
        for (client, owner, tenant) in [
            ("kpc_1", "u1", "t1"),
            ("kpc_2", "u1", "t1"),
            ("kpc_3", "u2", "t1"),
            ("kpc_4", "u3", "t2"),
        ] {
            let key = Arc::new(CachedKey::from_row(row(client, owner, tenant, &secret)).unwrap());
            inner.remember(inner.epoch.load(Ordering::SeqCst), client, &key);
        }
        inner.remember_unknown(inner.epoch.load(Ordering::SeqCst), "kpc_9");
        let held = |inner: &Inner| {
            let mut held: Vec<String> = ["kpc_1", "kpc_2", "kpc_3", "kpc_4"]
                .into_iter()
                .filter(|c| inner.keys.get(*c).is_some())
                .map(str::to_owned)
                .collect();
            held.sort();
            held
        };
        assert_eq!(held(&inner), ["kpc_1", "kpc_2", "kpc_3", "kpc_4"]);
        inner.forget(&CredentialChange::Owner("u1".to_owned()));
        assert_eq!(held(&inner), ["kpc_3", "kpc_4"]);
        inner.forget(&CredentialChange::Tenant("t2".to_owned()));
        assert_eq!(held(&inner), ["kpc_3"]);
        inner.forget(&CredentialChange::Key("kpc_9".to_owned()));
        assert!(inner.unknown.get("kpc_9").is_none());
        inner.forget(&CredentialChange::Key("kpc_3".to_owned()));
        assert!(held(&inner).is_empty());
    }

    /// A value read before a forgetting is not kept, whichever of the two
    /// lands in the cache first.
    #[test]
    fn a_read_that_raced_a_forgetting_is_not_kept() {
        let (_cache, inner) = trusted_cache();
        let secret = ClientSecret::generate();
        let key = Arc::new(CachedKey::from_row(row("kpc_1", "u1", "t1", &secret)).unwrap());
        let epoch = inner.epoch.load(Ordering::SeqCst);
        // The change lands while the read is under way...
        inner.forget(&CredentialChange::Key("kpc_1".to_owned()));
        // ...and the stale value arrives after it.
        inner.remember(epoch, "kpc_1", &key);
        assert!(inner.keys.get("kpc_1").is_none());
        inner.remember_unknown(epoch, "kpc_2");
        assert!(inner.unknown.get("kpc_2").is_none());
        // A read that started after it is kept.
        inner.remember(inner.epoch.load(Ordering::SeqCst), "kpc_1", &key);
        assert!(inner.keys.get("kpc_1").is_some());
    }

    #[test]
    fn trust_needs_a_recent_proof_and_ends_when_the_watcher_is_lost() {
        let cache = CredentialCache::new(100, Duration::from_millis(200));
        assert!(
            !cache.is_trusted(),
            "untrusted until the watcher proves itself"
        );
        cache.on_watch_event(WatchEvent::Listening);
        assert!(!cache.is_trusted(), "listening is not yet a proof");
        cache.on_watch_event(WatchEvent::UpToDate(Instant::now()));
        assert!(cache.is_trusted());
        let inner = Arc::clone(cache.inner.as_ref().unwrap());
        let secret = ClientSecret::generate();
        let key = Arc::new(CachedKey::from_row(row("kpc_1", "u1", "t1", &secret)).unwrap());
        inner.remember(inner.epoch.load(Ordering::SeqCst), "kpc_1", &key);
        cache.on_watch_event(WatchEvent::Lost);
        assert!(!cache.is_trusted());
        assert_eq!(cache.len(), 0, "nothing read before the loss is kept");
        cache.on_watch_event(WatchEvent::Listening);
        cache.on_watch_event(WatchEvent::UpToDate(Instant::now()));
        assert!(cache.is_trusted());
        // A proof older than the lease trusts nothing.
        let lapsed = CredentialCache::new(100, Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        lapsed.on_watch_event(WatchEvent::Listening);
        lapsed.on_watch_event(WatchEvent::UpToDate(
            Instant::now() - Duration::from_millis(220),
        ));
        assert!(!lapsed.is_trusted());
    }

    /// Made-up client IDs cannot grow memory past the unknown cache's
    /// bound, nor push out a key in use.
    #[test]
    fn unknown_client_ids_are_bounded_and_push_out_no_key() {
        let (_cache, inner) = trusted_cache();
        let secret = ClientSecret::generate();
        let key = Arc::new(CachedKey::from_row(row("kpc_real", "u1", "t1", &secret)).unwrap());
        inner.remember(inner.epoch.load(Ordering::SeqCst), "kpc_real", &key);
        for n in 0..50_000 {
            inner.remember_unknown(
                inner.epoch.load(Ordering::SeqCst),
                &format!("kpc_made_up_{n}"),
            );
        }
        assert!(
            inner.unknown.len() <= UNKNOWN_CAPACITY.min(100) + 16,
            "{}",
            inner.unknown.len()
        );
        assert!(inner.keys.get("kpc_real").is_some());
    }

    /// The memory of a full cache: 1,000,000 keys shaped like real ones
    /// (UUID ids, `kpc_` client IDs, a member's two scopes) plus a full
    /// unknown-ID cache, measured as the process's resident memory before and
    /// after. Not run by default (a few seconds, and it measures):
    /// `cargo test --release --lib full_cache_memory -- --ignored --nocapture`.
    #[test]
    #[ignore = "measures memory, checks nothing; run by hand in release: cargo test --release --lib full_cache_memory -- --ignored --nocapture"]
    fn full_cache_memory() {
        fn resident_bytes() -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
            let pages: u64 = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .expect("resident pages");
            pages * 4096
        }
        const KEYS: usize = 1_000_000;
        let before = resident_bytes();
        let cache = CredentialCache::new(KEYS, Duration::from_secs(3600));
        cache.on_watch_event(WatchEvent::Listening);
        cache.on_watch_event(WatchEvent::UpToDate(Instant::now()));
        let inner = Arc::clone(cache.inner.as_ref().expect("on"));
        let tenant = uuid::Uuid::now_v7().to_string();
        for n in 0..KEYS {
            let secret = ClientSecret::generate();
            let client_id = crate::domain::ClientId::generate().to_string();
            let mut stored = row(
                &client_id,
                &uuid::Uuid::now_v7().to_string(),
                &tenant,
                &secret,
            );
            stored.id = uuid::Uuid::now_v7().to_string();
            stored.owner_permissions = "reports:read webhooks:write".to_owned();
            let key = Arc::new(CachedKey::from_row(stored).expect("readable"));
            inner.remember(inner.epoch.load(Ordering::SeqCst), &client_id, &key);
            if n < UNKNOWN_CAPACITY {
                let unknown = crate::domain::ClientId::generate().to_string();
                inner.remember_unknown(inner.epoch.load(Ordering::SeqCst), &unknown);
            }
        }
        let after = resident_bytes();
        let held = cache.len();
        let per_key = (after - before) as f64 / held as f64;
        eprintln!(
            "{held} keys held ({} digests, {} unknown IDs): resident memory +{:.1} MiB, {per_key:.0} bytes per key",
            inner.digests.len(),
            inner.unknown.len(),
            (after - before) as f64 / 1048576.0
        );
        assert!(held >= KEYS * 9 / 10, "{held}");
    }

    #[test]
    fn a_capacity_of_zero_turns_the_cache_off() {
        let cache = CredentialCache::new(0, Duration::from_secs(60));
        cache.on_watch_event(WatchEvent::Listening);
        cache.on_watch_event(WatchEvent::UpToDate(Instant::now()));
        assert!(!cache.is_trusted());
    }
}
