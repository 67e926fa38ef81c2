//! A key's request rate for the report and webhook APIs: so many requests
//! per period, of which up to `burst` may arrive at once. Parsed from the
//! API's JSON (`{"requests": 600, "per_seconds": 60, "burst": 100}`) and
//! from the CLI (`--rate 600/min --burst 100`); zero, negative and absurd
//! values are refused with a message that says which and why.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most requests one period may allow.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// The longest period: a day. A rate over longer periods is a quota, which
/// this is not.
pub const MAX_PERIOD_SECONDS: u32 = 86_400;
/// The most requests allowed at once. Bounded so the limiter's arithmetic
/// stays exact (Redis runs the script on doubles: microsecond times stay
/// integers below 2^53 with a day's period and this burst).
pub const MAX_BURST: u32 = 10_000;

/// Why a rate was refused; said to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RateLimitError(String);

/// The period a rate counts over, in whole seconds (1 to a day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period(u32);

impl Period {
    pub fn from_seconds(seconds: i64) -> Result<Self, RateLimitError> {
        if seconds < 1 {
            return Err(RateLimitError(format!(
                "the period must be at least 1 second, not {seconds}"
            )));
        }
        if seconds > i64::from(MAX_PERIOD_SECONDS) {
            return Err(RateLimitError(format!(
                "the period may be at most {MAX_PERIOD_SECONDS} seconds (a day), not {seconds}"
            )));
        }
        Ok(Period(seconds as u32))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }

    /// `s`, `min`, `h` or `d`, optionally after a count (`10s`, `5min`).
    fn parse_cli(raw: &str) -> Result<Self, RateLimitError> {
        let digits = raw.chars().take_while(char::is_ascii_digit).count();
        let (count, unit) = raw.split_at(digits);
        let unit_seconds: i64 = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => {
                return Err(RateLimitError(format!(
                    "`{}` is not a period: use s, min, h or d (also sec, m, hour, day), \
                     optionally with a count, e.g. 600/min, 100/10s, 5000/h or 100000/d",
                    preview(raw)
                )));
            }
        };
        let count: i64 = if count.is_empty() {
            1
        } else {
            count
                .parse()
                .map_err(|_| RateLimitError(format!("`{}` is not a period", preview(raw))))?
        };
        Period::from_seconds(count.saturating_mul(unit_seconds))
    }
}

/// So many requests per period, up to `burst` of them at once, then one
/// every `period / requests` (GCRA: a token bucket of `burst` tokens
/// refilled at the rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RateLimitFields", into = "RateLimitFields")]
pub struct RateLimit {
    requests: u32,
    per: Period,
    burst: u32,
}

/// The JSON shape, also the `kp_rl` claim's. Signed integers, so a negative
/// value is answered with what is wrong rather than a type error.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFields {
    requests: i64,
    per_seconds: i64,
    #[serde(default)]
    burst: Option<i64>,
}

impl TryFrom<RateLimitFields> for RateLimit {
    type Error = RateLimitError;
    fn try_from(fields: RateLimitFields) -> Result<Self, RateLimitError> {
        RateLimit::new(fields.requests, fields.per_seconds, fields.burst)
    }
}

impl From<RateLimit> for RateLimitFields {
    fn from(limit: RateLimit) -> Self {
        RateLimitFields {
            requests: i64::from(limit.requests),
            per_seconds: i64::from(limit.per.0),
            burst: Some(i64::from(limit.burst)),
        }
    }
}

impl RateLimit {
    /// `requests` per `per_seconds`, `burst` at once (default: `requests`,
    /// at most [`MAX_BURST`]: the whole period's allowance may come at once).
    pub fn new(
        requests: i64,
        per_seconds: i64,
        burst: Option<i64>,
    ) -> Result<Self, RateLimitError> {
        if requests < 1 {
            return Err(RateLimitError(format!(
                "a rate must allow at least 1 request per period, not {requests} \
                 (to stop a key, disable or revoke it)"
            )));
        }
        if requests > i64::from(MAX_REQUESTS) {
            return Err(RateLimitError(format!(
                "a rate may allow at most {MAX_REQUESTS} requests per period, not {requests}"
            )));
        }
        let per = Period::from_seconds(per_seconds)?;
        let limit = RateLimit {
            requests: requests as u32,
            per,
            burst: (requests as u32).min(MAX_BURST),
        };
        match burst {
            None => Ok(limit),
            Some(burst) => limit.with_burst(burst),
        }
    }

