//! What the console's overview and key pages show, read through the same
//! service functions as the API (each decides its own authorisation): a
//! section the caller may not see is left empty, never an error. The rules
//! for what needs attention live here, in [`assess`], which is pure.

use std::collections::{BTreeMap, HashMap};

use super::audit::{AuditFilter, AuditRow};
use super::audit_trail;
use super::key_usage::{self, KeySeries, UsageCounts, UsageRange, UsageReport, volume};
use super::keys::{self, KeyListing, KeyStatus, KeySummary};
use super::{Result, Service, ServiceError, users, webhooks};
use crate::domain::{GRANTABLE_SCOPES, Principal, UnixTime, now};

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// A key expiring this soon needs attention.
pub const EXPIRY_WARNING_DAYS: i64 = 14;
/// A key refused at least this often in the last 24 hours, and more than
/// [`SPIKE_FACTOR`] times its daily average of the six days before, shows
/// a refusal spike.
pub const SPIKE_MIN_REFUSALS: u64 = 10;
pub const SPIKE_FACTOR: u64 = 3;
/// How many keys the overview's top lists show.
const TOP: usize = 5;

/// A key as the overview names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub owner_email: String,
}

impl KeyRef {
    fn of(key: &KeySummary) -> Self {
        KeyRef {
            id: key.id.clone(),
            name: key.name.clone(),
            client_id: key.client_id.clone(),
            owner_email: key.owner_email.clone(),
        }
    }
}

/// One thing that needs someone's attention, with what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attention {
    /// Refused `last_day` times in the last 24 hours, against `usual` a day
    /// before that.
    RefusalSpike {
        key: KeyRef,
        last_day: u64,
        usual: u64,
    },
    /// Refused for going over its rate in the last 24 hours.
    RateLimited {
        key: KeyRef,
        refused: u64,
    },
    Expiring {
        key: KeyRef,
        expires_at: UnixTime,
    },
    /// A rolled key whose old secret was still used in the last 24 hours.
    OldSecretInUse {
        key: KeyRef,
        uses: u64,
    },
    FailingEndpoint {
        id: String,
        url: String,
        failing_since: Option<UnixTime>,
        disabled: bool,
    },
    LockedUser {
        id: String,
        email: String,
        until: Option<UnixTime>,
    },
}

/// Keys worth tidying up (active keys only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Housekeeping {
    /// Last used (or made) 30 to 90 days ago.
    pub unused_30: Vec<KeyRef>,
    /// Last used (or made) 90 days ago or more.
    pub unused_90: Vec<KeyRef>,
    pub never_used: Vec<KeyRef>,
    pub no_expiry: Vec<KeyRef>,
    /// Holding every scope its owner has, or every grantable one.
    pub every_scope: Vec<KeyRef>,
}

/// The overview: what needs attention, then totals, top keys, housekeeping.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    pub attention: Vec<Attention>,
    /// The last 7 days, and the 7 before them.
    pub this_week: UsageCounts,
    pub last_week: UsageCounts,
    pub top_by_volume: Vec<(KeyRef, u64)>,
    pub top_by_refusals: Vec<(KeyRef, u64)>,
    pub housekeeping: Housekeeping,
    /// Whether the caller may manage keys (else the key sections are empty).
    pub sees_keys: bool,
}

/// The endpoint and user facts [`assess`] needs.
pub struct EndpointState {
    pub id: String,
    pub url: String,
    pub status: String,
    pub failing_since: Option<UnixTime>,
}

pub struct LockedUser {
    pub id: String,
    pub email: String,
    pub until: Option<UnixTime>,
}

/// A refusal that a section the caller may not see answers with.
fn not_theirs(err: &ServiceError) -> bool {
    matches!(
        err,
        ServiceError::Forbidden(_) | ServiceError::InsufficientScope(_) | ServiceError::ApiOnly
    )
}

