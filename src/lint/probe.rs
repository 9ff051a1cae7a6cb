//! W0306: the objective's training direction, probed on the f64 oracle ([`crate::ir::evaluate`]). The checker's
//! types cannot see a backwards objective (`logratio` with its models swapped elsewhere, a margin's sign flipped,
//! a negated loss): every such file is well typed. Its gradient shows it: on random leaf values near the first
//! update (the policy close to its reference) the loss of a preference objective falls when the policy's error on
//! the preferred images falls, and does not fall when its error on the dispreferred images falls.
//!
//! What is probed, per data kind (the "winners" are the images the objective is meant to prefer):
//! - `data pairs`: `winner` (preferred) and `loser` (dispreferred), `label` 1 (decided comparisons);
//! - `data winners`: `winner` only; reference samples (`sample(...)`) are not classified, since a gate may treat
//!   them as losers or as second winners (SePPO);
//! - `data labelled`: `image` with label 1 (preferred) and with label 0 (dispreferred), half of each batch;
//! - online objectives, which read the reward of their generated images (`reward(x)` of a `sample(...)`): each
//!   row of `x` by its reward, above its group's mean preferred, below it dispreferred.
//!
//! The directional derivative is the f64 oracle's reverse-mode gradient summed over the policy's `err` leaves of
//! one class (every draw), so it is the direction the first optimizer step takes. `dist` leaves count only for the
//! "depends on the policy" test.

use crate::check::{DataKind, Noise};
use crate::ir::{evaluate, Bound, Datum, ImageRef, LeafValues, ModelRef, TimeQty, View};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Random batches probed.
pub const PROBES: usize = 300;
/// Samples per probed batch (more than one, so batch means and `stopgrad(mean(...))` baselines take part); an
/// objective with `group = K` is probed on `BATCH` groups of K rows ([`rows`]).
pub const BATCH: usize = 4;
/// Every `EQUAL_EVERY`-th batch has every reference error equal to the policy's: the first update.
pub const EQUAL_EVERY: usize = 4;
/// Relative spread of a reference's error around the policy's on the other batches.
pub const REF_SPREAD: f64 = 1e-3;
/// Range of the policy's per-sample errors (log-uniform): per-element MSEs of a trained denoiser.
pub const ERR_RANGE: (f64, f64) = (0.02, 0.5);
const SEED: u64 = 0x5E99_0C0B_E5C0_0001;

/// What the probe found, with its counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Batches whose loss and gradients were finite (the others are left out of every count).
    pub finite: usize,
    /// Batches where lowering the policy's error on the preferred images raised the loss (`None`: no such leaf).
    pub winners_raise: Option<usize>,
    /// Batches where lowering the policy's error on the dispreferred images lowered the loss (`None`: none).
    pub losers_lower: Option<usize>,
    /// Batches where some policy leaf had a nonzero gradient.
    pub depends: usize,
}

impl Probe {
    /// Whether more than half of the finite batches saw the loss push the preferred images away.
    pub fn pushes_winners(&self) -> bool {
        self.winners_raise.is_some_and(|n| 2 * n > self.finite)
    }

    /// Whether more than half of the finite batches saw the loss pull the dispreferred images in.
    pub fn pulls_losers(&self) -> bool {
        self.losers_lower.is_some_and(|n| 2 * n > self.finite)
    }

    /// Whether no policy leaf had a gradient on any finite batch.
    pub fn independent(&self) -> bool {
        self.finite > 0 && self.depends == 0
    }
}

/// Which class a policy error leaf of sample `i` belongs to: +1 preferred, -1 dispreferred, 0 neither.
fn class(data: DataKind, images: ImageRef, label: f64) -> i8 {
    match (data, images) {
        (DataKind::Labelled, ImageRef::Image) if label == 1.0 => 1,
        (DataKind::Labelled, ImageRef::Image) if label == 0.0 => -1,
        (DataKind::Pairs | DataKind::Winners, ImageRef::Winner) => 1,
        (DataKind::Pairs, ImageRef::Loser) => -1,
        _ => 0,
    }
}