    /// The same rate with another burst.
    pub fn with_burst(self, burst: i64) -> Result<Self, RateLimitError> {
        if burst < 1 {
            return Err(RateLimitError(format!(
                "the burst must allow at least 1 request, not {burst}"
            )));
        }
        if burst > i64::from(MAX_BURST) {
            return Err(RateLimitError(format!(
                "the burst may be at most {MAX_BURST} requests, not {burst}"
            )));
        }
        Ok(RateLimit {
            burst: burst as u32,
            ..self
        })
    }

    /// The CLI's `600/min`, `100/10s`, `5000/h` (`s`, `min`, `h`, `d`),
    /// with the default burst.
    pub fn parse_cli(raw: &str) -> Result<Self, RateLimitError> {
        let Some((requests, period)) = raw.trim().split_once('/') else {
            return Err(RateLimitError(format!(
                "`{}` is not a rate: write REQUESTS/PERIOD, e.g. 600/min, 100/10s or 5000/h",
                preview(raw)
            )));
        };
        let requests: i64 = requests.trim().parse().map_err(|_| {
            RateLimitError(format!(
                "`{}` is not a number of requests: write e.g. 600/min",
                preview(requests)
            ))
        })?;
        let per = Period::parse_cli(period.trim())?;
        RateLimit::new(requests, i64::from(per.seconds()), None)
    }

    /// Stored as three nullable columns: all set, or none (no rate).
    pub fn from_stored(
        requests: Option<i64>,
        per_seconds: Option<i64>,
        burst: Option<i64>,
    ) -> Result<Option<Self>, String> {
        match (requests, per_seconds, burst) {
            (None, None, None) => Ok(None),
            (Some(requests), Some(per), Some(burst)) => RateLimit::new(requests, per, Some(burst))
                .map(Some)
                .map_err(|e| format!("stored rate limit: {e}")),
            _ => Err("stored rate limit is partly set".to_owned()),
        }
    }

    /// `(requests, per_seconds, burst)` for the three columns.
    pub fn to_stored(self) -> (i64, i64, i64) {
        (
            i64::from(self.requests),
            i64::from(self.per.0),
            i64::from(self.burst),
        )
    }

    pub fn requests(self) -> u32 {
        self.requests
    }

    pub fn per(self) -> Period {
        self.per
    }

    pub fn per_seconds(self) -> u32 {
        self.per.0
    }

    pub fn burst(self) -> u32 {
        self.burst
    }

    /// The steady spacing between requests, in whole microseconds (at
    /// least 1): the GCRA's emission interval.
    pub fn interval_micros(self) -> u64 {
        (u64::from(self.per.0) * 1_000_000 / u64::from(self.requests)).max(1)
    }

    /// Whether this allows more than `ceiling`: a faster rate, or a larger
    /// burst.
    pub fn exceeds(self, ceiling: RateLimit) -> bool {
        let faster = u64::from(self.requests) * u64::from(ceiling.per.0)
            > u64::from(ceiling.requests) * u64::from(self.per.0);
        faster || self.burst > ceiling.burst
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests per {} s (burst {})",
            self.requests, self.per.0, self.burst
        )
    }
}

