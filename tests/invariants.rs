//! Loss invariants of the shipped objectives (docs/method.md, numbered as there), on the f64 oracle and on the compiled
//! dfdx graph: ln 2 at policy == reference, gate semantics, swap symmetry, non-negativity, backend agreement,
//! and gradients against central finite differences.

use proptest::prelude::*;
use seppoc::compile::conformance;
use seppoc::frontend::Objective as Parsed;
use seppoc::ir::{self, evaluate, Bound, ImageRef, LeafValues, ModelRef, Objective};
use std::f64::consts::LN_2;

/// Lowers `objectives/NAME.obj` with every parameter at its default.
fn load(name: &str) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let parsed = Parsed::parse(&path, &text).unwrap_or_else(|(_, d)| panic!("{name}: {d:?}"));
    ir::lower(&parsed.checked).bind_defaults()
}

const DPO_FAMILY: &[&str] =
    &["seppo", "seppo_indicator", "seppo_nogate", "seppo_initial", "seppo_latest", "dpo", "spin", "robust"];
const ALL: &[&str] = &[
    "seppo",
    "seppo_indicator",
    "seppo_nogate",
    "seppo_initial",
    "seppo_latest",
    "dpo",
    "spin",
    "robust",
    "sft",
    "hinge",
    "ipo",
    "kto",
];

