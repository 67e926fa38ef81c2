//! How the long commands (backup, restore, master-key rotate, migrate) show
//! their progress: a bar with counts, rate and time left when stderr is a
//! terminal; otherwise a plain line when the work starts, every
//! [`LINE_EVERY`] while it runs and when it ends (what a log collector or
//! `systemd` keeps); nothing at all with `--json`, whose stdout is one
//! document and whose stderr stays quiet.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

/// How often a plain progress line is printed while work runs.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Progress of one command: `label` names the work (`backup`), `unit` what
/// is counted (`pages`).
pub(super) struct Reporter {
    label: &'static str,
    unit: &'static str,
    kind: Kind,
}

enum Kind {
    Bar(ProgressBar),
    Lines(Mutex<Lines>),
    Silent,
}

struct Lines {
    started: Instant,
    last_line: Option<Instant>,
    ended: bool,
}

impl Reporter {
    pub(super) fn new(json: bool, label: &'static str, unit: &'static str) -> Self {
        let kind = if json {
            Kind::Silent
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let template = format!(
                "{label} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            Kind::Bar(bar)
        } else {
            Kind::Lines(Mutex::new(Lines {
                started: Instant::now(),
                last_line: None,
                ended: false,
            }))
        };
        Reporter { label, unit, kind }
    }

    /// Clears the bar; the command prints its result next.
    pub(super) fn finish(&self) {
        if let Kind::Bar(bar) = &self.kind {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn update(&self, done: u64, total: u64) {
        match &self.kind {
            Kind::Silent => {}
            Kind::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            Kind::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                // Nothing to do is not worth a line.
                if total == 0 || lines.ended {
                    return;
                }
                let now = Instant::now();
                let end = done >= total;
                let due = match lines.last_line {
                    None => true,
                    Some(last) => now.duration_since(last) >= LINE_EVERY,
                };
                if !(end || due) {
                    return;
                }
                let line = plain_line(
                    self.label,
                    self.unit,
                    done,
                    total,
                    now.duration_since(lines.started),
                );
                lines.last_line = Some(now);
                lines.ended = end;
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        }
    }
}

/// `backup: 512/2048 pages (25%), 1024 pages/s, about 2s left`, or, at the
/// end, `backup: 2048/2048 pages (100%) in 1.5s`.
fn plain_line(label: &str, unit: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    let head = format!("{label}: {done}/{total} {unit} ({percent}%)");
    let seconds = elapsed.as_secs_f64();
    if done >= total {
        return format!("{head} in {seconds:.1}s");
    }
    if done == 0 || seconds < 0.001 {
        return head;
    }
    let rate = done as f64 / seconds;
    let left = (total - done) as f64 / rate;
    format!("{head}, {rate:.0} {unit}/s, about {left:.0}s left")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_give_counts_rate_and_time_left() {
        let second = Duration::from_secs(1);
        assert_eq!(
            plain_line("backup", "pages", 0, 2048, Duration::ZERO),
            "backup: 0/2048 pages (0%)"
        );
        assert_eq!(
            plain_line("backup", "pages", 512, 2048, second),
            "backup: 512/2048 pages (25%), 512 pages/s, about 3s left"
        );
        assert_eq!(
            plain_line("restore", "bytes", 10, 10, second * 2),
            "restore: 10/10 bytes (100%) in 2.0s"
        );
    }
}