/// `Ok(None)` for a section the caller may not see.
fn optional<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) if not_theirs(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The overview for `principal`: their keys (an admin's: the company's),
/// the webhook endpoints they manage, and (admins) locked users.
pub async fn overview(service: &Service, principal: &Principal) -> Result<Overview> {
    let at = now();
    let keys = optional(keys::list_keys(service, principal, KeyListing::All).await)?;
    let usage = match &keys {
        Some(_) => {
            // One bucket per key, outcome and day, not per hour: a company
            // with a thousand busy keys would otherwise read 24 times the
            // rows. The windows end with the current hour, as `assess` reads them.
            let range = UsageRange::days_ending_now(at, 14);
            key_usage::usage_by_key(service, principal, range, None).await?
        }
        None => BTreeMap::new(),
    };
    let endpoints = optional(webhooks::list_endpoints(service, principal).await)?
        .unwrap_or_default()
        .into_iter()
        .map(|e| EndpointState {
            id: e.id,
            url: e.url,
            status: e.status,
            failing_since: e.failing_since,
        })
        .collect::<Vec<_>>();
    let locked = optional(users::list_users(service, principal, None).await)?
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u.locked)
        .map(|u| LockedUser {
            id: u.id,
            email: u.email,
            until: u.locked_until,
        })
        .collect::<Vec<_>>();
    let sees_keys = keys.is_some();
    let mut overview = assess(&keys.unwrap_or_default(), &usage, &endpoints, &locked, at);
    overview.sees_keys = sees_keys;
    Ok(overview)
}

/// Sums the buckets of `series` that start in `[from, to)`.
fn sum(series: &KeySeries, from: UnixTime, to: UnixTime) -> UsageCounts {
    let mut total = UsageCounts::default();
    for bucket in series
        .buckets
        .iter()
        .filter(|b| b.start >= from && b.start < to)
    {
        total.tokens_issued += bucket.counts.tokens_issued;
        total.direct_uses += bucket.counts.direct_uses;
        total.sigv4_uses += bucket.counts.sigv4_uses;
        total.token_uses += bucket.counts.token_uses;
        total.refused += bucket.counts.refused;
        for (reason, count) in &bucket.counts.refusals {
            *total.refusals.entry(reason).or_default() += count;
        }
    }
    total
}

fn add(into: &mut UsageCounts, counts: &UsageCounts) {
    into.tokens_issued += counts.tokens_issued;
    into.direct_uses += counts.direct_uses;
    into.sigv4_uses += counts.sigv4_uses;
    into.token_uses += counts.token_uses;
    into.refused += counts.refused;
    for (reason, count) in &counts.refusals {
        *into.refusals.entry(reason).or_default() += count;
    }
}

/// The requests that authenticated with the key's own secret or signature.
fn secret_uses(counts: &UsageCounts) -> u64 {
    counts.tokens_issued + counts.direct_uses + counts.sigv4_uses
}

