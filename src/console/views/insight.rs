//! The overview and a key's own page.

use askama::Template;

use super::{Chart, EventView, KeyView, Nav, PageError, When, refusal_label};
use crate::domain::UnixTime;
use crate::service::insights::{Attention, KeyRef, Overview};
use crate::service::key_usage::UsageCounts;

/// A key's page: status, last use, expiry, usage, events, settings and
/// its danger zone.
#[derive(Template)]
#[template(path = "key.html")]
pub struct KeyPage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub key: KeyView,
    /// `24h`, `7d` or `30d`.
    pub period: &'static str,
    pub periods: [(&'static str, &'static str); 3],
    pub chart: Chart,
    /// Refusals over the period by reason: (words, code, count).
    pub refusals: Vec<(&'static str, &'static str, u64)>,
    pub addresses: Vec<String>,
    pub peak_per_minute: u64,
    /// The key this one was rolled from: (id, name, uses of its old secret
    /// in the last 24 hours).
    pub rolled_from: Option<(String, String, u64)>,
    /// A rolled key: its own secret's uses in the last 24 hours.
    pub own_recent_uses: u64,
    /// `None`: the viewer may not read the audit trail.
    pub events: Option<Vec<EventView>>,
    /// Where its dialogs' forms come back to.
    pub return_to: &'static str,
    /// The settings form: `None` when the viewer may not change the key
    /// (the server would refuse: a revoked key, or no `keys:manage`).
    pub settings: Option<SettingsForm>,
    /// A refused change of settings, in words, and the field at fault.
    pub settings_error: Option<(PageError, &'static str)>,
    /// A delete refused because the typed name was not the key's: its
    /// confirmation stays open beside the error.
    pub delete_refused: bool,
}

/// The key page's settings form: what the key update changes.
pub struct SettingsForm {
    pub name: String,
    pub description: String,
    /// One CIDR range per line; empty: anywhere.
    pub allowed_sources: String,
    /// The key's own rate as `600/60s`; empty: the company's default.
    pub rate_limit: String,
    pub require_dpop: bool,
}

impl SettingsForm {
    pub fn of(key: &crate::service::keys::KeySummary) -> Self {
        SettingsForm {
            name: key.name.clone(),
            description: key.description.clone().unwrap_or_default(),
            allowed_sources: key.allowed_sources.join("\n"),
            rate_limit: key
                .rate_limit
                .as_ref()
                .filter(|r| r.source == crate::service::keys::RateLimitSource::Key)
                .map(|r| format!("{}/{}s", r.requests, r.per_seconds))
                .unwrap_or_default(),
            require_dpop: key.require_dpop,
        }
    }
}

pub const PERIODS: [(&str, &str); 3] = [("24h", "24 hours"), ("7d", "7 days"), ("30d", "30 days")];

impl KeyPage {
    pub fn refusals_of(total: &UsageCounts) -> Vec<(&'static str, &'static str, u64)> {
        let mut found: Vec<_> = total
            .refusals
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (refusal_label(code), *code, *n))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.2));
        found
    }
}

/// One line of the overview: what, about whom, and where it is fixed.
pub struct AttentionView {
    /// `spike`, `rate`, `expiring`, `old-secret`, `endpoint`, `locked`.
    pub kind: &'static str,
    pub subject: String,
    pub link: String,
    pub says: String,
    /// The data attribute tests find it by: the key's client ID, the
    /// endpoint's or user's id.
    pub subject_id: String,
}

impl AttentionView {
    fn key(kind: &'static str, key: &KeyRef, says: String) -> Self {
        AttentionView {
            kind,
            subject: key.name.clone(),
            link: format!("/console/keys/{}", key.id),
            says,
            subject_id: key.client_id.clone(),
        }
    }

    pub fn of(item: &Attention, at: UnixTime) -> Self {
        match item {
            Attention::RefusalSpike {
                key,
                last_day,
                usual,
            } => AttentionView::key(
                "spike",
                key,
                format!(
                    "refused {last_day} times in the last 24 hours (usually {usual} a day): see why on its page"
                ),
            ),
            Attention::RateLimited { key, refused } => AttentionView::key(
                "rate",
                key,
                format!(
                    "went over its rate {refused} times in the last 24 hours: raise its rate or slow the client down"
                ),
            ),
            Attention::Expiring { key, expires_at } => AttentionView::key(
                "expiring",
                key,
                format!(
                    "expires {}: roll it, or create its successor, before then",
                    When::at(*expires_at, at).relative
                ),
            ),
            Attention::OldSecretInUse { key, uses } => AttentionView::key(
                "old-secret",
                key,
                format!(
                    "was rolled, but its old secret was used {uses} times in the last 24 hours: move those clients to the new secret"
                ),
            ),
            Attention::FailingEndpoint {
                id,
                url,
                failing_since,
                disabled,
            } => AttentionView {
                kind: "endpoint",
                subject: url.clone(),
                link: format!("/console/webhooks/{id}"),
                says: match (disabled, failing_since) {
                    (true, _) => {
                        "is disabled: events are not sent to it until it is enabled".to_owned()
                    }
                    (false, Some(since)) => format!(
                        "has failed every attempt since {}: check the receiver, then send a test event",
                        When::at(*since, at).relative
                    ),
                    (false, None) => "is failing".to_owned(),
                },
                subject_id: id.clone(),
            },
            Attention::LockedUser { id, email, until } => AttentionView {
                kind: "locked",
                subject: email.clone(),
                link: "/console/users".to_owned(),
                says: match until {
                    Some(until) => format!(
                        "is locked out after repeated failed sign-ins until {}: unlock them if it was them",
                        When::at(*until, at).relative
                    ),
                    None => "is locked out after repeated failed sign-ins".to_owned(),
                },
                subject_id: id.clone(),
            },
        }
    }
}

