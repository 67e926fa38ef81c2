//! What the admin commands' arguments mean: durations with their unit,
//! rates, labels, allow-lists.

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

/// `name=value` labels as typed on the command line.
pub(super) fn label_pairs(raw: &[String]) -> Result<Vec<(String, String)>, CliError> {
    raw.iter()
        .map(|label| {
            KeyLabels::parse_assignment(label)
                .map_err(|e| CliError::Service(ServiceError::Invalid(e.to_string())))
        })
        .collect()
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
