//! Progress of a long loop: a bar on a terminal, or periodic plain lines (step, loss, rate, ETA) handed to a
//! sink (the command line writes them to stderr) when there is no terminal: CI, `nohup`, a log file.

use indicatif::ProgressBar;
use std::time::{Duration, Instant};

/// Where progress goes.
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Plain>,
}

struct Plain {
    what: String,
    every: Duration,
    sink: Box<dyn FnMut(&str) + Send>,
    started: Instant,
    last: Option<Instant>,
    first_pos: u64,
    pos: u64,
    len: u64,
}

impl Progress {
    /// No progress at all (a library caller that wants none).
    pub fn hidden() -> Self {
        Progress { bar: ProgressBar::hidden(), plain: None }
    }

    /// An indicatif bar (a terminal).
    pub fn bar(bar: ProgressBar) -> Self {
        Progress { bar, plain: None }
    }

    /// Plain lines `WHAT step S/N  loss L  R steps/s  ETA T` at most every `every` (and at the first step), each
    /// handed to `sink`.
    pub fn lines(what: &str, every: Duration, sink: Box<dyn FnMut(&str) + Send>) -> Self {
        let plain = Plain {
            what: what.to_string(),
            every,
            sink,
            started: Instant::now(),
            last: None,
            first_pos: 0,
            pos: 0,
            len: 0,
        };
        Progress { bar: ProgressBar::hidden(), plain: Some(plain) }
    }

    /// Sets where the loop starts (`pos`, e.g. a resumed step) and where it ends (`len`), in steps.
    pub fn set_range(&mut self, pos: u64, len: u64) {
        self.bar.set_length(len.saturating_sub(pos));
        if let Some(p) = &mut self.plain {
            (p.first_pos, p.pos, p.len, p.started) = (pos, pos, len, Instant::now());
        }
    }

    /// One step done with this loss.
    pub fn step(&mut self, loss: f64) {
        self.bar.set_message(format!("loss {loss:.4}"));
        self.bar.inc(1);
        let Some(p) = &mut self.plain else { return };
        if let Some((rate, eta)) = p.tick(1) {
            let line = format!("{} step {}/{}  loss {loss:.4}  {rate:.2} steps/s  ETA {eta}", p.what, p.pos, p.len);
            (p.sink)(&line);
        }
    }

    /// `n` more `unit`s done (samples, images): plain lines `WHAT N/TOTAL UNIT  R UNIT/s  ETA T`.
    pub fn advance(&mut self, n: u64, unit: &str) {
        self.bar.inc(n);
        let Some(p) = &mut self.plain else { return };
        if let Some((rate, eta)) = p.tick(n) {
            let line = format!("{} {}/{} {unit}  {rate:.2} {unit}/s  ETA {eta}", p.what, p.pos, p.len);
            (p.sink)(&line);
        }
    }

    /// Runs `f` with the bar out of the way (for work that prints or takes long between two steps).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// The loop ended (finished or stopped): clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Plain {
    /// Moves on by `n`; the rate and the ETA when a line is due (the first, every `every`, and the last).
    fn tick(&mut self, n: u64) -> Option<(f64, String)> {
        self.pos += n;
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < self.every) && self.pos < self.len {
            return None;
        }
        self.last = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-9);
        let rate = (self.pos - self.first_pos) as f64 / secs;
        let eta = if rate > 0.0 { self.len.saturating_sub(self.pos) as f64 / rate } else { 0.0 };
        Some((rate, clock(eta)))
    }
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
