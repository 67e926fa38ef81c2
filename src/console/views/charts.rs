//! Usage drawn on the server: a key's chart (bars stacked by outcome, an
//! SVG with a `<title>` and `<desc>`, and the same figures in a table) and
//! the key list's 7-day sparklines. No script draws anything.

use chrono::DateTime;

use crate::domain::UnixTime;
use crate::service::key_usage::{UsageBucket, UsageCounts};

/// The outcomes a bar stacks, bottom up: (field, label).
pub const OUTCOMES: [(&str, &str); 5] = [
    ("tokens_issued", "Tokens issued"),
    ("direct_uses", "Secret used directly"),
    ("sigv4_uses", "Signed requests"),
    ("token_uses", "Calls with its tokens"),
    ("refused", "Refused"),
];

fn count_of(counts: &UsageCounts, outcome: &str) -> u64 {
    match outcome {
        "tokens_issued" => counts.tokens_issued,
        "direct_uses" => counts.direct_uses,
        "sigv4_uses" => counts.sigv4_uses,
        "token_uses" => counts.token_uses,
        _ => counts.refused,
    }
}

/// The period a key page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(raw: Option<&str>) -> Self {
        match raw {
            Some("7d") => Period::Week,
            Some("30d") => Period::Month,
            _ => Period::Day,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Period::Day => "24h",
            Period::Week => "7d",
            Period::Month => "30d",
        }
    }

    /// Buckets shown, and their length in seconds.
    pub fn buckets(self) -> (i64, i64) {
        match self {
            Period::Day => (24, 3600),
            Period::Week => (7, 86_400),
            Period::Month => (30, 86_400),
        }
    }

    /// The first bucket's start, for a page read at `at`.
    pub fn from(self, at: UnixTime) -> UnixTime {
        let (count, length) = self.buckets();
        let current = at - at.rem_euclid(length);
        current - (count - 1) * length
    }

    pub fn granularity(self) -> &'static str {
        match self {
            Period::Day => "hour",
            _ => "day",
        }
    }
}

pub struct Segment {
    pub outcome: &'static str,
    pub count: u64,
    pub y: u64,
    pub height: u64,
}

pub struct Bar {
    pub start: UnixTime,
    pub x: u64,
    pub width: u64,
    pub title: String,
    pub segments: Vec<Segment>,
}

/// One row of the chart's table: a bucket with any activity.
pub struct ChartRow {
    pub label: String,
    pub iso: String,
    pub counts: Vec<u64>,
}

pub struct Chart {
    pub width: u64,
    pub height: u64,
    pub bars: Vec<Bar>,
    pub rows: Vec<ChartRow>,
    pub totals: Vec<u64>,
    /// The tallest bar, for the axis label.
    pub max: u64,
    pub title: String,
    pub desc: String,
    pub outcomes: [(&'static str, &'static str); 5],
}

const WIDTH: u64 = 720;
const HEIGHT: u64 = 180;
/// Room above the bars for the scale.
const TOP: u64 = 16;

fn bucket_label(start: UnixTime, period: Period) -> String {
    let at = DateTime::from_timestamp(start, 0).unwrap_or_default();
    match period {
        Period::Day => at.format("%Y-%m-%d %H:00 UTC").to_string(),
        _ => at.format("%Y-%m-%d").to_string(),
    }
}

