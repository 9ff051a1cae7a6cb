//! The shipped objectives that use timestep values, draws and distances, each against its paper's formula
//! written out by hand in f64 on random leaf values (and through the dfdx graph, whose gradient must agree).

use proptest::prelude::*;
use seppoc::compile::conformance;
use seppoc::frontend::{frontend_with, Objective as Parsed};
use seppoc::ir::{self, evaluate, Bound, Datum, LeafValues, TimeQty};
use seppoc::source::SourceFile;

fn load(name: &str) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let parsed = Parsed::parse(&path, &text).unwrap_or_else(|(_, d)| panic!("{name}: {d:?}"));
    ir::lower(&parsed.checked).bind_defaults()
}

/// `objectives/NAME.obj` with one parameter set.
fn with_param(name: &str, param: &str, value: f64) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let sets = [(param.to_string(), format!("{value:?}"))];
    let (checked, params) = frontend_with(&SourceFile::new(path, text), &sets).expect("checks with the value");
    ir::lower(&checked).bind(&params).expect("in its domain")
}

/// A leaf's index by its `explain` name.
fn index(obj: &Bound, name: &str) -> usize {
    obj.inputs.iter().position(|i| i.name() == name).unwrap_or_else(|| panic!("{}: no leaf {name}", obj.name))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Hang et al. 2023, eq. for eps-prediction: w_t = min(SNR_t, gamma) / SNR_t.
    #[test]
    fn min_snr_sft(rows in prop::collection::vec((0.001f64..1.0, 1e-4f64..1e4), 1..8)) {
        let obj = load("sft_minsnr");
        prop_assert_eq!(&obj.datums, &vec![Datum::Time(TimeQty::Snr, obj.inputs[0].view())]);
        let e: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let snr: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let leaves = LeafValues { inputs: vec![e.clone()], data: vec![snr.clone()] };
        let got = evaluate(&obj, &leaves);
        let n = e.len() as f64;
        let want: f64 = e.iter().zip(&snr).map(|(e, s)| s.min(5.0) / s * e).sum::<f64>() / n;
        prop_assert!(close(got.loss, want, 1e-12), "{} vs {}", got.loss, want);
        let g = got.grads[0].as_ref().unwrap();
        for i in 0..e.len() {
            prop_assert!(close(g[i], snr[i].min(5.0) / snr[i] / n, 1e-12));
        }
        let (_, dfdx) = conformance::both(&obj, &leaves);
        prop_assert!(close(dfdx.loss, want, 1e-5));
    }

    /// SFT plus lambda times the prediction-space distance to the frozen reference (DPOK's KL bound).
    #[test]
    fn kl_regularised_sft(rows in prop::collection::vec((0.001f64..1.0, 0.0f64..1.0), 1..8)) {
        let obj = load("sft_kl");
        let (e, d) = (index(&obj, "e_policy_winner"), index(&obj, "dist_policy_ref_winner"));
        let mut inputs = vec![Vec::new(); 2];
        inputs[e] = rows.iter().map(|r| r.0).collect();
        inputs[d] = rows.iter().map(|r| r.1).collect();
        let got = evaluate(&obj, &LeafValues::leaves(inputs));
        let n = rows.len() as f64;
        let want: f64 = rows.iter().map(|r| r.0 + 1.0 * r.1).sum::<f64>() / n;
        prop_assert!(close(got.loss, want, 1e-12));
        prop_assert!(got.grads[d].as_ref().unwrap().iter().all(|g| close(*g, 1.0 / n, 1e-12)), "the distance is on the tape");
    }

    /// SePPO with the gate's error difference averaged over 4 draws; the loss terms use draw 0.
    #[test]
    fn seppo_gate_over_draws(vals in prop::collection::vec(0.01f64..1.0, 4 * 2 + 2)) {
        let obj = load("seppo_draws");
        let batch = 1;
        let mut inputs = vec![vec![0.0; batch]; obj.inputs.len()];
        // e_th, e_ref on the winner per draw; draw 0 also on x_ref.
        for d in 0..4 {
            inputs[index(&obj, &name("policy", "winner", d))][0] = vals[2 * d];
            inputs[index(&obj, &name("ref", "winner", d))][0] = vals[2 * d + 1];
        }
        inputs[index(&obj, "e_policy_sample0")][0] = vals[8];
        inputs[index(&obj, "e_ref_sample0")][0] = vals[9];
        let got = evaluate(&obj, &LeafValues::leaves(inputs));
        let gap: f64 = (0..4).map(|d| vals[2 * d + 1] - vals[2 * d]).sum::<f64>() / 4.0;
        let s = if gap > 0.0 { 1.0 } else if gap < 0.0 { -1.0 } else { 1.0 };
        let d_w = vals[0] - vals[1];
        let d_ref = vals[8] - vals[9];
        let margin = -0.5 * 2000.0 * (d_w - s * d_ref);
        let want = -log_sigmoid_exact(margin);
        prop_assert!(close(got.loss, want, 1e-9), "{} vs {}", got.loss, want);
        prop_assert_eq!(got.logs[0].1, f64::from(u8::from(s < 0.0)));
    }

    /// MaPO: e_w - beta * logsigmoid(T * (u(s e_w) - u(s e_l))), u(x) = x / (e^x - 1), in f64; the f32 graph's
    /// gradient agrees although u's difference cancels in f32.
    #[test]
    fn mapo(rows in prop::collection::vec((1e-4f64..2.0, 1e-4f64..2.0), 1..8), scale in prop::sample::select(vec![1e-4, 1e-3, 0.5])) {
        let obj = with_param("mapo", "s", scale);
        let (w, l) = (index(&obj, "e_policy_winner"), index(&obj, "e_policy_loser"));
        // f32-representable leaves, so the f64 formula and both backends see the same values.
        let rows: Vec<(f64, f64)> = rows.iter().map(|r| (r.0 as f32 as f64, r.1 as f32 as f64)).collect();
        let mut inputs = vec![Vec::new(); 2];
        inputs[w] = rows.iter().map(|r| r.0).collect();
        inputs[l] = rows.iter().map(|r| r.1).collect();
        let leaves = LeafValues::leaves(inputs);
        let got = evaluate(&obj, &leaves);
        let u = |x: f64| x / x.exp_m1();
        let n = rows.len() as f64;
        let margin = |r: &(f64, f64)| u(scale * r.0) - u(scale * r.1);
        let want: f64 = rows.iter().map(|r| r.0 - 0.1 * log_sigmoid_exact(1000.0 * margin(r))).sum::<f64>() / n;
        prop_assert!(close(got.loss, want, 1e-9), "{} vs {}", got.loss, want);
        let (_, dfdx) = conformance::both(&obj, &leaves);
        prop_assert!(close(dfdx.loss, want, 1e-5), "f32 {} vs f64 {}", dfdx.loss, want);
        // d/de_l = beta sigma(-T m) T s u'(s e_l) / n, with u'(x) = (expm1 x - x e^x) / expm1(x)^2 (negative).
        for (i, r) in rows.iter().enumerate() {
            let x = scale * r.1;
            let du = (x.exp_m1() - x * x.exp()) / x.exp_m1().powi(2);
            let g = 0.1 * sigmoid(-1000.0 * margin(r)) * 1000.0 * scale * du / n;
            let (go, gd) = (got.grads[l].as_ref().unwrap()[i], dfdx.grads[l].as_ref().unwrap()[i]);
            prop_assert!((go - g).abs() <= 1e-6 * g.abs() + 1e-15, "oracle {} vs formula {}", go, g);
            prop_assert!((gd - g).abs() <= 1e-3 * g.abs() + 1e-12, "f32 {} vs formula {}", gd, g);
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn name(model: &str, images: &str, draw: usize) -> String {
    if draw == 0 {
        format!("e_{model}_{images}")
    } else {
        format!("e_{model}_{images}_d{draw}")
    }
}

/// `ln σ(x)` written out without cancellation.
fn log_sigmoid_exact(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}