/// Leaf values: per image kind a reference error in [0.05, 0.5]; the policy's differs by `delta` (scaled so
/// beta * delta is of order one, as in training).
fn leaves(obj: &Objective, base: &[f64], delta: &[f64], batch: usize) -> LeafValues {
    let kind = |i: ImageRef| match i {
        ImageRef::Winner | ImageRef::Image => 0,
        ImageRef::Loser => 1,
        ImageRef::Sample(k) => 2 + k as usize,
    };
    let inputs = obj
        .inputs
        .iter()
        .map(|input| {
            (0..batch)
                .map(|s| {
                    let k = kind(input.images) * batch + s;
                    let b = base[k % base.len()];
                    match &input.model {
                        ModelRef::Policy => (b + delta[k % delta.len()]).max(0.0),
                        ModelRef::Reference(_) => b,
                    }
                })
                .collect()
        })
        .collect();
    LeafValues::leaves(inputs)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

fn base_strategy() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    (prop::collection::vec(0.05f64..0.5, 24), prop::collection::vec(-2e-3f64..2e-3, 24))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Invariant 1: policy == reference gives ln 2 per sample for every DPO-family loss, whatever the gate.
    #[test]
    fn identity_at_reference_is_ln2((base, _) in base_strategy()) {
        for name in DPO_FAMILY {
            let obj = load(name);
            let ev = evaluate(&obj, &leaves(&obj, &base, &[0.0], 4));
            prop_assert!((ev.loss - LN_2).abs() < 1e-12, "{name}: {}", ev.loss);
            for v in ev.per_sample.expect("mean of per-sample terms") {
                prop_assert!((v - LN_2).abs() < 1e-12, "{name}: per-sample {v}");
            }
        }
    }

    /// Invariant 14: the dfdx graph matches the f64 oracle (loss and every policy gradient).
    #[test]
    fn dfdx_matches_oracle((base, delta) in base_strategy()) {
        for name in ALL {
            let obj = load(name);
            let (oracle, dfdx) = conformance::both(&obj, &leaves(&obj, &base, &delta, 4));
            prop_assert!(close(dfdx.loss, oracle.loss, 1e-4), "{name}: dfdx {} vs oracle {}", dfdx.loss, oracle.loss);
            for (k, (g, o)) in dfdx.grads.iter().zip(&oracle.grads).enumerate() {
                prop_assert_eq!(g.is_some(), o.is_some());
                if let (Some(g), Some(o)) = (g, o) {
                    let scale = o.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    for (a, b) in g.iter().zip(o) {
                        prop_assert!((a - b).abs() <= 1e-3 * scale, "{name} leaf {k}: dfdx {a} vs oracle {b}");
                    }
                }
            }
        }
    }

    /// The oracle's gradients equal central finite differences (away from gate boundaries). KTO is left out:
    /// its reference point z0 is a stop-gradient of a batch mean, which finite differences cannot hold fixed.
    #[test]
    fn gradients_match_finite_differences((base, delta) in base_strategy()) {
        let delta: Vec<f64> = delta.iter().map(|d| if d.abs() < 2e-4 { 2e-4_f64.copysign(*d) } else { *d }).collect();
        for name in ALL.iter().filter(|n| **n != "kto") {
            let obj = load(name);
            let at = leaves(&obj, &base, &delta, 3);
            let ev = evaluate(&obj, &at);
            for (k, g) in ev.grads.iter().enumerate() {
                let Some(g) = g else { continue };
                for (s, &gs) in g.iter().enumerate().take(3) {
                    let h = 1e-7;
                    let mut plus = at.clone();
                    plus.inputs[k][s] += h;
                    let mut minus = at.clone();
                    minus.inputs[k][s] -= h;
                    let (lp, l0, lm) = (evaluate(&obj, &plus).loss, ev.loss, evaluate(&obj, &minus).loss);
                    // A kink (relu at 0, a gate flipping) has different one-sided slopes: no derivative there.
                    if ((lp - l0) - (l0 - lm)).abs() > 1e-3 * (lp - l0).abs().max(h) {
                        continue;
                    }
                    let fd = (lp - lm) / (2.0 * h);
                    prop_assert!((fd - gs).abs() <= 1e-4 * gs.abs().max(1.0), "{name} leaf {k} sample {s}: fd {fd} vs grad {gs}");
                }
            }
        }
    }

    /// Invariants 4 and 5 (SePPO gate): with s = +1 the reference sample is pushed away (dL/de_th(x_ref) < 0),
    /// with s = -1 both errors are pushed down (both gradients > 0); the indicator variant drops the term (0).
    #[test]
    fn seppo_gate_semantics((base, delta) in base_strategy()) {
        let batch = 4;
        for name in ["seppo", "seppo_indicator"] {
            let obj = load(name);
            let at = leaves(&obj, &base, &delta, batch);
            let ev = evaluate(&obj, &at);
            let idx = |m: &ModelRef, i: ImageRef| obj.inputs.iter().position(|x| &x.model == m && x.images == i).expect("leaf");
            let (pw, rw, ps) = (idx(&ModelRef::Policy, ImageRef::Winner), idx(&ModelRef::Reference("ref".into()), ImageRef::Winner), idx(&ModelRef::Policy, ImageRef::Sample(0)));
            let gw = ev.grads[pw].as_ref().expect("policy leaf");
            let gs = ev.grads[ps].as_ref().expect("policy leaf");
            for s in 0..batch {
                let x = at.inputs[rw][s] - at.inputs[pw][s];
                prop_assert!(gw[s] > 0.0, "{name}: the winner's error is always pushed down");
                if x > 0.0 {
                    prop_assert!(gs[s] < 0.0, "{name}: s = +1 pushes the reference sample's error up");
                } else if name == "seppo" {
                    prop_assert!(gs[s] > 0.0, "seppo: s = -1 pushes the reference sample's error down");
                } else {
                    prop_assert_eq!(gs[s], 0.0, "indicator: s = 0 drops the reference-sample term");
                }
            }
        }
    }

    /// Invariant 10: swapping winner and loser negates the DPO margin z, and l(z) - l(-z) = -z.
    #[test]
    fn dpo_swap_symmetry((base, delta) in base_strategy()) {
        let obj = load("dpo");
        let at = leaves(&obj, &base, &delta, 4);
        let mut swapped = at.clone();
        for (k, input) in obj.inputs.iter().enumerate() {
            let other = obj.inputs.iter().position(|x| x.model == input.model && x.images != input.images).expect("pair leaf");
            swapped.inputs[k] = at.inputs[other].clone();
        }
        let (a, b) = (evaluate(&obj, &at), evaluate(&obj, &swapped));
        let find = |m: ModelRef, i: ImageRef| obj.inputs.iter().position(|x| x.model == m && x.images == i).expect("leaf");
        let r = ModelRef::Reference("ref".into());
        let (pw, pl, rw, rl) = (find(ModelRef::Policy, ImageRef::Winner), find(ModelRef::Policy, ImageRef::Loser), find(r.clone(), ImageRef::Winner), find(r, ImageRef::Loser));
        let beta = obj.params[0].default;
        for s in 0..4 {
            let i = &at.inputs;
            let z = -0.5 * beta * ((i[pw][s] - i[rw][s]) - (i[pl][s] - i[rl][s]));
            let (la, lb) = (a.per_sample.as_ref().expect("per-sample")[s], b.per_sample.as_ref().expect("per-sample")[s]);
            prop_assert!(((la - lb) + z).abs() < 1e-9 * z.abs().max(1.0), "l(z) - l(-z) = {} but -z = {}", la - lb, -z);
        }
    }

    /// Invariant 2: losses that are non-negative by formula stay non-negative and finite, even at huge margins.
    #[test]
    fn losses_are_nonnegative_and_finite((base, delta) in base_strategy(), scale in prop_oneof![Just(1.0), Just(1e3)]) {
        let delta: Vec<f64> = delta.iter().map(|d| d * scale).collect();
        for name in ALL {
            let obj = load(name);
            let ev = evaluate(&obj, &leaves(&obj, &base, &delta, 4));
            prop_assert!(ev.loss.is_finite(), "{name}: {}", ev.loss);
            if *name != "robust" {
                prop_assert!(ev.loss >= 0.0, "{name}: {}", ev.loss);
            }
        }
    }
}

/// Invariant 13 and the tie rule: SePPO's first update (pool = {theta_0}, theta = theta_0) ties on every sample;
/// with `tie = 1` the flip rate is 0.
#[test]
fn first_update_flip_rate_is_zero() {
    let obj = load("seppo");
    let ev = evaluate(&obj, &leaves(&obj, &[0.1, 0.2, 0.3], &[0.0], 3));
    let flip = ev.logs.iter().find(|(n, _)| n == "flip_rate").expect("logged").1;
    assert_eq!(flip, 0.0);
}

