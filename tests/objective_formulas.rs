//! The shipped objectives that use timestep values, draws, distances and data fields, each against its paper's
//! formula written out by hand in f64 on random leaf values (and through the dfdx graph, whose gradient must
//! agree).

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

/// `objectives/NAME.obj` with `--set` values given as text (`omega=1`).
fn with_sets(name: &str, sets: &[(&str, &str)]) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let sets: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (checked, params) = frontend_with(&SourceFile::new(path, text), &sets).expect("checks with the values");
    ir::lower(&checked).bind(&params).expect("in its domain")
}

/// A datum's index by its `explain` name.
fn datum(obj: &Bound, name: &str) -> usize {
    obj.datums.iter().position(|d| d.name() == name).unwrap_or_else(|| panic!("{}: no datum {name}", obj.name))
}

/// Per-sample errors of a pair: `(e_th_w, e_ref_w, e_th_l, e_ref_l)`.
type PairRow = (f64, f64, f64, f64);

/// Leaves of a pair objective (`e_policy_winner`, `e_ref_winner`, `e_policy_loser`, `e_ref_loser`) from rows.
fn pair_leaves(obj: &Bound, rows: &[PairRow]) -> Vec<Vec<f64>> {
    let mut inputs = vec![Vec::new(); obj.inputs.len()];
    let names = ["e_policy_winner", "e_ref_winner", "e_policy_loser", "e_ref_loser"];
    for (k, name) in names.into_iter().enumerate() {
        inputs[index(obj, name)] = rows.iter().map(|r| [r.0, r.1, r.2, r.3][k]).collect();
    }
    inputs
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

fn errors() -> impl Strategy<Value = Vec<PairRow>> {
    prop::collection::vec((0.05f64..0.2, 0.05f64..0.2, 0.05f64..0.2, 0.05f64..0.2), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Wallace et al., Eq. 14: -log sigmoid(-beta T omega(lambda_t) (d_w - d_l)), omega = 1 or the Min-SNR
    /// weight; with omega = 1 and beta = beta_dpo / (2 T) it is dpo.obj's loss, gradient included.
    #[test]
    fn dpo_elbo_eq14(rows in errors(), snr in prop::collection::vec(1e-3f64..1e3, 8), t in prop::sample::select(vec![1000.0, 250.0]), omega in 0u8..2) {
        let obj = with_sets("dpo_elbo", &[("omega", if omega == 0 { "0" } else { "1" })]);
        let n = rows.len();
        let mut data = vec![Vec::new(); obj.datums.len()];
        data[datum(&obj, "snr_winner")] = snr[..n].to_vec();
        data[datum(&obj, "num_timesteps")] = vec![t];
        let leaves = LeafValues { inputs: pair_leaves(&obj, &rows), data };
        let got = evaluate(&obj, &leaves);
        let w = |i: usize| if omega == 0 { 1.0 } else { snr[i].min(5.0) / snr[i] };
        let margin = |i: usize, r: &PairRow| -2.5 * t * w(i) * ((r.0 - r.1) - (r.2 - r.3));
        let want: f64 = rows.iter().enumerate().map(|(i, r)| -log_sigmoid_exact(margin(i, r))).sum::<f64>() / n as f64;
        prop_assert!(close(got.loss, want, 1e-12), "{} vs {}", got.loss, want);
        // d/d e_th_w = sigmoid(-m) * beta T omega / n.
        let gw = got.grads[index(&obj, "e_policy_winner")].as_ref().unwrap();
        for (i, r) in rows.iter().enumerate() {
            prop_assert!(close(gw[i], sigmoid(-margin(i, r)) * 2.5 * t * w(i) / n as f64, 1e-10));
        }
        let (_, dfdx) = conformance::both(&obj, &leaves);
        prop_assert!(close(dfdx.loss, want, 1e-4), "f32 {} vs {}", dfdx.loss, want);
        if omega == 0 && t == 1000.0 {
            let dpo = load("dpo");
            let theirs = evaluate(&dpo, &LeafValues::leaves(pair_leaves(&dpo, &rows)));
            prop_assert!(close(got.loss, theirs.loss, 1e-12), "dpo_elbo {} vs dpo {}", got.loss, theirs.loss);
        }
    }

    /// cDPO with the data's label: -label log sigmoid(m) - (1 - label) log sigmoid(-m), m dpo.obj's margin.
    #[test]
    fn dpo_label_cdpo(rows in errors(), labels in prop::collection::vec(prop::sample::select(vec![0.0, 0.5, 1.0]), 8)) {
        let obj = load("dpo_label");
        let n = rows.len();
        let leaves = LeafValues { inputs: pair_leaves(&obj, &rows), data: vec![labels[..n].to_vec()] };
        prop_assert_eq!(&obj.datums, &vec![Datum::Label]);
        let got = evaluate(&obj, &leaves);
        let m = |r: &PairRow| -2500.0 * ((r.0 - r.1) - (r.2 - r.3));
        let want: f64 = rows
            .iter()
            .zip(&labels)
            .map(|(r, l)| -l * log_sigmoid_exact(m(r)) - (1.0 - l) * log_sigmoid_exact(-m(r)))
            .sum::<f64>()
            / n as f64;
        prop_assert!(close(got.loss, want, 1e-12), "{} vs {}", got.loss, want);
        // d/d e_th_w = -2500 (sigmoid(m) - label) / n.
        let gw = got.grads[index(&obj, "e_policy_winner")].as_ref().unwrap();
        for (i, r) in rows.iter().enumerate() {
            prop_assert!(close(gw[i], -2500.0 * (sigmoid(m(r)) - labels[i]) / n as f64, 1e-10));
        }
        let tie_share = labels[..n].iter().filter(|l| **l < 1.0).count() as f64 / n as f64;
        prop_assert_eq!(got.logs.iter().find(|(k, _)| k == "tie_share").map(|(_, v)| *v), Some(tie_share));
    }

    /// Diffusion-KTO on unpaired labelled images: w_y (1 - sigmoid(y beta (r - z0))), r = e_ref - e_th,
    /// z0 = max(0, mean r) without gradient, y = +1 / -1, w_+ = lambda_d, w_- = lambda_u.
    /// A class weight of 0 (lambda_u = 0 for label 0, lambda_d = 0 for label 1) gives that class no gradient.
    #[test]
    fn kto_unpaired(rows in prop::collection::vec((0.05f64..0.2, 0.05f64..0.2, prop::bool::ANY), 1..8), ld in prop_oneof![Just(0.0), 0.0f64..3.0], lu in prop_oneof![Just(0.0), 0.0f64..3.0]) {
        let obj = with_sets("kto_unpaired", &[("lambda_d", &format!("{ld:?}")), ("lambda_u", &format!("{lu:?}"))]);
        let (th, rf) = (index(&obj, "e_policy_image"), index(&obj, "e_ref_image"));
        let mut inputs = vec![Vec::new(); 2];
        inputs[th] = rows.iter().map(|r| r.0).collect();
        inputs[rf] = rows.iter().map(|r| r.1).collect();
        let labels: Vec<f64> = rows.iter().map(|r| f64::from(u8::from(r.2))).collect();
        let leaves = LeafValues { inputs, data: vec![labels] };
        let got = evaluate(&obj, &leaves);
        let n = rows.len() as f64;
        let z0 = (rows.iter().map(|r| r.1 - r.0).sum::<f64>() / n).max(0.0);
        let term = |r: &(f64, f64, bool)| {
            let (y, w) = if r.2 { (1.0, ld) } else { (-1.0, lu) };
            (y, w, sigmoid(y * 1000.0 * ((r.1 - r.0) - z0)))
        };
        let want: f64 = rows.iter().map(|r| { let (_, w, h) = term(r); w * (1.0 - h) }).sum::<f64>() / n;
        prop_assert!(close(got.loss, want, 1e-12), "{} vs {}", got.loss, want);
        // d/d e_th = w h (1 - h) y beta / n (r falls as e_th rises; z0 carries no gradient).
        let g = got.grads[th].as_ref().unwrap();
        for (i, r) in rows.iter().enumerate() {
            let (y, w, h) = term(r);
            prop_assert!(close(g[i], w * h * (1.0 - h) * y * 1000.0 / n, 1e-10), "{} vs formula", g[i]);
        }
        prop_assert!(close(got.logs[0].1, z0, 1e-12));
        let (_, dfdx) = conformance::both(&obj, &leaves);
        for (i, r) in rows.iter().enumerate() {
            if (if r.2 { ld } else { lu }) == 0.0 {
                prop_assert_eq!((g[i], dfdx.grads[th].as_ref().unwrap()[i]), (0.0, 0.0), "sample {} has weight 0", i);
            }
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