/// The datum index of the reward of generated images `images`, when the objective reads it (an online
/// objective, whose preferred images are its higher-reward samples).
pub(crate) fn scored(obj: &Bound, images: ImageRef) -> Option<usize> {
    match images {
        ImageRef::Sample(_) => obj.datums.iter().position(|d| *d == Datum::Reward(images)),
        _ => None,
    }
}

/// The class of row `i` of generated images by its reward: +1 above its group's mean (preferred), -1 below, 0
/// at it. Without groups (K = 1) the group is the batch.
pub(crate) fn online_class(rewards: &[f64], group: usize, i: usize) -> i8 {
    let k = if group > 1 { group } else { rewards.len() };
    let start = i / k * k;
    let block = &rewards[start..(start + k).min(rewards.len())];
    let mean = block.iter().sum::<f64>() / block.len() as f64;
    match rewards[i].partial_cmp(&mean) {
        Some(std::cmp::Ordering::Greater) => 1,
        Some(std::cmp::Ordering::Less) => -1,
        _ => 0,
    }
}

/// The label of sample `i`: 1 for pairs (decided comparisons), alternating 1, 0 for labelled data.
fn label(data: DataKind, i: usize) -> f64 {
    match data {
        DataKind::Labelled if i % 2 == 1 => 0.0,
        _ => 1.0,
    }
}

/// Rows of a probed batch: [`BATCH`] prompts, each with the objective's group of K rows.
pub fn rows(obj: &Bound) -> usize {
    BATCH * obj.group() as usize
}

/// Probes the bound objective on [`PROBES`] random batches.
pub fn probe(obj: &Bound) -> Probe {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut out = Probe { finite: 0, winners_raise: None, losers_lower: None, depends: 0 };
    // Generated images whose reward the objective reads are classified per batch by that reward (both classes
    // then occur: the rewards of a group are drawn at random).
    let has = |c: i8| {
        obj.inputs.iter().any(|x| {
            x.model == ModelRef::Policy
                && x.against.is_none()
                && (scored(obj, x.images).is_some()
                    || (0..rows(obj)).any(|i| class(obj.data, x.images, label(obj.data, i)) == c))
        })
    };
    let (has_w, has_l) = (has(1), has(-1));
    for p in 0..PROBES {
        let leaves = draw(obj, &mut rng, p % EQUAL_EVERY == 0);
        let ev = evaluate(obj, &leaves);
        let grads: Vec<(usize, &Vec<f64>)> =
            ev.grads.iter().enumerate().filter_map(|(k, g)| g.as_ref().map(|g| (k, g))).collect();
        if !ev.loss.is_finite() || grads.iter().any(|(_, g)| g.iter().any(|v| !v.is_finite())) {
            continue;
        }
        out.finite += 1;
        let (mut dw, mut dl) = (0.0, 0.0);
        for (k, g) in &grads {
            let input = &obj.inputs[*k];
            if input.against.is_some() {
                continue;
            }
            for (i, v) in g.iter().enumerate() {
                let c = match scored(obj, input.images) {
                    Some(d) => online_class(&leaves.data[d], obj.group() as usize, i),
                    None => class(obj.data, input.images, label(obj.data, i)),
                };
                match c {
                    1 => dw += v,
                    -1 => dl += v,
                    _ => {}
                }
            }
        }
        if grads.iter().any(|(_, g)| g.iter().any(|v| *v != 0.0)) {
            out.depends += 1;
        }
        // The loss changes by -g per unit the errors are lowered: it rises where the gradient is negative.
        if has_w {
            *out.winners_raise.get_or_insert(0) += usize::from(dw < 0.0);
        }
        if has_l {
            *out.losers_lower.get_or_insert(0) += usize::from(dl > 0.0);
        }
    }
    out
}

