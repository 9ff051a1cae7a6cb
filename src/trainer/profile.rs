//! Where a training step spends its wall time, phase by phase, summed over the steps of a run (`seppoc run
//! --profile`). Kept out of `StepReport` so metrics lines stay free of wall time (bitwise-identical resumes).
//!
//! On CUDA, dfdx queues kernels asynchronously and a phase's time ends at its last host read (every phase reads
//! a result back: errors, the loss, the gradient norm, the weights' check), so the split is close but not exact.

use std::time::{Duration, Instant};

/// The phases of one step, in order.
pub const PHASES: [&str; 8] = [
    "data and reference choice",
    "reference sampling",
    "noising",
    "reference passes",
    "policy pass (taped)",
    "loss graph",
    "backward and clipping",
    "optimizer, EMA and pool",
];

/// Wall time per phase, summed over steps.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Profile {
    /// Steps measured.
    pub steps: usize,
    /// Seconds per phase (same order as [`PHASES`]), summed over the steps.
    pub seconds: [f64; PHASES.len()],
}

impl Profile {
    /// Each phase's mean milliseconds per step and share of the step, as `(name, ms, fraction)`.
    pub fn per_step(&self) -> Vec<(&'static str, f64, f64)> {
        let total: f64 = self.seconds.iter().sum();
        PHASES
            .iter()
            .zip(self.seconds)
            .map(|(name, s)| (*name, 1e3 * s / self.steps.max(1) as f64, s / total.max(f64::MIN_POSITIVE)))
            .collect()
    }

    /// Mean milliseconds of a whole step.
    pub fn step_ms(&self) -> f64 {
        1e3 * self.seconds.iter().sum::<f64>() / self.steps.max(1) as f64
    }
}

/// Times the phases of one step: each [`Lap::next`] closes the current phase.
pub(super) struct Lap {
    last: Instant,
    phase: usize,
    spent: [Duration; PHASES.len()],
}

impl Lap {
    pub(super) fn start() -> Self {
        Lap { last: Instant::now(), phase: 0, spent: [Duration::ZERO; PHASES.len()] }
    }

    /// Ends the current phase (the next one starts now).
    pub(super) fn next(&mut self) {
        let now = Instant::now();
        if let Some(s) = self.spent.get_mut(self.phase) {
            *s += now - self.last;
        }
        self.last = now;
        self.phase += 1;
    }

    /// Adds this step's phases to `into`.
    pub(super) fn finish(mut self, into: &mut Profile) {
        while self.phase < PHASES.len() {
            self.next();
        }
        into.steps += 1;
        for (total, d) in into.seconds.iter_mut().zip(self.spent) {
            *total += d.as_secs_f64();
        }
    }
}