impl Chart {
    /// The chart of `buckets` (those with activity, any order) over
    /// `period` ending at `at`.
    pub fn of(buckets: &[UsageBucket], period: Period, at: UnixTime) -> Self {
        let (count, length) = period.buckets();
        let from = period.from(at);
        let slot_width = WIDTH / count as u64;
        let slots: Vec<(UnixTime, UsageCounts)> = (0..count)
            .map(|i| {
                let start = from + i * length;
                let counts = buckets
                    .iter()
                    .filter(|b| b.start >= start && b.start < start + length)
                    .fold(UsageCounts::default(), |mut sum, b| {
                        for (outcome, _) in OUTCOMES {
                            add(&mut sum, outcome, count_of(&b.counts, outcome));
                        }
                        sum
                    });
                (start, counts)
            })
            .collect();
        let height_of = |c: &UsageCounts| OUTCOMES.iter().map(|(o, _)| count_of(c, o)).sum::<u64>();
        let max = slots.iter().map(|(_, c)| height_of(c)).max().unwrap_or(0);
        let scale = |n: u64| (n * (HEIGHT - TOP)).checked_div(max).unwrap_or(0);
        let mut totals = vec![0; OUTCOMES.len()];
        let mut rows = Vec::new();
        let mut bars = Vec::new();
        for (i, (start, counts)) in slots.iter().enumerate() {
            let figures: Vec<u64> = OUTCOMES.iter().map(|(o, _)| count_of(counts, o)).collect();
            for (total, n) in totals.iter_mut().zip(&figures) {
                *total += n;
            }
            let label = bucket_label(*start, period);
            let mut segments = Vec::new();
            let mut stacked = 0;
            for ((outcome, _), n) in OUTCOMES.iter().zip(&figures) {
                if *n == 0 {
                    continue;
                }
                let bottom = HEIGHT - scale(stacked);
                stacked += n;
                let top = HEIGHT - scale(stacked);
                segments.push(Segment {
                    outcome,
                    count: *n,
                    y: top,
                    height: (bottom - top).max(1),
                });
            }
            let summary = OUTCOMES
                .iter()
                .zip(&figures)
                .filter(|(_, n)| **n > 0)
                .map(|((_, l), n)| format!("{l}: {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            if figures.iter().any(|n| *n > 0) {
                rows.push(ChartRow {
                    label: label.clone(),
                    iso: DateTime::from_timestamp(*start, 0)
                        .unwrap_or_default()
                        .to_rfc3339(),
                    counts: figures.clone(),
                });
            }
            bars.push(Bar {
                start: *start,
                x: i as u64 * slot_width,
                width: slot_width.saturating_sub(2).max(1),
                title: if summary.is_empty() {
                    format!("{label}: no use")
                } else {
                    format!("{label}: {summary}")
                },
                segments,
            });
        }
        let period_words = match period {
            Period::Day => "the last 24 hours, by hour",
            Period::Week => "the last 7 days, by day",
            Period::Month => "the last 30 days, by day",
        };
        let desc = OUTCOMES
            .iter()
            .zip(&totals)
            .map(|((_, l), n)| format!("{l}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Chart {
            width: WIDTH,
            height: HEIGHT,
            bars,
            rows,
            totals,
            max,
            title: format!("Use over {period_words}"),
            desc: format!("In total: {desc}. The table below gives every figure."),
            outcomes: OUTCOMES,
        }
    }
}

fn add(sum: &mut UsageCounts, outcome: &str, n: u64) {
    match outcome {
        "tokens_issued" => sum.tokens_issued += n,
        "direct_uses" => sum.direct_uses += n,
        "sigv4_uses" => sum.sigv4_uses += n,
        "token_uses" => sum.token_uses += n,
        _ => sum.refused += n,
    }
}

/// A 7-day sparkline: one bar a day, refusals drawn on top in their colour.
pub struct Sparkline {
    pub bars: Vec<(u64, u64, u64, u64)>,
    pub label: String,
    pub total: u64,
}

impl Sparkline {
    pub const HEIGHT: u64 = 20;

    /// From the key's daily buckets over the 7 days ending at `at`.
    pub fn of(buckets: &[UsageBucket], at: UnixTime) -> Self {
        let from = Period::Week.from(at);
        let days: Vec<(u64, u64)> = (0..7)
            .map(|i| {
                let start = from + i * 86_400;
                buckets
                    .iter()
                    .filter(|b| b.start >= start && b.start < start + 86_400)
                    .fold((0, 0), |(used, refused), b| {
                        let c = &b.counts;
                        (
                            used + c.tokens_issued + c.direct_uses + c.sigv4_uses + c.token_uses,
                            refused + c.refused,
                        )
                    })
            })
            .collect();
        let max = days.iter().map(|(u, r)| u + r).max().unwrap_or(0);
        let scale = |n: u64| (n * Self::HEIGHT).checked_div(max).unwrap_or(0);
        let bars = days
            .iter()
            .enumerate()
            .map(|(i, (used, refused))| {
                let total = scale(used + refused).max(u64::from(used + refused > 0));
                let refused_height = scale(*refused).max(u64::from(*refused > 0)).min(total);
                (i as u64 * 10, Self::HEIGHT - total, total, refused_height)
            })
            .collect();
        let words = days
            .iter()
            .map(|(u, r)| {
                if *r > 0 {
                    format!("{u} ({r} refused)")
                } else {
                    u.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Sparkline {
            bars,
            label: format!("Requests per day over the last 7 days: {words}"),
            total: days.iter().map(|(u, r)| u + r).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_800_000_000;

    fn bucket(start: i64, issued: u64, refused: u64) -> UsageBucket {
        UsageBucket {
            start,
            counts: UsageCounts {
                tokens_issued: issued,
                refused,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_chart_the_table_and_the_totals_carry_the_same_figures() {
        let hour = AT - AT.rem_euclid(3600);
        let chart = Chart::of(
            &[bucket(hour, 7, 2), bucket(hour - 3600, 3, 0)],
            Period::Day,
            AT,
        );
        assert_eq!(chart.bars.len(), 24);
        let drawn = |outcome: &str| -> u64 {
            chart
                .bars
                .iter()
                .flat_map(|b| &b.segments)
                .filter(|s| s.outcome == outcome)
                .map(|s| s.count)
                .sum()
        };
        assert_eq!(drawn("tokens_issued"), 10);
        assert_eq!(drawn("refused"), 2);
        assert_eq!(chart.totals[0], 10);
        assert_eq!(chart.totals[4], 2);
        assert_eq!(chart.rows.len(), 2);
        assert_eq!(chart.max, 9);
        // The tallest bar fills the height below the scale.
        let last = chart.bars.last().unwrap();
        assert_eq!(last.segments.last().unwrap().y, TOP);
        assert!(chart.desc.contains("Tokens issued: 10"));
    }

    #[test]
    fn an_idle_period_draws_empty_bars_and_no_rows() {
        for period in [Period::Day, Period::Week, Period::Month] {
            let chart = Chart::of(&[], period, AT);
            assert_eq!(chart.bars.len() as i64, period.buckets().0);
            assert!(chart.rows.is_empty());
            assert!(chart.bars.iter().all(|b| b.segments.is_empty()));
        }
    }

    #[test]
    fn a_sparkline_has_seven_days_and_says_them_in_words() {
        let today = AT - AT.rem_euclid(86_400);
        let line = Sparkline::of(&[bucket(today, 4, 1), bucket(today - 6 * 86_400, 1, 0)], AT);
        assert_eq!(line.bars.len(), 7);
        assert_eq!(line.total, 6);
        assert!(
            line.label.ends_with("1, 0, 0, 0, 0, 0, 4 (1 refused)"),
            "{}",
            line.label
        );
        assert_eq!(line.bars[6].2, Sparkline::HEIGHT);
    }
}