/// Random leaf and datum values for one batch. `equal`: every reference error equals the policy's on the same
/// view (and every `dist` is 0), as at the first update from an initial reference.
fn draw(obj: &Bound, rng: &mut ChaCha8Rng, equal: bool) -> LeafValues {
    let (lo, hi) = (ERR_RANGE.0.ln(), ERR_RANGE.1.ln());
    let batch = rows(obj);
    let mut base: HashMap<View, Vec<f64>> = HashMap::new();
    let mut inputs = Vec::with_capacity(obj.inputs.len());
    for input in &obj.inputs {
        let view = input.view();
        let e = base.entry(view).or_insert_with(|| (0..batch).map(|_| rng.gen_range(lo..hi).exp()).collect()).clone();
        let near = |rng: &mut ChaCha8Rng, v: f64| if equal { v } else { v * (REF_SPREAD * normal(rng)).exp() };
        let values = match (&input.model, &input.against) {
            (ModelRef::Policy, None) => e,
            (ModelRef::Reference(_), None) => e.iter().map(|&v| near(rng, v)).collect(),
            // A prediction-space distance between two close models: small, non-negative, 0 when equal.
            (_, Some(_)) => e.iter().map(|&v| (near(rng, v) - v).powi(2)).collect(),
        };
        inputs.push(values);
    }
    let mut times: HashMap<(Option<ImageRef>, u32), Vec<f64>> = HashMap::new();
    let mut rewards: HashMap<ImageRef, Vec<f64>> = HashMap::new();
    let mut data = Vec::with_capacity(obj.datums.len());
    for datum in &obj.datums {
        let values = match datum {
            Datum::Time(q, v) => {
                // Under shared noise every image of a prompt has the same timestep.
                let key = (if obj.noise == Noise::Shared { None } else { Some(v.images) }, v.draw);
                let t = times.entry(key).or_insert_with(|| (0..batch).map(|_| rng.gen_range(0.001..0.999)).collect());
                t.iter().map(|&t| time_value(*q, t)).collect()
            }
            Datum::Progress => vec![rng.gen_range(0.0..1.0)],
            Datum::Timesteps => vec![1000.0],
            Datum::Label => (0..batch).map(|i| label(obj.data, i)).collect(),
            Datum::Weight => (0..batch).map(|_| rng.gen_range(0.5..1.5)).collect(),
            // Generated images: not classified, each row its own reward.
            Datum::Reward(ImageRef::Sample(_)) => (0..batch).map(|_| rng.gen_range(0.0..1.0)).collect(),
            Datum::Reward(x) => {
                if rewards.is_empty() {
                    // Per sample: the pair's winner has the higher reward.
                    let pairs: Vec<(f64, f64)> = (0..batch)
                        .map(|_| {
                            let (a, b): (f64, f64) = (rng.gen(), rng.gen());
                            (a.max(b), a.min(b))
                        })
                        .collect();
                    rewards.insert(ImageRef::Winner, pairs.iter().map(|p| p.0).collect());
                    rewards.insert(ImageRef::Loser, pairs.iter().map(|p| p.1).collect());
                    let labels = (0..batch).map(|i| if label(obj.data, i) == 1.0 { pairs[i].0 } else { pairs[i].1 });
                    rewards.insert(ImageRef::Image, labels.collect());
                }
                rewards.get(x).cloned().unwrap_or_else(|| vec![0.5; batch])
            }
        };
        data.push(values);
    }
    LeafValues { inputs, data }
}

/// A timestep quantity of diffusion time `t` on the cosine schedule (`alpha = cos(pi t / 2)`).
pub(crate) fn time_value(q: TimeQty, t: f64) -> f64 {
    let (alpha, sigma) = ((std::f64::consts::FRAC_PI_2 * t).cos(), (std::f64::consts::FRAC_PI_2 * t).sin());
    match q {
        TimeQty::Timestep => t,
        TimeQty::Alpha => alpha,
        TimeQty::Sigma => sigma,
        TimeQty::Snr => (alpha * alpha) / (sigma * sigma),
    }
}

/// A standard normal draw.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}
