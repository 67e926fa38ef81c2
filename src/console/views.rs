//! What the templates show: page structs (one per template) and the rows
//! they list, with times already written for people.

use askama::Template;
use chrono::{DateTime, Utc};

use crate::domain::{GRANTABLE_SCOPES, UnixTime};
use crate::routes::error::{public_message, status_of};
use crate::service::ServiceError;
use crate::service::audit::AuditRow;
use crate::service::insights::AuditNames;
use crate::service::keys::{KeyStatus, KeySummary};
use crate::service::users::UserSummary;

mod charts;
mod exchange;
mod insight;
mod public_keys;
mod webhooks;
mod words;
pub use charts::*;
pub use exchange::*;
pub use insight::*;
pub use public_keys::*;
pub use webhooks::*;
pub use words::*;

/// A key unused this long stands out in the list.
const STALE_AFTER_SECONDS: i64 = 90 * 24 * 3600;

/// An error as a page shows it: in words, with its code.
pub struct PageError {
    pub code: String,
    pub message: String,
}

impl PageError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        PageError {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<&ServiceError> for PageError {
    fn from(err: &ServiceError) -> Self {
        // The status is the API's; the words are the console's. 5xx detail
        // stays in the log.
        let message = if status_of(err).is_server_error() {
            "the server failed; try again shortly".to_owned()
        } else {
            public_message(err)
        };
        PageError::new(err.code(), message)
    }
}

/// The navigation bar and what every signed-in page needs.
pub struct Nav {
    pub email: String,
    pub admin: bool,
    /// Holds `webhooks:manage`: the Webhooks page is theirs.
    pub webhooks: bool,
    pub csrf: String,
    pub active: &'static str,
}

/// A moment, three ways.
pub struct When {
    pub iso: String,
    pub exact: String,
    pub day: String,
    pub relative: String,
}

impl When {
    pub fn at(unix: UnixTime, now: UnixTime) -> Self {
        let at = DateTime::<Utc>::from_timestamp(unix, 0).unwrap_or_default();
        When {
            iso: at.to_rfc3339(),
            exact: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            day: at.format("%Y-%m-%d").to_string(),
            relative: relative(now - unix),
        }
    }
}

/// "just now", "5 minutes ago", "3 days ago", "in 2 hours".
fn relative(seconds_ago: i64) -> String {
    let (amount, future) = if seconds_ago < 0 {
        (-seconds_ago, true)
    } else {
        (seconds_ago, false)
    };
    let (value, unit) = match amount {
        0..60 => return "just now".to_owned(),
        60..3600 => (amount / 60, "minute"),
        3600..86400 => (amount / 3600, "hour"),
        86400..2_592_000 => (amount / 86400, "day"),
        2_592_000..31_536_000 => (amount / 2_592_000, "month"),
        _ => (amount / 31_536_000, "year"),
    };
    let plural = if value == 1 { "" } else { "s" };
    if future {
        format!("in {value} {unit}{plural}")
    } else {
        format!("{value} {unit}{plural} ago")
    }
}

pub struct KeyView {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub owner_email: String,
    pub status: &'static str,
    pub last_used: Option<When>,
    pub last_used_at: Option<UnixTime>,
    pub created_at: UnixTime,
    pub expires: Option<When>,
    pub signs_webhooks: bool,
    /// Created with a webhook signing key: only such a key may sign
    /// webhooks (the server refuses the others).
    pub has_webhook_signing_key: bool,
    /// Only a key's owner may roll it (the new secret acts as them).
    pub owner_is_me: bool,
    pub stale: bool,
    /// The key may sign requests with AWS Signature Version 4.
    pub sigv4: bool,
    /// The key authenticates with its secret (false: private_key_jwt only).
    pub secret_enabled: bool,
    /// Public keys registered for private_key_jwt.
    pub public_key_count: i64,
    /// The key's token requests must carry a DPoP proof.
    pub require_dpop: bool,
    /// The key authenticates with a client certificate (RFC 8705).
    pub mutual_tls: bool,
    /// Its rate for reports and webhooks, as `600/60 s (burst 600)`, and
    /// whether it is the key's own or the company's default.
    pub rate: Option<String>,
    /// `kpc_abcd…wxyz`: the list's short form.
    pub client_id_short: String,
    /// Active and expiring within two weeks.
    pub expiring_soon: bool,
    pub last_used_from: String,
    /// How it was last used, in words.
    pub last_used_kind: String,
    /// Its permissions as (label, code); empty: every one its owner holds.
    pub permissions: Vec<(String, String)>,
    pub token_ttl: String,
    pub allowed_sources: String,
    pub description: String,
    /// The client ID of the key it was rolled to.
    pub rolled_to: Option<String>,
    pub sparkline: Option<Sparkline>,
    /// Whether the viewer's search and filters keep it (the script hides
    /// the others as the viewer types).
    pub search_text: String,
}

/// `kpc_abcd…wxyz`, or the whole ID when it is short.
pub fn shorten(client_id: &str) -> String {
    let chars: Vec<char> = client_id.chars().collect();
    if chars.len() <= 14 {
        return client_id.to_owned();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

impl KeyView {
    pub fn of(key: KeySummary, viewer_id: &str, now: UnixTime) -> Self {
        let last_seen = key.last_used_at.unwrap_or(key.created_at);
        KeyView {
            client_id_short: shorten(&key.client_id),
            expiring_soon: key.status == KeyStatus::Active
                && key.expires_at.is_some_and(|at| {
                    at - now <= crate::service::insights::EXPIRY_WARNING_DAYS * 86_400
                }),
            last_used_from: key.last_used_from.clone().unwrap_or_default(),
            last_used_kind: match key.last_used_kind.as_deref() {
                Some("token") => "to get a token",
                Some("direct") => "its secret sent directly",
                Some("sigv4") => "a signed request",
                Some(_) => "another way",
                None => "",
            }
            .to_owned(),
            permissions: key
                .scopes
                .iter()
                .flatten()
                .map(|code| (permission_label(code).to_owned(), code.clone()))
                .collect(),
            token_ttl: key.token_ttl_seconds.map_or_else(
                || "the server's default".to_owned(),
                |s| format!("{s} seconds"),
            ),
            allowed_sources: if key.allowed_sources.is_empty() {
                "anywhere".to_owned()
            } else {
                key.allowed_sources.join(", ")
            },
            description: key.description.clone().unwrap_or_default(),
            rolled_to: key.rolled_to.clone(),
            sparkline: None,
            search_text: format!("{} {} {}", key.name, key.client_id, key.owner_email)
                .to_lowercase(),
            stale: key.status == KeyStatus::Active && now - last_seen >= STALE_AFTER_SECONDS,
            status: key.status.as_str(),
            last_used: key.last_used_at.map(|at| When::at(at, now)),
            last_used_at: key.last_used_at,
            created_at: key.created_at,
            expires: key.expires_at.map(|at| When::at(at, now)),
            signs_webhooks: key.signs_webhooks,
            has_webhook_signing_key: key.has_webhook_signing_key,
            sigv4: key.sigv4,
            secret_enabled: key.secret_enabled,
            public_key_count: key.public_key_count,
            require_dpop: key.require_dpop,
            mutual_tls: key.tls_client_auth.is_some() || !key.tls_client_certificates.is_empty(),
            rate: key.rate_limit.map(|rate| {
                format!(
                    "{} per {} s (burst {}){}",
                    rate.requests,
                    rate.per_seconds,
                    rate.burst,
                    if rate.source == crate::service::keys::RateLimitSource::Default {
                        ", company default"
                    } else {
                        ""
                    }
                )
            }),
            owner_is_me: key.owner_id == viewer_id,
            id: key.id,
            client_id: key.client_id,
            name: key.name,
            owner_email: key.owner_email,
        }
    }
}

impl KeyView {
    /// Newest first; by last use, most recent first and never-used last.
    pub fn order(keys: &mut [KeyView], by_last_use: bool) {
        if by_last_use {
            keys.sort_by_key(|k| std::cmp::Reverse(k.last_used_at.unwrap_or(i64::MIN)));
        } else {
            keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        }
    }
}

/// Which part of a filtered, ordered key list a page shows, and the
/// addresses of its neighbours.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyPages {
    /// Keys matching the filters, on all pages.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    pub count: usize,
    /// The shown keys' indexes in the whole list.
    pub shown: std::ops::Range<usize>,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl KeyPages {
    /// Page `asked` (the first when absent or 0, the last when beyond it)
    /// of `total` keys, `per_page` to a page; `href` makes a page's address.
    pub fn of(
        total: usize,
        asked: Option<usize>,
        per_page: usize,
        href: impl Fn(usize) -> String,
    ) -> Self {
        let count = total.div_ceil(per_page).max(1);
        let page = asked.unwrap_or(1).clamp(1, count);
        let start = ((page - 1) * per_page).min(total);
        KeyPages {
            total,
            page,
            count,
            shown: start..(start + per_page).min(total),
            previous: (page > 1).then(|| href(page - 1)),
            next: (page < count).then(|| href(page + 1)),
        }
    }

    /// Position of the first key shown, from 1 (0 when nothing matches).
    pub fn first(&self) -> usize {
        if self.shown.is_empty() {
            0
        } else {
            self.shown.start + 1
        }
    }

    /// Position of the last key shown, from 1.
    pub fn last(&self) -> usize {
        self.shown.end
    }
}

/// The key just created, shown once (the page that renders it is never
/// cached and cannot be fetched again).
pub struct CreatedView {
    pub id: String,
    pub client_id: String,
    pub secret: String,
    /// `whsec_…`, for verifying signed webhooks.
    pub webhook_signing_key: String,
    pub curl: String,
    /// `curl --aws-sigv4 …` calling whoami, for a key that allows SigV4.
    pub sigv4_curl: Option<String>,
    /// Only then is its `whsec_…` shown.
    pub signs_webhooks: bool,
    /// For the `.env` file.
    pub token_url: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    pub nav: Nav,
    pub heading: &'static str,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub create_error: Option<PageError>,
    pub mine: bool,
    pub may_manage: bool,
    /// The keys on this page.
    pub keys: Vec<KeyView>,
    pub pages: KeyPages,
    pub status: String,
    pub status_options: [(&'static str, &'static str); 5],
    pub sort: String,
    /// What the create form offers: (code, label, description).
    pub permissions: Vec<(String, &'static str, &'static str)>,
    pub max_ttl: u64,
    pub tomorrow: String,
    pub latest: String,
    pub form_id: String,
    pub created: Option<CreatedView>,
    /// This server's SigV4 region and service, and its base URL, for the
    /// browser's signed Test connection and the copied curl command.
    pub sigv4_region: String,
    pub sigv4_service: String,
    pub issuer: String,
    /// The search box's text.
    pub search: String,
}

impl KeysPage {
    /// `curl --aws-sigv4 …` calling whoami as `client_id`, with `secret`
    /// (a placeholder in listings: the server never has it to show).
    pub fn sigv4_curl(&self, client_id: &str, secret: &str) -> String {
        sigv4_curl(
            &self.sigv4_region,
            &self.sigv4_service,
            &self.issuer,
            client_id,
            secret,
        )
    }
}

/// The `curl --aws-sigv4` command the console's Copy button gives, for this server.
pub fn sigv4_curl(
    region: &str,
    service: &str,
    issuer: &str,
    client_id: &str,
    secret: &str,
) -> String {
    format!(
        "curl --aws-sigv4 \"aws:amz:{region}:{service}\" --user \"{client_id}:{secret}\" {issuer}/api/v1/whoami"
    )
}

pub const STATUS_OPTIONS: [(&str, &str); 5] = [
    ("all", "All"),
    ("active", "Active"),
    ("disabled", "Disabled"),
    ("revoked", "Revoked"),
    ("expired", "Expired"),
];

pub struct Grant {
    pub scope: &'static str,
    pub label: &'static str,
    pub held: bool,
}

pub struct UserView {
    pub id: String,
    pub email: String,
    pub role: String,
    pub status: String,
    pub locked: bool,
    pub locked_until: String,
    pub locked_until_iso: String,
    pub grants: Vec<Grant>,
    /// Why the page offers no Disable for this user, if it does not.
    pub keep_enabled: Option<&'static str>,
}

impl UserView {
    pub fn of(user: UserSummary, now: UnixTime) -> Self {
        let until = user.locked_until.map(|at| When::at(at, now));
        UserView {
            grants: GRANTABLE_SCOPES
                .iter()
                .map(|scope| Grant {
                    scope,
                    label: permission_label(scope),
                    held: user.permissions.iter().any(|p| p == scope),
                })
                .collect(),
            keep_enabled: None,
            locked: user.locked,
            locked_until: until.as_ref().map(|w| w.exact.clone()).unwrap_or_default(),
            locked_until_iso: until.map(|w| w.iso).unwrap_or_default(),
            id: user.id,
            email: user.email,
            role: user.role,
            status: user.status,
        }
    }
}

/// A user just added, with their invitation shown once: one link to the
/// set-password page, the code in its fragment (browsers never send a
/// fragment to a server: no access log, proxy or `Referer` sees it).
pub struct InviteView {
    pub email: String,
    pub link: String,
    pub expires: String,
}

/// The invitation link for a set-password code, on this server.
pub fn invitation_link(issuer: &str, code: &str) -> String {
    format!(
        "{}/console/set-password#code={code}",
        issuer.trim_end_matches('/')
    )
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub nav: Nav,
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub users: Vec<UserView>,
    /// What the add form offers: (code, label), labels as everywhere else.
    pub grantable: Vec<(&'static str, &'static str)>,
    pub api_only_users: bool,
    pub invite: Option<InviteView>,
}

pub struct EventView {
    pub id: String,
    pub when: When,
    pub action: String,
    pub action_label: String,
    /// The person by email where known, else their id, `cli`, `keyport`…
    pub actor: String,
    pub credential: String,
    /// The key's or user's name, and the page it links to.
    pub target: String,
    pub target_link: Option<String>,
    pub detail: String,
    pub source: String,
    pub request_id: String,
}

impl EventView {
    pub fn of(event: AuditRow, names: &AuditNames, now: UnixTime) -> Self {
        let target_raw = event.target.unwrap_or_default();
        let (target, target_link) = if let Some((id, name)) = names.keys.get(&target_raw) {
            (name.clone(), Some(format!("/console/keys/{id}")))
        } else if let Some(email) = names.users.get(&target_raw) {
            (email.clone(), Some("/console/users".to_owned()))
        } else if names.users.values().any(|email| *email == target_raw) {
            (target_raw, Some("/console/users".to_owned()))
        } else {
            (target_raw, None)
        };
        let actor = names
            .users
            .get(&event.actor)
            .cloned()
            .unwrap_or_else(|| event.actor.clone());
        EventView {
            id: event.id,
            when: When::at(event.created_at, now),
            action_label: action_label(&event.action),
            action: event.action,
            actor,
            credential: match (event.credential_kind, event.credential_id) {
                (Some(kind), Some(id)) => match names.keys.get(&id) {
                    Some((_, name)) => format!("{kind} {name}"),
                    None => format!("{kind} {id}"),
                },
                (Some(kind), None) => kind,
                _ => String::new(),
            },
            target,
            target_link,
            detail: event.detail.unwrap_or_default(),
            source: event.source_address.unwrap_or_default(),
            request_id: event.request_id.unwrap_or_default(),
        }
    }
}

/// The audit filter as the form shows it back.
#[derive(Default)]
pub struct AuditFilterView {
    pub action: String,
    pub actor: String,
    pub since: String,
    pub until: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub error: Option<PageError>,
    pub filter: AuditFilterView,
    pub actions: &'static [(&'static str, &'static str)],
    pub events: Vec<EventView>,
    pub next_page: Option<String>,
    /// The CSV export of the same filter.
    pub csv_link: String,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    pub flash: Option<String>,
    pub error: Option<PageError>,
    pub email: String,
}

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub error: Option<PageError>,
    pub token: String,
    pub company: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "set_password.html")]
pub struct SetPasswordPage {
    pub error: Option<PageError>,
    /// The code sent, shown back after a refusal it survives (a weak
    /// password), so the person can try again without the link.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn key_pages_clamp_the_asked_page_and_link_their_neighbours() {
        let href = |page: usize| format!("/p{page}");
        let none = KeyPages::of(0, Some(3), 50, href);
        assert_eq!(
            (none.page, none.count, none.first(), none.last()),
            (1, 1, 0, 0)
        );
        assert_eq!(none.shown, 0..0);
        assert_eq!((none.previous, none.next), (None, None));
        let exact = KeyPages::of(100, None, 50, href);
        assert_eq!((exact.count, exact.first(), exact.last()), (2, 1, 50));
        assert_eq!(exact.next.as_deref(), Some("/p2"));
        let last = KeyPages::of(120, Some(3), 50, href);
        assert_eq!(
            (last.first(), last.last(), last.shown.clone()),
            (101, 120, 100..120)
        );
        assert_eq!((last.previous.as_deref(), last.next), (Some("/p2"), None));
        assert_eq!(KeyPages::of(120, Some(0), 50, href).page, 1);
        assert_eq!(KeyPages::of(120, Some(usize::MAX), 50, href).page, 3);
    }

