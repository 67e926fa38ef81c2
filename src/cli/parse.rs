//! What the admin commands' arguments mean: durations with their unit,
//! rates, labels, lists, switches and references.
//!
//! One convention across every command, and the other forms refused with
//! the one to use rather than guessed:
//! - a list (scopes, permissions, CIDR ranges) is one comma-separated value;
//!   an option naming one thing (`--label`, `--claim`, `--public-key`) is
//!   repeated for more;
//! - a yes/no setting is a switch, `--x` or `--no-x`, never `--x true`;
//! - a reference takes the id or the name people know: tenant id or name,
//!   user id or email, key id or client ID, trusted issuer id or `iss`.

use std::time::Duration;

use super::CliError;
use crate::domain::{KeyLabels, RateLimit};
use crate::service::ServiceError;

/// `--rate 600/min`.
pub(super) fn parse_rate(raw: &str) -> Result<RateLimit, String> {
    RateLimit::parse_cli(raw).map_err(|e| e.to_string())
}

/// `--rate` with `--burst` applied.
pub(super) fn rate_with_burst(
    rate: Option<RateLimit>,
    burst: Option<i64>,
) -> Result<Option<RateLimit>, CliError> {
    match (rate, burst) {
        (Some(rate), Some(burst)) => rate
            .with_burst(burst)
            .map(Some)
            .map_err(|e| CliError::Service(ServiceError::Invalid(e.to_string()))),
        (rate, _) => Ok(rate),
    }
}

/// `name=value` labels as typed on the command line, one per `--label`:
/// `--label env=prod,team=erp` is refused with the repeated form (a value
/// with a comma is fine, one that holds another `name=` is not).
pub(super) fn label_pairs(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|label| {
            let parts: Vec<&str> = label.split(',').map(str::trim).collect();
            if parts.len() > 1 && parts.iter().all(|p| p.contains('=')) {
                let repeated: Vec<String> = parts.iter().map(|p| format!("--label {p}")).collect();
                return Err(CliError::Service(ServiceError::Invalid(format!(
                    "one label per --label: did you mean {}?",
                    repeated.join(" ")
                ))));
            }
            KeyLabels::parse_assignment(label)
                .map_err(|e| CliError::Service(ServiceError::Invalid(e.to_string())))
        })
        .collect()
}

/// A list (scopes, permissions, CIDR ranges): one comma-separated value.
/// Items separated by spaces are refused with the comma form, so a list
/// reads the same in every command; `''` is the empty list.
pub(super) fn comma_list(raw: &str) -> Result<String, String> {
    let items: Vec<&str> = raw.split(',').map(str::trim).collect();
    if items.iter().any(|item| item.split_whitespace().count() > 1) {
        let fixed: Vec<&str> = raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .collect();
        return Err(format!(
            "a list is comma-separated: did you mean {}?",
            fixed.join(",")
        ));
    }
    Ok(items
        .into_iter()
        .filter(|item| !item.is_empty())
        .collect::<Vec<_>>()
        .join(","))
}

