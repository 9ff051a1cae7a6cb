//! Rejection before training, on the f64 oracle ([`crate::ir::evaluate`]) over random leaf values, and the
//! gradient fingerprint that recognises two candidates as one (AutoLoss-Zero's gradient-equivalence check, Li et
//! al., arXiv 2103.14026).
//!
//! Leaf values are drawn as `seppoc check`'s direction lint draws them ([`crate::lint::probe`]: per-sample errors
//! log-uniform in [0.02, 0.5], references within 0.1% of the policy, equal to it on every fourth batch), but
//! each value comes from a stream keyed by what the leaf is (its images and draw, the reference's position), not
//! by the order the objective first uses it. So two objectives that read the same leaves see the same values
//! whatever their text, and their gradients can be compared.

use crate::check::{DataKind, Noise, Strategy};
use crate::ir::{evaluate, Bound, Datum, ImageRef, Input, LeafValues, ModelRef};
use crate::lint::probe::{online_class, rows, scored, time_value, EQUAL_EVERY, ERR_RANGE, REF_SPREAD};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random batches a candidate is screened on.
pub const PROBES: usize = 32;
/// The first `FINGERPRINT_PROBES` of them make the gradient fingerprint.
pub const FINGERPRINT_PROBES: usize = 8;
/// Two fingerprints are one candidate when every gradient agrees to this relative tolerance.
pub const TOLERANCE: f64 = 1e-6;
const SEED: u64 = 0x5EA2_C4F1_9E2D_0001;

/// Why a candidate was rejected before training.
#[derive(Clone, Debug, PartialEq)]
pub enum Rejection {
    /// A NaN or infinite loss or gradient on some probe (which quantity).
    NonFinite(String),
    /// No policy leaf has a gradient on any probe.
    Independent,
    /// Lowering the policy's error on the preferred images never lowers the loss.
    WrongSign,
    /// Another candidate has the same canonical form (its id).
    SameText(usize),
    /// Another candidate's gradients agree to [`TOLERANCE`] on every probe (its id).
    SameGradient(usize),
}

impl Rejection {
    /// A short reason code for the archive and the counts.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NonFinite(_) => "nonfinite",
            Rejection::Independent => "independent",
            Rejection::WrongSign => "wrong_sign",
            Rejection::SameText(_) => "duplicate_text",
            Rejection::SameGradient(_) => "duplicate_gradient",
        }
    }

    /// The reason in words.
    pub fn describe(&self) -> String {
        match self {
            Rejection::NonFinite(q) => format!("non-finite {q} on a random probe"),
            Rejection::Independent => "the loss does not depend on the policy".into(),
            Rejection::WrongSign => "lowering the policy's error on the preferred images never lowers the loss".into(),
            Rejection::SameText(id) => format!("same canonical form as candidate {id}"),
            Rejection::SameGradient(id) => format!("same gradients as candidate {id} on every probe"),
        }
    }
}

/// Per probe, the gradient of every policy leaf (by a key naming the leaf), sorted by key, plus the settings
/// the gradients do not show (data, noise, references, pool, reference samplers).
#[derive(Clone, Debug, PartialEq)]
pub struct Fingerprint {
    settings: String,
    grads: Vec<Vec<(String, Vec<f64>)>>,
}

impl Fingerprint {
    /// Whether two candidates are one: same settings, same leaves, every gradient within [`TOLERANCE`].
    pub fn same(&self, other: &Fingerprint) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()) + 1e-12;
        self.settings == other.settings
            && self.grads.len() == other.grads.len()
            && self.grads.iter().zip(&other.grads).all(|(x, y)| {
                x.len() == y.len()
                    && x.iter().zip(y).all(|((ka, a), (kb, b))| {
                        ka == kb && a.len() == b.len() && a.iter().zip(b).all(|(u, v)| close(*u, *v))
                    })
            })
    }
}

/// FNV-1a of a key, mixed with the probe index: the seed of one leaf's values on one probe.
fn stream(probe: usize, key: &str) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ SEED;
    for b in key.bytes().chain((probe as u64).to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(h)
}

fn reference_index(obj: &Bound, name: &str) -> usize {
    obj.references.iter().position(|r| r.name == name).unwrap_or(usize::MAX)
}