    /// A key summary as the service gives one, made `created_days_ago`.
    fn key(
        name: &str,
        created_days_ago: i64,
        last_used_days_ago: Option<i64>,
        now: i64,
    ) -> KeySummary {
        KeySummary {
            last_used_at: last_used_days_ago.map(|d| now - d * DAY),
            ..KeySummary::example(name, now - created_days_ago * DAY)
        }
    }

    #[test]
    fn keys_unused_for_ninety_days_stand_out_while_active() {
        let now = 1_800_000_000;
        let view = |k| KeyView::of(k, "u", now);
        assert!(view(key("never-used", 91, None, now)).stale);
        assert!(view(key("long-idle", 200, Some(90), now)).stale);
        assert!(!view(key("used-yesterday", 200, Some(1), now)).stale);
        assert!(!view(key("new", 89, None, now)).stale);
        let mut revoked = key("revoked", 300, None, now);
        revoked.status = KeyStatus::Revoked;
        assert!(!view(revoked).stale, "only active keys call for attention");
    }

    #[test]
    fn keys_sort_by_creation_or_by_last_use_with_never_used_last() {
        let now = 1_800_000_000;
        let mut keys: Vec<KeyView> = [
            key("old-busy", 30, Some(0), now),
            key("new-idle", 1, None, now),
            key("mid-quiet", 10, Some(5), now),
        ]
        .into_iter()
        .map(|k| KeyView::of(k, "u", now))
        .collect();
        let names = |keys: &[KeyView]| keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        KeyView::order(&mut keys, false);
        assert_eq!(names(&keys), ["new-idle", "mid-quiet", "old-busy"]);
        KeyView::order(&mut keys, true);
        assert_eq!(names(&keys), ["old-busy", "mid-quiet", "new-idle"]);
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(5), "just now");
        assert_eq!(relative(61), "1 minute ago");
        assert_eq!(relative(7200), "2 hours ago");
        assert_eq!(relative(3 * 86400), "3 days ago");
        assert_eq!(relative(-7200), "in 2 hours");
        assert_eq!(relative(400 * 86400), "1 year ago");
    }
}