/// `--x` / `--no-x` as a change: on, off, or (neither) unchanged.
pub(super) fn switch(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// What people write for yes and no, refused after a switch.
const BOOLEAN_WORDS: [&str; 8] = ["true", "false", "yes", "no", "on", "off", "1", "0"];

/// `--require-dpop false`, `--api-only-users=true`: a switch given a value.
/// Switches take none (`--x` or `--no-x`); the message names the one meant.
/// `switches` are the long names of every switch; `args` the command line
/// without the program name. Nothing after `--` is looked at.
pub(super) fn switch_given_a_value(args: &[String], switches: &[String]) -> Option<String> {
    let is_switch = |name: &str| switches.iter().any(|s| s == name);
    let args: Vec<&String> = args.iter().take_while(|a| *a != "--").collect();
    for (i, arg) in args.iter().enumerate() {
        let Some(flag) = arg.strip_prefix("--") else {
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (
                flag,
                args.get(i + 1)
                    .map(|next| next.to_ascii_lowercase())
                    .filter(|next| BOOLEAN_WORDS.contains(&next.as_str())),
            ),
        };
        let Some(value) = value else { continue };
        if !is_switch(name) {
            continue;
        }
        let yes = !matches!(
            value.to_ascii_lowercase().as_str(),
            "false" | "no" | "off" | "0"
        );
        let positive = name.strip_prefix("no-").filter(|p| is_switch(p));
        let meant = match (yes, positive) {
            (true, _) => format!("--{name}"),
            (false, Some(positive)) => format!("--{positive}"),
            (false, None) if is_switch(&format!("no-{name}")) => format!("--no-{name}"),
            (false, None) => format!("no --{name} at all"),
        };
        let written = if flag.contains('=') {
            format!("--{flag}")
        } else {
            format!("--{name} {value}")
        };
        return Some(format!(
            "`{written}`: --{name} is a switch and takes no value; did you mean {meant}?"
        ));
    }
    None
}

/// `--allow 10.0.0.0/8,2001:db8::/32`; `''`: no ranges.
pub(super) fn allow_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A duration with its unit (`45s`, `30m`, `12h`, `90d`, or `1h 30m`). A bare
/// number is refused rather than guessed: `--expires-in 90` meaning 90
/// seconds once cost a key, so the unit is always written out.
pub(super) fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    if text.starts_with('-') {
        return Err("a duration cannot be negative".to_owned());
    }
    if text.is_empty() {
        return Err("a duration is needed, e.g. 45s, 30m, 12h or 90d".to_owned());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit: did you mean {text}d, {text}h, {text}m or {text}s?"
        ));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{e} (use a number and a unit: s, m, h or d, e.g. 45s, 30m, 12h or 90d)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_comma_separated_and_the_space_form_is_refused_with_it() {
        assert_eq!(
            comma_list("reports:read, webhooks:write").unwrap(),
            "reports:read,webhooks:write"
        );
        assert_eq!(comma_list("").unwrap(), "");
        assert_eq!(
            comma_list("reports:read webhooks:write").unwrap_err(),
            "a list is comma-separated: did you mean reports:read,webhooks:write?"
        );
        assert!(
            comma_list("10.0.0.0/8, 192.168.0.0/16 172.16.0.0/12")
                .unwrap_err()
                .contains("did you mean 10.0.0.0/8,192.168.0.0/16,172.16.0.0/12?")
        );
    }

    #[test]
    fn a_switch_given_a_value_names_the_switch_meant() {
        let switches: Vec<String> = ["require-dpop", "no-require-dpop", "sigv4", "json"]
            .map(String::from)
            .to_vec();
        let check = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            switch_given_a_value(&args, &switches)
        };
        // args → what the message must say (None: not refused)
        let table: [(&[&str], Option<&str>); 8] = [
            (
                &["key", "update", "K", "--require-dpop", "false"],
                Some("did you mean --no-require-dpop?"),
            ),
            (
                &["key", "update", "K", "--require-dpop", "TRUE"],
                Some("did you mean --require-dpop?"),
            ),
            (
                &["key", "update", "K", "--require-dpop=false"],
                Some("`--require-dpop=false`"),
            ),
            (
                &["key", "update", "K", "--no-require-dpop", "no"],
                Some("did you mean --require-dpop?"),
            ),
            (
                &["key", "create", "--sigv4", "off"],
                Some("did you mean no --sigv4 at all?"),
            ),
            (&["key", "update", "K", "--require-dpop"], None),
            (&["key", "update", "--require-dpop", "K"], None),
            (&["key", "create", "--name", "--", "--sigv4", "true"], None),
        ];
        for (args, message) in table {
            match (check(args), message) {
                (None, None) => {}
                (Some(text), Some(message)) => assert!(text.contains(message), "{args:?}: {text}"),
                (got, _) => panic!("{args:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn durations_need_a_unit_and_cannot_be_negative() {
        assert_eq!(parse_duration("600s").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(
            parse_duration("90")
                .unwrap_err()
                .contains("did you mean 90d")
        );
        assert!(parse_duration("0").unwrap_err().contains("0s"));
        assert_eq!(
            parse_duration("-5d").unwrap_err(),
            "a duration cannot be negative"
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }
}
