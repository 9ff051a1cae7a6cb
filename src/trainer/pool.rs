//! Reference models as resources: the checkpoint pool (theta_0 plus the newest K snapshots of the policy) and
//! the per-step choice of a reference by the objective's declared strategy.

use crate::check::{Draw, Strategy};
use crate::device::Backend;
use crate::model::{Dit, Ema};
use rand::Rng;

/// Where a reference's weights come from for one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// Pool entry `k` (0 is the initial model theta_0).
    Pool(usize),
    /// The EMA of the policy kept for the reference with this index.
    Ema(usize),
}

/// theta_0 and the newest `keep` policy snapshots, taken every `every` updates.
pub struct CheckpointPool<D: Backend> {
    /// `entries[0]` is theta_0 and never leaves; then snapshots, oldest first.
    pub entries: Vec<Dit<D>>,
    /// Optimizer step at which each entry was taken.
    pub steps: Vec<usize>,
    every: usize,
    keep: usize,
}

impl<D: Backend> CheckpointPool<D> {
    /// A pool holding only the initial model; `every`/`keep` of 0 mean "never snapshot".
    pub fn new(initial: Dit<D>, every: usize, keep: usize) -> Self {
        CheckpointPool { entries: vec![initial], steps: vec![0], every, keep }
    }

    /// After update number `step` (1-based): snapshot the policy when `step` is a multiple of `every`, evicting
    /// the oldest snapshot (never theta_0) beyond `keep`. Returns whether a snapshot was taken.
    pub fn after_update(&mut self, step: usize, policy: &Dit<D>) -> bool {
        if self.every == 0 || !step.is_multiple_of(self.every) {
            return false;
        }
        self.entries.push(policy.clone());
        self.steps.push(step);
        while self.entries.len() > self.keep + 1 {
            self.entries.remove(1);
            self.steps.remove(1);
        }
        true
    }

    /// Number of models a reference can be drawn from.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never empty (theta_0 is always there).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Chooses the slot of each of `batch` samples for a reference with `strategy` (reference number `index`).
pub fn choose(strategy: Strategy, index: usize, pool_len: usize, batch: usize, rng: &mut impl Rng) -> Vec<Slot> {
    match strategy {
        Strategy::Initial => vec![Slot::Pool(0); batch],
        Strategy::Latest => vec![Slot::Pool(pool_len - 1); batch],
        Strategy::Uniform(Draw::Step) => vec![Slot::Pool(rng.gen_range(0..pool_len)); batch],
        Strategy::Uniform(Draw::Sample) => (0..batch).map(|_| Slot::Pool(rng.gen_range(0..pool_len))).collect(),
        Strategy::Ema { .. } => vec![Slot::Ema(index); batch],
    }
}

/// The model behind a slot.
pub fn model<'a, D: Backend>(slot: Slot, pool: &'a CheckpointPool<D>, emas: &'a [Option<Ema<D>>]) -> &'a Dit<D> {
    match slot {
        Slot::Pool(k) => &pool.entries[k],
        Slot::Ema(r) => emas[r].as_ref().map_or(&pool.entries[0], Ema::model),
    }
}

/// Groups sample indices by slot, in slot order (so each model runs once per image kind).
pub fn groups(slots: &[Slot]) -> Vec<(Slot, Vec<usize>)> {
    let mut out: Vec<(Slot, Vec<usize>)> = Vec::new();
    let mut sorted: Vec<(Slot, usize)> = slots.iter().copied().zip(0..).collect();
    sorted.sort();
    for (slot, i) in sorted {
        match out.last_mut() {
            Some((s, v)) if *s == slot => v.push(i),
            _ => out.push((slot, vec![i])),
        }
    }
    out
}