/// What a leaf is, independent of names the text chose: `err:winner`, `ref0:sample0`, `dist0:winner_d1`.
fn leaf_key(obj: &Bound, input: &Input) -> String {
    let view = input.view().name();
    match (&input.model, &input.against) {
        (ModelRef::Policy, None) => format!("err:{view}"),
        (ModelRef::Reference(r), None) => format!("ref{}:{view}", reference_index(obj, r)),
        (m, Some(r)) => {
            let m = match m {
                ModelRef::Policy => "p".to_string(),
                ModelRef::Reference(n) => reference_index(obj, n).to_string(),
            };
            format!("dist{m}-{}:{view}", reference_index(obj, r))
        }
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// The label of sample `i` (as the direction lint sets it): 1, alternating with 0 for labelled data.
fn label(data: DataKind, i: usize) -> f64 {
    if data == DataKind::Labelled && i % 2 == 1 {
        0.0
    } else {
        1.0
    }
}

/// Leaf and datum values of probe `p`.
fn draw(obj: &Bound, p: usize) -> LeafValues {
    let (lo, hi) = (ERR_RANGE.0.ln(), ERR_RANGE.1.ln());
    let equal = p.is_multiple_of(EQUAL_EVERY);
    let batch = rows(obj);
    let base = |view: &str| -> Vec<f64> {
        let mut rng = stream(p, &format!("err:{view}"));
        (0..batch).map(|_| rng.gen_range(lo..hi).exp()).collect()
    };
    let inputs = obj
        .inputs
        .iter()
        .map(|input| {
            let e = base(&input.view().name());
            let mut rng = stream(p, &leaf_key(obj, input));
            let near = |rng: &mut ChaCha8Rng, v: f64| if equal { v } else { v * (REF_SPREAD * normal(rng)).exp() };
            match (&input.model, &input.against) {
                (ModelRef::Policy, None) => e,
                (ModelRef::Reference(_), None) => e.iter().map(|&v| near(&mut rng, v)).collect(),
                (_, Some(_)) => e.iter().map(|&v| (near(&mut rng, v) - v).powi(2)).collect(),
            }
        })
        .collect();
    let data = obj
        .datums
        .iter()
        .map(|datum| match datum {
            Datum::Time(q, v) => {
                let key = if obj.noise == Noise::Shared { format!("t:{}", v.draw) } else { format!("t:{}", v.name()) };
                let mut rng = stream(p, &key);
                (0..batch).map(|_| time_value(*q, rng.gen_range(0.001..0.999))).collect()
            }
            Datum::Progress => vec![stream(p, "progress").gen_range(0.0..1.0)],
            Datum::Timesteps => vec![1000.0],
            Datum::Label => (0..batch).map(|i| label(obj.data, i)).collect(),
            Datum::Weight => {
                let mut rng = stream(p, "weight");
                (0..batch).map(|_| rng.gen_range(0.5..1.5)).collect()
            }
            // Generated images: not classified, each row its own reward.
            Datum::Reward(x @ ImageRef::Sample(_)) => {
                let mut rng = stream(p, &format!("reward:{}", crate::ir::print::image_name(*x)));
                (0..batch).map(|_| rng.gen_range(0.0..1.0)).collect()
            }
            Datum::Reward(x) => {
                let mut rng = stream(p, "reward");
                (0..batch)
                    .map(|i| {
                        let (a, b): (f64, f64) = (rng.gen(), rng.gen());
                        let preferred = match x {
                            ImageRef::Winner => true,
                            ImageRef::Loser => false,
                            _ => label(obj.data, i) == 1.0,
                        };
                        if preferred {
                            a.max(b)
                        } else {
                            a.min(b)
                        }
                    })
                    .collect()
            }
        })
        .collect();
    LeafValues { inputs, data }
}

/// Whether a policy leaf of sample `i` holds preferred images (the winners, labelled images with label 1, or
/// generated images whose reward the objective reads, above their group's mean).
fn preferred(obj: &Bound, leaves: &LeafValues, input: &Input, i: usize) -> bool {
    input.model == ModelRef::Policy
        && input.against.is_none()
        && match input.images {
            ImageRef::Winner => true,
            ImageRef::Image => label(obj.data, i) == 1.0,
            ImageRef::Sample(_) => {
                scored(obj, input.images).is_some_and(|d| online_class(&leaves.data[d], obj.group() as usize, i) == 1)
            }
            _ => false,
        }
}

/// Screens a candidate on [`PROBES`] random batches: its fingerprint, or why it is rejected (non-finite on any
/// probe; no gradient on any probe; or the loss never falls when the policy's error on the preferred images
/// falls).
pub fn screen(obj: &Bound) -> Result<Fingerprint, Rejection> {
    screen_for(obj, None)
}

/// [`screen`] for a search whose trainings run at most `horizon` updates: the fingerprint then takes a pool's
/// `keep` as what such a run can fill (see [`pool_as_read`]), so two candidates that differ only in a `keep` no
/// training of the search reaches are one candidate.
pub fn screen_for(obj: &Bound, horizon: Option<usize>) -> Result<Fingerprint, Rejection> {
    let mut depends = false;
    let mut lowers = false;
    let mut grads = Vec::with_capacity(FINGERPRINT_PROBES);
    for p in 0..PROBES {
        let leaves = draw(obj, p);
        let ev = evaluate(obj, &leaves);
        if !ev.loss.is_finite() {
            return Err(Rejection::NonFinite("loss".into()));
        }
        let mut dw = 0.0;
        let mut keyed = Vec::new();
        for (k, g) in ev.grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let input = &obj.inputs[k];
            if g.iter().any(|v| !v.is_finite()) {
                return Err(Rejection::NonFinite(format!("gradient of {}", input.name())));
            }
            depends |= g.iter().any(|v| *v != 0.0);
            dw += g.iter().enumerate().filter(|(i, _)| preferred(obj, &leaves, input, *i)).map(|(_, v)| v).sum::<f64>();
            keyed.push((leaf_key(obj, input), g.clone()));
        }
        // The loss falls by g per unit the preferred errors fall: it falls on this probe when g > 0.
        lowers |= dw > 0.0;
        if p < FINGERPRINT_PROBES {
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            grads.push(keyed);
        }
    }
    if !depends {
        return Err(Rejection::Independent);
    }
    if !lowers {
        return Err(Rejection::WrongSign);
    }
    // Leaves whose gradient is zero on every fingerprint probe say nothing about the candidate's direction.
    let live: std::collections::BTreeSet<String> = grads
        .iter()
        .flat_map(|probe| probe.iter().filter(|(_, g)| g.iter().any(|v| *v != 0.0)).map(|(k, _)| k.clone()))
        .collect();
    for probe in &mut grads {
        probe.retain(|(k, _)| live.contains(k));
    }
    Ok(Fingerprint { settings: settings(obj, horizon), grads })
}

/// The checkpoint pool as the references read it in a training of at most `horizon` updates. No reference
/// reads it (`initial`, `ema`): nothing. Only `latest` readers: how often it saves (the newest checkpoint is the
/// same whatever `keep`). A `uniform` reader: how often it saves and how many checkpoints it can hold, `keep` or
/// the number `horizon` updates save, whichever is smaller (a pool never fuller than `keep` drops nothing).
fn pool_as_read(obj: &Bound, horizon: Option<usize>) -> String {
    let Some(pool) = &obj.pool else { return "no pool".into() };
    let reads = |f: fn(&Strategy) -> bool| obj.references.iter().any(|r| f(&r.strategy));
    if reads(|s| matches!(s, Strategy::Uniform(_))) {
        let saved = horizon.map_or(u64::MAX, |h| h as u64 / pool.every.max(1));
        format!("pool every {} holding {}", pool.every, pool.keep.min(saved))
    } else if reads(|s| matches!(s, Strategy::Latest)) {
        format!("pool every {}, newest", pool.every)
    } else {
        "pool unread".into()
    }
}

/// What the gradients do not show: data kind (and whether ties are trained on), noise coupling, reference
/// strategies, the pool as they read it and reference samplers (references by position, so their names do not
/// matter).
fn settings(obj: &Bound, horizon: Option<usize>) -> String {
    let refs: Vec<String> = obj.references.iter().map(|r| format!("{:?}", r.strategy)).collect();
    let samples: Vec<String> = obj
        .samples
        .iter()
        .map(|s| {
            let group = if s.group == 1 { String::new() } else { format!(":group {}", s.group) };
            format!("{}:{:?}:{}:{}:{}{group}", reference_index(obj, &s.model), s.sampler, s.steps, s.cfg, s.eta)
        })
        .collect();
    // An objective that reads `label` of pairs also trains on ties (label 0.5): other data, another candidate.
    let ties = crate::engine::run::keeps_ties(obj);
    let pool = pool_as_read(obj, horizon);
    format!("{:?}|{:?}|{pool}|{}|{}|ties {ties}", obj.data, obj.noise, refs.join(","), samples.join(","))
}