/// A total this week, last week's, and the change in words.
pub struct Trend {
    pub label: &'static str,
    pub now: u64,
    pub before: u64,
    pub change: String,
}

impl Trend {
    fn of(label: &'static str, now: u64, before: u64) -> Self {
        let change = if before == 0 && now == 0 {
            "no change".to_owned()
        } else if before == 0 {
            "new this week".to_owned()
        } else {
            let percent = (now as f64 - before as f64) / before as f64 * 100.0;
            if percent.abs() < 0.5 {
                "no change".to_owned()
            } else if percent > 0.0 {
                format!("up {percent:.0}%")
            } else {
                format!("down {:.0}%", -percent)
            }
        };
        Trend {
            label,
            now,
            before,
            change,
        }
    }
}

/// A housekeeping group: its title, what to do, and its keys.
pub struct Chore {
    pub id: &'static str,
    pub title: &'static str,
    pub advice: &'static str,
    /// How many keys it is about.
    pub count: usize,
    /// The first [`Chore::SHOWN`] of them, by name.
    pub keys: Vec<KeyRef>,
}

impl Chore {
    /// Keys listed per chore: a company with thousands of keys gets a page
    /// it can read, and the count says how many more there are.
    pub const SHOWN: usize = 25;

    fn of(
        id: &'static str,
        title: &'static str,
        advice: &'static str,
        mut keys: Vec<KeyRef>,
    ) -> Self {
        let count = keys.len();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        keys.truncate(Self::SHOWN);
        Chore {
            id,
            title,
            advice,
            count,
            keys,
        }
    }

    /// How many keys are not listed.
    pub fn more(&self) -> usize {
        self.count - self.keys.len()
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub attention: Vec<AttentionView>,
    pub trends: Vec<Trend>,
    pub top_by_volume: Vec<(KeyRef, u64)>,
    pub top_by_refusals: Vec<(KeyRef, u64)>,
    pub chores: Vec<Chore>,
    pub sees_keys: bool,
}

impl OverviewPage {
    pub fn of(nav: Nav, flash: Option<String>, overview: Overview, at: UnixTime) -> Self {
        let uses = |c: &UsageCounts| c.tokens_issued + c.direct_uses + c.sigv4_uses + c.token_uses;
        let (now, before) = (&overview.this_week, &overview.last_week);
        let tidy = overview.housekeeping;
        OverviewPage {
            nav,
            flash,
            error: None,
            attention: overview
                .attention
                .iter()
                .map(|a| AttentionView::of(a, at))
                .collect(),
            trends: vec![
                Trend::of("Tokens issued", now.tokens_issued, before.tokens_issued),
                Trend::of("Requests with keys", uses(now), uses(before)),
                Trend::of("Refused", now.refused, before.refused),
            ],
            top_by_volume: overview.top_by_volume,
            top_by_refusals: overview.top_by_refusals,
            chores: vec![
                Chore::of(
                    "unused-90",
                    "Unused for 90 days or more",
                    "Revoke them if nothing needs them any more.",
                    tidy.unused_90,
                ),
                Chore::of(
                    "unused-30",
                    "Unused for 30 to 90 days",
                    "Check they are still needed.",
                    tidy.unused_30,
                ),
                Chore::of(
                    "never-used",
                    "Never used",
                    "A key nobody uses is one more secret to keep safe.",
                    tidy.never_used,
                ),
                Chore::of(
                    "no-expiry",
                    "No expiry date",
                    "Keys that never expire stay valid if they leak: roll them into keys that do.",
                    tidy.no_expiry,
                ),
                Chore::of(
                    "every-scope",
                    "Holding every permission",
                    "Give each key only the permissions its client needs.",
                    tidy.every_scope,
                ),
            ],
            sees_keys: overview.sees_keys,
        }
    }
}