/// At most 40 characters of what was typed, for messages.
fn preview(raw: &str) -> String {
    raw.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_and_without_a_burst_parses() {
        let limit: RateLimit =
            serde_json::from_str(r#"{"requests": 600, "per_seconds": 60, "burst": 100}"#).unwrap();
        assert_eq!(
            (limit.requests(), limit.per_seconds(), limit.burst()),
            (600, 60, 100)
        );
        let limit: RateLimit =
            serde_json::from_str(r#"{"requests": 5, "per_seconds": 1}"#).unwrap();
        assert_eq!(limit.burst(), 5, "the burst defaults to the request count");
        let big = RateLimit::new(100_000, 3600, None).unwrap();
        assert_eq!(big.burst(), MAX_BURST, "…at most MAX_BURST");
        assert_eq!(
            serde_json::to_value(limit).unwrap(),
            serde_json::json!({"requests": 5, "per_seconds": 1, "burst": 5})
        );
    }

    #[test]
    fn zero_negative_and_absurd_values_are_refused_saying_which() {
        for (requests, per, burst, says) in [
            (0, 60, None, "at least 1 request per period, not 0"),
            (-5, 60, None, "not -5"),
            (1_000_001, 60, None, "at most 1000000 requests"),
            (10, 0, None, "at least 1 second, not 0"),
            (10, -60, None, "not -60"),
            (10, 86_401, None, "at most 86400 seconds"),
            (
                10,
                60,
                Some(0),
                "burst must allow at least 1 request, not 0",
            ),
            (10, 60, Some(-1), "not -1"),
            (10, 60, Some(10_001), "at most 10000"),
        ] {
            let err = RateLimit::new(requests, per, burst).expect_err("refused");
            assert!(
                err.to_string().contains(says),
                "{requests}/{per}/{burst:?}: {err}"
            );
        }
        let err = serde_json::from_str::<RateLimit>(r#"{"requests": 0, "per_seconds": 60}"#)
            .expect_err("refused");
        assert!(err.to_string().contains("at least 1 request"), "{err}");
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"requests": 1, "per_seconds": 1, "x": 1}"#)
                .is_err()
        );
    }

    #[test]
    fn the_cli_form_names_a_count_and_a_period() {
        for (raw, requests, per) in [
            ("600/min", 600, 60),
            ("10/s", 10, 1),
            ("100/10s", 100, 10),
            ("5000/h", 5000, 3600),
            (" 7 / 5min ", 7, 300),
            ("1/d", 1, 86_400),
        ] {
            let limit = RateLimit::parse_cli(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                (limit.requests(), limit.per_seconds()),
                (requests, per),
                "{raw}"
            );
        }
        for (raw, says) in [
            ("600", "not a rate"),
            ("600/fortnight", "not a period"),
            ("ten/min", "not a number of requests"),
            ("0/min", "at least 1 request"),
            ("-5/min", "not -5"),
            ("5/0s", "at least 1 second"),
            ("5/2d", "at most 86400 seconds"),
            ("5/99999999999999999999s", "not a period"),
        ] {
            let err = RateLimit::parse_cli(raw).expect_err(raw);
            assert!(err.to_string().contains(says), "{raw}: {err}");
        }
    }

    #[test]
    fn a_rate_exceeds_a_ceiling_when_faster_or_burstier() {
        let ceiling = RateLimit::new(600, 60, Some(100)).unwrap();
        let same_rate = RateLimit::new(10, 1, Some(100)).unwrap();
        assert!(!same_rate.exceeds(ceiling));
        assert!(RateLimit::new(11, 1, Some(10)).unwrap().exceeds(ceiling));
        assert!(RateLimit::new(60, 60, Some(101)).unwrap().exceeds(ceiling));
        assert!(
            !RateLimit::new(3000, 3600, Some(50))
                .unwrap()
                .exceeds(ceiling)
        );
    }

    #[test]
    fn stored_columns_are_all_set_or_none() {
        assert_eq!(RateLimit::from_stored(None, None, None), Ok(None));
        let limit = RateLimit::new(600, 60, Some(100)).unwrap();
        let (r, p, b) = limit.to_stored();
        assert_eq!(
            RateLimit::from_stored(Some(r), Some(p), Some(b)),
            Ok(Some(limit))
        );
        assert!(RateLimit::from_stored(Some(1), None, None).is_err());
        assert!(RateLimit::from_stored(Some(0), Some(1), Some(1)).is_err());
    }

    #[test]
    fn the_interval_is_whole_microseconds_and_never_zero() {
        assert_eq!(
            RateLimit::new(600, 60, None).unwrap().interval_micros(),
            100_000
        );
        assert_eq!(
            RateLimit::new(7, 1, None).unwrap().interval_micros(),
            142_857
        );
        assert_eq!(
            RateLimit::new(1_000_000, 1, None)
                .unwrap()
                .interval_micros(),
            1
        );
    }
}
