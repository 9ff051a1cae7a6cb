//! Helpers shared by `tests/device.rs` (CPU) and `tests/gpu.rs` (CUDA): shipped objectives, random batches,
//! and one compiled-objective step on any device.
#![allow(dead_code)]

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use seppoc::compile::loss_graph;
use seppoc::device::cpu;
use seppoc::device::Backend;
use seppoc::frontend::Objective as Parsed;
use seppoc::ir::{self, Bound, Datum, ImageRef, LeafValues, ModelRef, TimeQty, View};
use seppoc::model::{per_sample_error, Dit, DitConfig, NoiseSchedule, ParamGrads};

/// Image side of the test models.
pub const S: usize = 8;

/// Lowers `objectives/NAME.obj` with every parameter at its default.
pub fn load(name: &str) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let parsed = Parsed::parse(&path, &text).unwrap_or_else(|(_, d)| panic!("{name}: {d:?}"));
    ir::lower(&parsed.checked).bind_defaults()
}

/// Every shipped objective's name (the `objectives/*.obj` stems), sorted.
pub fn shipped() -> Vec<String> {
    let dir = format!("{}/objectives", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("objectives/ exists")
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// The smallest batch of at least `batch` rows that holds whole groups of `obj`'s `sample(..., group = K)` (group
/// statistics are defined on whole groups only; `batch` itself when the objective has no groups).
pub fn whole_groups(obj: &Bound, batch: usize) -> usize {
    let k = obj.group() as usize;
    batch.div_ceil(k) * k
}

/// `n` standard-normal values from `seed`.
pub fn normals(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// The tiny test DiT and a reference 0.1% away from it (so margins are of order one at beta ~ 5000).
pub fn models<D: Backend>(dev: &D) -> (Dit<D>, Dit<D>) {
    let cfg = DitConfig::tiny(S, 10, 4);
    let policy = Dit::new(&cfg, &cpu(), 5).expect("tiny config");
    let bump = normals(policy.n_params(), 11);
    let mut k = 0;
    let values: Vec<Vec<f32>> = policy
        .to_host()
        .into_iter()
        .map(|p| {
            p.into_iter()
                .map(|v| {
                    k += 1;
                    v * (1.0 + 1e-3 * bump[k - 1])
                })
                .collect()
        })
        .collect();
    let reference = Dit::from_host(&cfg, dev, values).expect("same layout");
    (policy.to_device(dev).expect("same layout"), reference)
}

/// The result of one compiled-objective step on fixed inputs.
pub struct StepResult {
    /// dfdx's loss.
    pub loss: f64,
    /// The f64 oracle's loss on the same leaves.
    pub oracle: f64,
    /// Gradient of every policy parameter.
    pub grads: Vec<Vec<f32>>,
    /// The stacked policy errors (taped in the step).
    pub policy_values: Vec<f32>,
    /// First row of each policy leaf in `policy_values`.
    pub offsets: Vec<Option<usize>>,
    /// Every leaf's values.
    pub leaves: LeafValues,
}

/// Runs `obj` once on a fixed batch of `batch` prompts: a taped policy pass over its views, an untaped reference
/// pass per reference, the compiled loss graph and backward, exactly as `Trainer::step` does (`dist` leaves
/// against the reference's prediction on the same input; timestep values from the default schedule).
pub fn objective_step<D: Backend>(dev: &D, obj: &Bound, batch: usize) -> StepResult {
    let (policy, reference) = models(dev);
    let per = policy.config().image_len();
    let all = obj.views(Some(&ModelRef::Policy));
    let noisy = |v: View, seed: u64| {
        let k = match v.images {
            ImageRef::Winner => 0,
            ImageRef::Loser => 1,
            ImageRef::Sample(s) => 2 + s as u64,
            ImageRef::Image => 99,
        } + 100 * u64::from(v.draw);
        (normals(batch * per, seed + 10 * k), normals(batch * per, seed + 10 * k + 1))
    };
    let times = |v: View| -> Vec<usize> { (0..batch).map(|i| (100 + 300 * i + 37 * v.draw as usize) % 1000).collect() };
    let tokens: Vec<Vec<usize>> = (0..batch).map(|i| vec![1 + i % 9, 2, 0, 0]).collect();
    let stack = |vs: &[View]| {
        let (mut x, mut eps, mut ts, mut toks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &v in vs {
            let (xk, ek) = noisy(v, 100);
            x.extend(xk);
            eps.extend(ek);
            ts.extend(times(v));
            toks.extend(tokens.iter().cloned());
        }
        (x, eps, ts, toks)
    };
    let ref_pred = |v: View| {
        let (x, _, ts, toks) = stack(&[v]);
        reference.forward(reference.images(x).unwrap(), &ts, &toks).unwrap()
    };
    let (x, eps, ts, toks) = stack(&all);
    let pred = policy.forward(policy.images(x).unwrap().traced(policy.alloc_grads()), &ts, &toks).unwrap();
    let (pred, tape) = pred.split_tape();
    let mut errs = per_sample_error(pred.clone().put_tape(tape), &policy.images(eps).unwrap());
    let mut offsets = vec![None; obj.inputs.len()];
    let mut rows = all.len() * batch;
    for (k, input) in obj.inputs.iter().enumerate() {
        if input.model != ModelRef::Policy {
            continue;
        }
        let pos = all.iter().position(|v| *v == input.view()).unwrap();
        if input.against.is_none() {
            offsets[k] = Some(pos * batch);
            continue;
        }
        let mine = pred.retaped::<OwnedTape<f32, D>>().slice((pos * batch..(pos + 1) * batch, .., .., ..));
        errs = (errs, per_sample_error(mine, &ref_pred(input.view()))).concat_along(Axis::<0>);
        offsets[k] = Some(rows);
        rows += batch;
    }
    let policy_values = errs.retaped::<NoneTape>().as_vec();
    let mut leaves = vec![Vec::new(); obj.inputs.len()];
    for (k, input) in obj.inputs.iter().enumerate() {
        let values = match (&input.model, offsets[k]) {
            (ModelRef::Policy, Some(off)) => policy_values[off..off + batch].to_vec(),
            _ => {
                let (_, eps, _, _) = stack(&[input.view()]);
                let target =
                    if input.against.is_some() { ref_pred(input.view()) } else { reference.images(eps).unwrap() };
                per_sample_error(ref_pred(input.view()), &target).as_vec()
            }
        };
        leaves[k] = values.iter().map(|&v| v as f64).collect();
    }
    let schedule = NoiseSchedule::default_linear();
    let data = obj
        .datums
        .iter()
        .map(|d| match d {
            Datum::Time(q, v) => times(*v)
                .into_iter()
                .map(|t| {
                    let tv = schedule.time_values(t);
                    match q {
                        TimeQty::Timestep => tv.timestep,
                        TimeQty::Alpha => tv.alpha,
                        TimeQty::Sigma => tv.sigma,
                        TimeQty::Snr => tv.snr,
                    }
                })
                .collect(),
            Datum::Progress => vec![0.5],
            Datum::Timesteps => vec![schedule.n_steps() as f64],
            // Data fields: label 1, 0, 0.5, ...; weights and rewards varying per sample.
            Datum::Label => (0..batch).map(|i| [1.0, 0.0, 0.5][i % 3]).collect(),
            Datum::Weight | Datum::Reward(_) => (0..batch).map(|i| 0.5 + 0.25 * i as f64).collect(),
        })
        .collect();
    let leaves = LeafValues { inputs: leaves, data };
    let graph = loss_graph(obj, errs, &offsets, &leaves, batch);
    let loss = graph.loss.array() as f64;
    let oracle = graph.host.loss;
    let grads = ParamGrads::backward(&policy, graph.loss).grads.iter().map(|g| g.as_vec()).collect();
    StepResult { loss, oracle, grads, policy_values, offsets, leaves }
}

/// The compiled objective alone on given leaf values: the loss and its gradient w.r.t. the stacked policy errors.
pub fn loss_on_leaves<D: Backend>(dev: &D, obj: &Bound, step: &StepResult, batch: usize) -> (f64, Vec<f32>) {
    let n = step.policy_values.len();
    let errs: Tensor<(usize,), f32, D> = dev.tensor_from_vec(step.policy_values.clone(), (n,));
    let graph = loss_graph(obj, errs.leaky_trace(), &step.offsets, &step.leaves, batch);
    let loss = graph.loss.array() as f64;
    (loss, graph.loss.backward().get(&errs).as_vec())
}

/// Largest `|a − b| / max(scale, |b|)` over two equally long slices.
pub fn max_rel(a: &[f32], b: &[f32], scale: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / scale.max(y.abs())).fold(0.0, f32::max)
}