/// What needs attention and the rest of the overview, from the keys, their
/// usage over the last 14 days (by key id; in hours, or in the 24-hour
/// windows of [`UsageRange::days_ending_now`]), endpoints and locked users,
/// at `at`.
pub fn assess(
    keys: &[KeySummary],
    usage: &BTreeMap<String, KeySeries>,
    endpoints: &[EndpointState],
    locked: &[LockedUser],
    at: UnixTime,
) -> Overview {
    // The hour buckets overlapping the last 24 hours count as "the last
    // day"; a week is seven such days.
    let day_start = at - DAY - (at - DAY).rem_euclid(HOUR) + HOUR;
    let week_start = day_start - 6 * DAY;
    let mut overview = Overview::default();
    let empty = KeySeries::default();
    let mut volumes = Vec::new();
    let mut refusals = Vec::new();
    for key in keys {
        let series = usage.get(&key.id).unwrap_or(&empty);
        let last_day = sum(series, day_start, i64::MAX);
        let days_before = sum(series, day_start - 6 * DAY, day_start);
        let this_week = sum(series, week_start, i64::MAX);
        add(&mut overview.this_week, &this_week);
        add(
            &mut overview.last_week,
            &sum(series, week_start - 7 * DAY, week_start),
        );
        let reference = KeyRef::of(key);
        if volume(&this_week) > 0 {
            volumes.push((reference.clone(), volume(&this_week)));
        }
        if this_week.refused > 0 {
            refusals.push((reference.clone(), this_week.refused));
        }
        let usual = days_before.refused.div_ceil(6);
        if last_day.refused >= SPIKE_MIN_REFUSALS && last_day.refused > SPIKE_FACTOR * usual {
            overview.attention.push(Attention::RefusalSpike {
                key: reference.clone(),
                last_day: last_day.refused,
                usual,
            });
        }
        let rate_limited = last_day.refusals.get("rate_limited").copied().unwrap_or(0);
        if rate_limited > 0 {
            overview.attention.push(Attention::RateLimited {
                key: reference.clone(),
                refused: rate_limited,
            });
        }
        if key.status != KeyStatus::Active {
            continue;
        }
        if key.rolled_to.is_some() {
            let uses = secret_uses(&last_day);
            if uses > 0 {
                overview.attention.push(Attention::OldSecretInUse {
                    key: reference.clone(),
                    uses,
                });
            }
        } else if let Some(expires_at) = key.expires_at
            && expires_at - at <= EXPIRY_WARNING_DAYS * DAY
        {
            overview.attention.push(Attention::Expiring {
                key: reference.clone(),
                expires_at,
            });
        }
        let housekeeping = &mut overview.housekeeping;
        let idle = at - key.last_used_at.unwrap_or(key.created_at);
        if idle >= 90 * DAY {
            housekeeping.unused_90.push(reference.clone());
        } else if idle >= 30 * DAY {
            housekeeping.unused_30.push(reference.clone());
        }
        if key.last_used_at.is_none() {
            housekeeping.never_used.push(reference.clone());
        }
        if key.expires_at.is_none() {
            housekeeping.no_expiry.push(reference.clone());
        }
        let every = key.scopes.as_ref().is_none_or(|held| {
            GRANTABLE_SCOPES
                .iter()
                .all(|scope| held.iter().any(|h| h == scope))
        });
        if every {
            housekeeping.every_scope.push(reference);
        }
    }
    for endpoint in endpoints {
        let disabled = endpoint.status == "disabled";
        if endpoint.failing_since.is_some() || disabled {
            overview.attention.push(Attention::FailingEndpoint {
                id: endpoint.id.clone(),
                url: endpoint.url.clone(),
                failing_since: endpoint.failing_since,
                disabled,
            });
        }
    }
    for user in locked {
        overview.attention.push(Attention::LockedUser {
            id: user.id.clone(),
            email: user.email.clone(),
            until: user.until,
        });
    }
    volumes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.name.cmp(&b.0.name)));
    refusals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.name.cmp(&b.0.name)));
    volumes.truncate(TOP);
    refusals.truncate(TOP);
    overview.top_by_volume = volumes;
    overview.top_by_refusals = refusals;
    overview
}

/// What a key's page shows.
pub struct KeyDetails {
    pub key: KeySummary,
    pub usage: UsageReport,
    /// The key this one was rolled from, and its old secret's uses in the
    /// last 24 hours; or, for a rolled key, its own.
    pub rolled_from: Option<(KeySummary, u64)>,
    pub own_recent_uses: u64,
    /// The key's latest audit events, newest first, with names for the
    /// ids they carry; `None` when the caller may not read the audit trail.
    pub events: Option<(Vec<AuditRow>, AuditNames)>,
}

/// A key's page: the key, its usage over `range`, its predecessor's
/// recent use, its audit events. The key must be one `principal` manages.
pub async fn key_details(
    service: &Service,
    principal: &Principal,
    key: &str,
    range: UsageRange,
) -> Result<KeyDetails> {
    let usage = key_usage::key_usage(service, principal, key, range).await?;
    let key = keys::find_key(service, principal, key).await?;
    let at = now();
    let last_day = UsageRange::parse(Some(at - DAY), Some(at), Some("hour"), at)
        .map_err(ServiceError::Invalid)?;
    let recent = |id: String| async move {
        key_usage::key_usage(service, principal, &id, last_day)
            .await
            .map(|r| secret_uses(&r.total))
    };
    let own_recent_uses = recent(key.id.clone()).await?;
    let predecessor = keys::list_keys(service, principal, KeyListing::All)
        .await?
        .into_iter()
        .find(|k| k.rolled_to.as_deref() == Some(key.client_id.as_str()));
    let rolled_from = match predecessor {
        Some(old) => {
            let uses = recent(old.id.clone()).await?;
            Some((old, uses))
        }
        None => None,
    };
    let events = optional(
        readable_audit(
            service,
            principal,
            AuditFilter {
                action: None,
                actor: None,
                target: Some(&key.client_id),
                since: None,
                until: None,
                request_id: None,
                after_id: None,
                limit: 20,
                newest_first: true,
            },
        )
        .await,
    )?
    .map(|(rows, _, names)| (rows, names));
    Ok(KeyDetails {
        key,
        usage,
        rolled_from,
        own_recent_uses,
        events,
    })
}