/// Each (model, image) pair is evaluated once per step: SePPO needs 4 network passes per prompt plus sampling.
#[test]
fn plan_nfe_is_the_minimum() {
    let seppo = load("seppo").plan();
    assert_eq!(seppo.nfe_passes, 4);
    assert_eq!(seppo.nfe_sampling, 20);
    assert_eq!(load("sft").plan().nfe_passes, 1);
    assert_eq!(load("dpo").plan().nfe_passes, 4);
}

#[test]
fn explain_snapshots() {
    for name in ["seppo", "dpo", "sft", "spin", "kto"] {
        insta::assert_snapshot!(format!("explain_{name}"), load(name).explain());
    }
}

/// The elementwise math functions, each in a loss of the policy's errors (`d` = policy minus reference error).
const FUNCTIONS: &[(&str, &str)] = &[
    ("log", "mean(log(err(policy, winner)) + 0.0 * d)"),
    ("exp", "mean(exp(beta * d))"),
    ("expm1", "mean(expm1(beta * d))"),
    ("sqrt", "mean(sqrt(err(policy, winner)) + 0.0 * d)"),
    ("pow", "mean(pow(err(policy, winner), gamma) + 0.0 * d)"),
    ("tanh", "mean(tanh(beta * d))"),
];

/// `FUNCTIONS` entry `loss` as an objective, with `beta` and `gamma` bound.
fn function_objective(loss: &str, beta: f64, gamma: f64) -> Bound {
    let text = format!(
        "objective f\nparam beta: real = 300.0 in (0, inf)\nparam gamma: real = 1.5 in (-inf, inf)\n\
         reference ref = initial\nlet d = err(policy, winner) - err(ref, winner)\nloss {loss} + 0.0 * gamma * beta\n"
    );
    let parsed = Parsed::parse("function.obj", &text).unwrap_or_else(|(_, d)| panic!("{loss}: {d:?}"));
    ir::lower(&parsed.checked).bind(&[("beta", beta), ("gamma", gamma)]).expect("in domain")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Each function's oracle gradient equals central finite differences, and the dfdx graph matches the oracle
    /// (loss and gradient), at margins inside and outside expm1's small-argument branch.
    #[test]
    fn math_function_gradients((base, delta) in base_strategy(), beta in prop_oneof![Just(30.0), Just(300.0), Just(3000.0)], gamma in prop_oneof![Just(0.5), Just(1.5), Just(-2.0)]) {
        for (name, loss) in FUNCTIONS {
            let obj = function_objective(loss, beta, gamma);
            let at = leaves(&obj, &base, &delta, 3);
            let ev = evaluate(&obj, &at);
            prop_assert!(ev.loss.is_finite(), "{name}: {}", ev.loss);
            let g = ev.grads[0].as_ref().expect("the first leaf is the policy's");
            for (s, &gs) in g.iter().enumerate() {
                let h = 1e-7 * at.inputs[0][s].abs().max(1e-3);
                let (mut plus, mut minus) = (at.clone(), at.clone());
                plus.inputs[0][s] += h;
                minus.inputs[0][s] -= h;
                let fd = (evaluate(&obj, &plus).loss - evaluate(&obj, &minus).loss) / (2.0 * h);
                prop_assert!((fd - gs).abs() <= 1e-5 * gs.abs().max(1.0), "{name} sample {s}: fd {fd} vs grad {gs}");
            }
            let (oracle, dfdx) = conformance::both(&obj, &at);
            prop_assert!(close(dfdx.loss, oracle.loss, 1e-4), "{name}: dfdx {} vs oracle {}", dfdx.loss, oracle.loss);
            let (gd, go) = (dfdx.grads[0].as_ref().expect("policy"), oracle.grads[0].as_ref().expect("policy"));
            let scale = go.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (a, b) in gd.iter().zip(go) {
                prop_assert!((a - b).abs() <= 1e-4 * scale, "{name}: dfdx grad {a} vs oracle {b}");
            }
        }
    }
}

/// `expm1` keeps its relative precision in f32 near 0, where `exp(x) - 1` would lose it: at x = 1e-6 the f32
/// `exp(x) - 1` is off by several percent.
#[test]
fn expm1_is_accurate_near_zero_in_f32() {
    let obj = function_objective("mean(expm1(beta * d))", 1.0, 1.5);
    for x in [1e-6, -3e-7, 2e-5, 0.5, -0.9, 1.5, -4.0] {
        let r = 0.25f32 as f64;
        let p = (r + x) as f32 as f64;
        let (oracle, dfdx) = conformance::both(&obj, &LeafValues::leaves(vec![vec![p], vec![r]]));
        let want = (p - r).exp_m1();
        assert!((oracle.loss - want).abs() <= 1e-15 * want.abs(), "x {x}: oracle {} vs {want}", oracle.loss);
        assert!((dfdx.loss - want).abs() <= 1e-6 * want.abs(), "x {x}: dfdx {} vs {want}", dfdx.loss);
        let g = dfdx.grads[0].as_ref().expect("policy")[0];
        assert!((g - (p - r).exp()).abs() <= 1e-6 * (p - r).exp().max(1.0), "x {x}: gradient {g}");
    }
}
