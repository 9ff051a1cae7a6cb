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
        ImageRef::Winner => 0,
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
    LeafValues { inputs }
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
