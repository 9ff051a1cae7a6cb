//! Invariants of the objectives that read data fields: labels in {0, 1} make the label-aware DPO the DPO of
//! the pairs in the labels' order; a constant `weight` scales the loss and every gradient. (Diffusion-KTO's
//! "a class weight of 0 means no gradient for that class" is checked with its formula in
//! `tests/objective_formulas.rs`.)

use proptest::prelude::*;
use seppoc::compile::conformance;
use seppoc::frontend::{frontend_with, Objective as Parsed};
use seppoc::ir::{self, evaluate, Bound, LeafValues};
use seppoc::source::SourceFile;

fn shipped(name: &str, sets: &[(&str, String)]) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let sets: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let (checked, params) = frontend_with(&SourceFile::new(path, text), &sets).expect("checks");
    ir::lower(&checked).bind(&params).expect("binds")
}

fn inline(text: &str) -> Bound {
    let parsed = Parsed::parse("inline.obj", text).unwrap_or_else(|(_, d)| panic!("{d:?}"));
    ir::lower(&parsed.checked).bind_defaults()
}

fn index(obj: &Bound, name: &str) -> usize {
    obj.inputs.iter().position(|i| i.name() == name).unwrap_or_else(|| panic!("no leaf {name}"))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

type Row = (f64, f64, f64, f64);

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0.05f64..0.2, 0.05f64..0.2, 0.05f64..0.2, 0.05f64..0.2), 1..8)
}

/// The four leaves in `obj`'s order from rows `(e_th_w, e_ref_w, e_th_l, e_ref_l)`.
fn pair_inputs(obj: &Bound, rows: &[Row]) -> Vec<Vec<f64>> {
    let mut inputs = vec![Vec::new(); obj.inputs.len()];
    inputs[index(obj, "e_policy_winner")] = rows.iter().map(|r| r.0).collect();
    inputs[index(obj, "e_ref_winner")] = rows.iter().map(|r| r.1).collect();
    inputs[index(obj, "e_policy_loser")] = rows.iter().map(|r| r.2).collect();
    inputs[index(obj, "e_ref_loser")] = rows.iter().map(|r| r.3).collect();
    inputs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Label 1 is dpo on (winner, loser); label 0 is dpo on (loser, winner): loss and policy gradients agree.
    #[test]
    fn binary_labels_make_dpo_label_dpo(rows in rows(), flips in prop::collection::vec(prop::bool::ANY, 8)) {
        let ours = shipped("dpo_label", &[]);
        let dpo = shipped("dpo", &[]);
        let n = rows.len();
        let labels: Vec<f64> = flips[..n].iter().map(|f| if *f { 0.0 } else { 1.0 }).collect();
        let mine = evaluate(&ours, &LeafValues { inputs: pair_inputs(&ours, &rows), data: vec![labels] });
        let swapped: Vec<Row> =
            rows.iter().zip(&flips).map(|(r, f)| if *f { (r.2, r.3, r.0, r.1) } else { *r }).collect();
        let theirs = evaluate(&dpo, &LeafValues::leaves(pair_inputs(&dpo, &swapped)));
        prop_assert!(close(mine.loss, theirs.loss, 1e-12), "{} vs {}", mine.loss, theirs.loss);
        let (w, l) = (index(&ours, "e_policy_winner"), index(&ours, "e_policy_loser"));
        let (dw, dl) = (index(&dpo, "e_policy_winner"), index(&dpo, "e_policy_loser"));
        for (i, flip) in flips[..n].iter().enumerate() {
            let (tw, tl) = if *flip { (dl, dw) } else { (dw, dl) };
            prop_assert!(close(mine.grads[w].as_ref().unwrap()[i], theirs.grads[tw].as_ref().unwrap()[i], 1e-12));
            prop_assert!(close(mine.grads[l].as_ref().unwrap()[i], theirs.grads[tl].as_ref().unwrap()[i], 1e-12));
        }
    }

    /// `mean(weight * f)` with every weight c is c times the loss and c times every gradient, in the f64 oracle
    /// and the f32 graph.
    #[test]
    fn a_constant_weight_scales_the_loss_and_the_gradient(rows in rows(), c in 0.0f64..4.0) {
        let obj = inline(
            "objective w\ndata pairs\nparam beta: real = 5000.0 in (0, inf)\nreference ref = initial\n\
             let m = 0.5 * beta * (logratio(policy, ref, winner) - logratio(policy, ref, loser))\n\
             loss mean(weight * -logsigmoid(m))\n",
        );
        let n = rows.len();
        let at = |w: f64| LeafValues { inputs: pair_inputs(&obj, &rows), data: vec![vec![w; n]] };
        let (one, scaled) = (evaluate(&obj, &at(1.0)), evaluate(&obj, &at(c)));
        prop_assert!(close(scaled.loss, c * one.loss, 1e-12));
        for (g1, gc) in one.grads.iter().zip(&scaled.grads) {
            if let (Some(g1), Some(gc)) = (g1, gc) {
                prop_assert!(g1.iter().zip(gc).all(|(a, b)| close(*b, c * a, 1e-12)));
            }
        }
        let ((_, d1), (_, dc)) = (conformance::both(&obj, &at(1.0)), conformance::both(&obj, &at(c)));
        let w = index(&obj, "e_policy_winner");
        for (a, b) in d1.grads[w].as_ref().unwrap().iter().zip(dc.grads[w].as_ref().unwrap()) {
            prop_assert!((b - c * a).abs() <= 1e-5 * (c * a).abs() + 1e-9, "f32 {} vs {} x {}", b, c, a);
        }
    }
}