/// Names for the ids audit events carry, where the caller may see them.
#[derive(Debug, Default)]
pub struct AuditNames {
    /// User id to email.
    pub users: HashMap<String, String>,
    /// Client ID to the key's id and name.
    pub keys: HashMap<String, (String, String)>,
}

/// An audit page as people read it: the events, whether more follow, and
/// names for the ids they carry.
pub async fn readable_audit(
    service: &Service,
    principal: &Principal,
    filter: AuditFilter<'_>,
) -> Result<(Vec<AuditRow>, bool, AuditNames)> {
    let (rows, more) = audit_trail::list(service, principal, filter).await?;
    let mut names = AuditNames::default();
    if let Some(people) = optional(users::list_users(service, principal, None).await)? {
        for user in people {
            names.users.insert(user.id, user.email);
        }
    }
    if let Some(keys) = optional(keys::list_keys(service, principal, KeyListing::All).await)? {
        for key in keys {
            names.keys.insert(key.client_id, (key.id, key.name));
        }
    }
    Ok((rows, more, names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::key_usage::UsageBucket;

    const AT: i64 = 1_800_000_000;

    fn key(name: &str) -> KeySummary {
        KeySummary {
            scopes: Some(vec!["reports:read".to_owned()]),
            expires_at: Some(AT + 300 * DAY),
            last_used_at: Some(AT - HOUR),
            ..KeySummary::example(name, AT - 200 * DAY)
        }
    }

    /// A series with `refused` refusals for `reason` `hours_ago`, and
    /// `issued` tokens in the same hour.
    fn series(entries: &[(i64, u64, &'static str, u64)]) -> KeySeries {
        let mut series = KeySeries::default();
        for &(hours_ago, refused, reason, issued) in entries {
            let start = (AT - hours_ago * HOUR) - (AT - hours_ago * HOUR).rem_euclid(HOUR);
            let mut counts = UsageCounts {
                tokens_issued: issued,
                refused,
                ..Default::default()
            };
            if refused > 0 {
                counts.refusals.insert(reason, refused);
            }
            series.buckets.push(UsageBucket { start, counts });
        }
        series
    }

    fn names(attention: &[Attention]) -> Vec<String> {
        attention
            .iter()
            .map(|a| match a {
                Attention::RefusalSpike { key, .. } => format!("spike {}", key.name),
                Attention::RateLimited { key, .. } => format!("rate {}", key.name),
                Attention::Expiring { key, .. } => format!("expiring {}", key.name),
                Attention::OldSecretInUse { key, .. } => format!("old {}", key.name),
                Attention::FailingEndpoint { url, .. } => format!("endpoint {url}"),
                Attention::LockedUser { email, .. } => format!("locked {email}"),
            })
            .collect()
    }

    #[test]
    fn a_spike_an_expiring_key_and_an_old_secret_need_attention_and_a_healthy_key_does_not() {
        let healthy = key("healthy");
        let spiking = key("spiking");
        let steady = key("steady-refusals");
        let mut expiring = key("expiring");
        expiring.expires_at = Some(AT + 3 * DAY);
        let mut rolled = key("rolled");
        rolled.rolled_to = Some("kpc_next".to_owned());
        rolled.expires_at = Some(AT + HOUR);
        let mut usage = BTreeMap::new();
        usage.insert(
            "healthy".to_owned(),
            series(&[(1, 0, "", 500), (30, 1, "wrong_secret", 10)]),
        );
        usage.insert("spiking".to_owned(), series(&[(2, 12, "wrong_secret", 3)]));
        // Refused as often every day: no spike.
        let every_day: Vec<_> = (0..7)
            .map(|d| (d * 24 + 1, 12, "wrong_secret", 0))
            .collect();
        usage.insert("steady-refusals".to_owned(), series(&every_day));
        usage.insert("rolled".to_owned(), series(&[(3, 0, "", 2)]));
        let overview = assess(
            &[healthy, spiking, steady, expiring, rolled],
            &usage,
            &[],
            &[],
            AT,
        );
        assert_eq!(
            names(&overview.attention),
            ["spike spiking", "expiring expiring", "old rolled"]
        );
        assert_eq!(overview.top_by_volume[0].0.name, "healthy");
        assert_eq!(overview.top_by_refusals[0].0.name, "steady-refusals");
    }

    #[test]
    fn rate_limits_failing_endpoints_and_locked_users_need_attention() {
        let mut usage = BTreeMap::new();
        usage.insert("busy".to_owned(), series(&[(1, 2, "rate_limited", 100)]));
        let endpoints = [
            EndpointState {
                id: "e1".into(),
                url: "https://ok.example".into(),
                status: "enabled".into(),
                failing_since: None,
            },
            EndpointState {
                id: "e2".into(),
                url: "https://down.example".into(),
                status: "enabled".into(),
                failing_since: Some(AT - DAY),
            },
        ];
        let locked = [LockedUser {
            id: "u2".into(),
            email: "ben@example.com".into(),
            until: Some(AT + 600),
        }];
        let overview = assess(&[key("busy")], &usage, &endpoints, &locked, AT);
        assert_eq!(
            names(&overview.attention),
            [
                "rate busy",
                "endpoint https://down.example",
                "locked ben@example.com"
            ]
        );
    }

    #[test]
    fn housekeeping_sorts_idle_keys_by_how_long_and_names_keys_without_expiry_or_limits() {
        let mut month = key("month");
        month.last_used_at = Some(AT - 40 * DAY);
        let mut quarter = key("quarter");
        quarter.last_used_at = Some(AT - 100 * DAY);
        let mut never = key("never");
        never.last_used_at = None;
        never.created_at = AT - DAY;
        let mut open = key("open");
        open.expires_at = None;
        open.scopes = None;
        let mut revoked = key("revoked");
        revoked.status = KeyStatus::Revoked;
        revoked.expires_at = None;
        let overview = assess(
            &[month, quarter, never, open, revoked],
            &BTreeMap::new(),
            &[],
            &[],
            AT,
        );
        let list = |refs: &[KeyRef]| refs.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let tidy = &overview.housekeeping;
        assert_eq!(list(&tidy.unused_30), ["month"]);
        assert_eq!(list(&tidy.unused_90), ["quarter"]);
        assert_eq!(list(&tidy.never_used), ["never"]);
        assert_eq!(list(&tidy.no_expiry), ["open"]);
        assert_eq!(list(&tidy.every_scope), ["open"]);
    }

    #[test]
    fn deleting_a_key_is_confirmed_by_its_name_in_any_case_or_by_the_phrase() {
        let key = key("Nightly Export");
        for typed in [
            "Nightly Export",
            "nightly export",
            " NIGHTLY EXPORT ",
            "delete kpc_Nightly Export",
        ] {
            assert!(key.confirms_deletion(typed), "{typed}");
        }
        for typed in [
            "",
            "Nightly",
            "Nightly Export 2",
            "DELETE kpc_Nightly Export",
        ] {
            assert!(!key.confirms_deletion(typed), "{typed}");
        }
    }

    #[test]
    fn trends_compare_the_last_seven_days_with_the_seven_before() {
        let mut usage = BTreeMap::new();
        usage.insert(
            "k".to_owned(),
            series(&[(1, 0, "", 30), (8 * 24, 0, "", 10), (20 * 24, 0, "", 99)]),
        );
        let overview = assess(&[key("k")], &usage, &[], &[], AT);
        assert_eq!(overview.this_week.tokens_issued, 30);
        assert_eq!(overview.last_week.tokens_issued, 10);
    }
}
