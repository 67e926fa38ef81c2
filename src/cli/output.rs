//! What the admin commands print: one JSON document with `--json`, else a
//! summary for people (RFC 3339 times with how far away they are).

use serde_json::Value;

use crate::config::Settings;
use crate::service::keys::{self, CreatedKey, KeySummary};
use crate::service::public_keys::PublicKeySummary;

/// Where a command's result goes: JSON or the human summary.
pub(super) struct Output {
    pub(super) json: bool,
}

impl Output {
    /// Writes the result; a closed stdout (`keyport … | head`) is not a
    /// reason to panic.
    pub(super) fn print(&self, doc: Value, human: &str) {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(stdout, "{doc}")
        } else {
            writeln!(stdout, "{human}")
        };
    }
}

/// A stored time for people: RFC 3339 in UTC and how far it is from `now`,
/// e.g. `2027-03-04T10:00:00Z (in 89 days)`. `--json` keeps Unix seconds.
fn human_time(at: crate::domain::UnixTime, now: crate::domain::UnixTime) -> String {
    let stamp = chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| at.to_string());
    let distance = at.saturating_sub(now).unsigned_abs();
    let (count, unit) = match distance {
        0..60 => (distance, "second"),
        60..3600 => (distance / 60, "minute"),
        3600..86400 => (distance / 3600, "hour"),
        _ => (distance / 86400, "day"),
    };
    let span = format!("{count} {unit}{}", if count == 1 { "" } else { "s" });
    if at >= now {
        format!("{stamp} (in {span})")
    } else {
        format!("{stamp} ({span} ago)")
    }
}

/// [`human_time`] from the current time.
pub(super) fn human_time_now(at: crate::domain::UnixTime) -> String {
    human_time(at, crate::domain::now())
}

/// The database URL without its password, for log lines.
pub(super) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

pub(super) fn public_key_line(key: &PublicKeySummary) -> String {
    format!(
        "{}  {:<6} kid={} created {}",
        key.thumbprint,
        key.alg,
        key.kid.as_deref().unwrap_or("-"),
        human_time_now(key.created_at)
    )
}

/// A key created without a secret: its JSON, or a summary saying how it
/// authenticates.
pub(super) fn print_created_without_secret(
    out: &Output,
    created: &keys::CreatedClient,
    settings: &Settings,
) {
    let mut doc = serde_json::to_value(&created.key).unwrap_or(Value::Null);
    doc["webhook_signing_key"] = Value::String(created.webhook_signing_key.to_whsec());
    doc["public_keys"] = serde_json::to_value(&created.public_keys).unwrap_or(Value::Null);
    let keys: Vec<String> = created.public_keys.iter().map(public_key_line).collect();
    let human = format!(
        "created key {name} for {owner}, without a secret\n\n  client_id:     {client_id}\n         webhook signing key: {webhook_key}\n  public keys:\n    {keys}\n\n         It authenticates only with private_key_jwt (RFC 7523): a JWT signed with one of these\n         keys, iss and sub {client_id}, aud {issuer} (or {issuer}/oauth/token), a short exp and a\n         new jti each time, sent as client_assertion with\n         client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
        name = created.key.name,
        owner = created.key.owner_email,
        client_id = created.key.client_id,
        webhook_key = created.webhook_signing_key.to_whsec(),
        keys = keys.join("\n    "),
        issuer = settings.tokens.issuer,
    );
    out.print(doc, &human);
}

/// The new key's JSON (with the secret), or the human summary plus `note`.
pub(super) fn print_created_key(
    out: &Output,
    created: &CreatedKey,
    settings: &Settings,
    note: Option<&str>,
    public_keys: &[PublicKeySummary],
) {
    let mut doc = serde_json::to_value(&created.key).unwrap_or(Value::Null);
    doc["client_secret"] = Value::String(created.secret.expose().to_owned());
    doc["webhook_signing_key"] = Value::String(created.webhook_signing_key.to_whsec());
    if !public_keys.is_empty() {
        doc["public_keys"] = serde_json::to_value(public_keys).unwrap_or(Value::Null);
    }
    let human = format!(
        "created key {name} for {owner}\n\n  client_id:     {client_id}\n  client_secret: {secret}\n\
         webhook signing key: {webhook_key}\n\n\
         The secret is shown only now: store it in a secrets manager. Receivers of signed webhooks\n\
         verify them with the webhook signing key (derived from the secret).\n\
         Get a token: curl -u '{client_id}:<secret>' -d grant_type=client_credentials {issuer}/oauth/token",
        name = created.key.name,
        owner = created.key.owner_email,
        client_id = created.key.client_id,
        secret = created.secret.expose(),
        webhook_key = created.webhook_signing_key.to_whsec(),
        issuer = settings.tokens.issuer,
    );
    let human = if created.key.sigv4 {
        format!(
            "{human}\nSigV4 signing is allowed: curl --aws-sigv4 \"aws:amz:{region}:{service}\" \
             --user '{client_id}:<secret>' {issuer}/api/v1/whoami",
            region = settings.sigv4.region,
            service = settings.sigv4.service,
            client_id = created.key.client_id,
            issuer = settings.tokens.issuer,
        )
    } else {
        human
    };
    let human = match note {
        Some(note) => format!("{human}\n{note}"),
        None => human,
    };
    out.print(doc, &human);
}

pub(super) fn key_line(key: &KeySummary) -> String {
    let mut line = format!(
        "{}  {:<8} {:<24} owner={} scopes={} expires {}",
        key.client_id,
        key.status.as_str(),
        key.name,
        key.owner_email,
        key.scopes
            .as_ref()
            .map(|s| s.join(","))
            .unwrap_or_else(|| "(owner's)".to_owned()),
        key.expires_at
            .map(human_time_now)
            .unwrap_or_else(|| "never".to_owned()),
    );
    if !key.labels.is_empty() {
        let labels: Vec<String> = key.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" labels={}", labels.join(",")));
    }
    if !key.allowed_sources.is_empty() {
        line.push_str(&format!(" allow={}", key.allowed_sources.join(",")));
    }
    if let Some(rate) = &key.rate_limit {
        line.push_str(&format!(
            " rate={}/{}s,burst={}({})",
            rate.requests,
            rate.per_seconds,
            rate.burst,
            match rate.source {
                keys::RateLimitSource::Key => "own",
                keys::RateLimitSource::Default => "company default",
            }
        ));
    }
    if let Some(successor) = &key.rolled_to {
        line.push_str(&format!(" rolled_to={successor}"));
    }
    if key.sigv4 {
        line.push_str(" sigv4");
    }
    if key.require_dpop {
        line.push_str(" require_dpop");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339_utc_with_how_far_away_they_are() {
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        // at → text
        let table = [
            (now, "2023-11-14T22:13:20Z (in 0 seconds)"),
            (now + 1, "2023-11-14T22:13:21Z (in 1 second)"),
            (now + 89 * 86400 + 5, "2024-02-11T22:13:25Z (in 89 days)"),
            (now + 7200, "2023-11-15T00:13:20Z (in 2 hours)"),
            (now - 90, "2023-11-14T22:11:50Z (1 minute ago)"),
            (now - 3 * 86400, "2023-11-11T22:13:20Z (3 days ago)"),
        ];
        for (at, text) in table {
            assert_eq!(human_time(at, now), text);
        }
    }

    #[test]
    fn database_passwords_never_reach_the_log() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/keyport"),
            "postgres://app@db:5432/keyport"
        );
        assert_eq!(
            redact_url("sqlite://data/keyport.db"),
            "sqlite://data/keyport.db"
        );
    }
}
