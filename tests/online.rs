//! Online objectives: `mix_err` against the mixed prediction's error computed from prediction vectors, group
//! statistics on known inputs and their invariants, DiffusionNFT and the GRPO file against their formulas written
//! out by hand in f64 (gradients through the predictions included), the dfdx graph against the oracle, and the
//! command line (`check`, `fmt`, `explain`, `loss --inputs`) on the shipped files.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::compile::conformance;
use seppoc::frontend::Objective as Parsed;
use seppoc::ir::{self, evaluate, Bound, GroupOp, LeafValues, Node};
use serde_json::{json, Value};
use std::process::Command;

const SEPPOC: &str = env!("CARGO_BIN_EXE_seppoc");
/// Elements of one prediction (C·H·W): errors are means over them.
const DIM: usize = 12;

fn parse(text: &str) -> Bound {
    let parsed = Parsed::parse("t.obj", text).unwrap_or_else(|(_, d)| panic!("{d:?}"));
    ir::lower(&parsed.checked).bind_defaults()
}

fn shipped(name: &str) -> Bound {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    parse(&std::fs::read_to_string(path).expect("objective exists"))
}

fn index(obj: &Bound, name: &str) -> usize {
    obj.inputs.iter().position(|i| i.name() == name).unwrap_or_else(|| panic!("{}: no leaf {name}", obj.name))
}

fn datum(obj: &Bound, name: &str) -> usize {
    obj.datums.iter().position(|d| d.name() == name).unwrap_or_else(|| panic!("{}: no datum {name}", obj.name))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// `mean_i (a_i - b_i)^2`.
fn msq(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len() as f64
}

fn vector(rng: &mut ChaCha8Rng, around: Option<&[f64]>, spread: f64) -> Vec<f64> {
    (0..DIM).map(|i| around.map_or(0.0, |c| c[i]) + rng.gen_range(-spread..spread)).collect()
}

/// One row's predictions: the policy `p`, the sampling policy `q` (close to it), the target `t` and the initial
/// model `s`.
struct Row {
    p: Vec<f64>,
    q: Vec<f64>,
    t: Vec<f64>,
    s: Vec<f64>,
}

fn rows(rng: &mut ChaCha8Rng, n: usize) -> Vec<Row> {
    (0..n)
        .map(|_| {
            let t = vector(rng, None, 1.0);
            let p = vector(rng, Some(&t), 0.6);
            let q = vector(rng, Some(&p), 0.05);
            let s = vector(rng, Some(&p), 0.1);
            Row { p, q, t, s }
        })
        .collect()
}

/// The leaves of an objective over `sample0` from prediction vectors: `err` is `msq(pred, t)`, `dist` is
/// `msq(p, other)`.
fn leaves_from(obj: &Bound, rows: &[Row]) -> Vec<Vec<f64>> {
    obj.inputs
        .iter()
        .map(|input| {
            rows.iter()
                .map(|r| match (input.model.name(), input.against.as_deref()) {
                    ("policy", None) => msq(&r.p, &r.t),
                    ("old", None) | ("ref", None) => msq(&r.q, &r.t),
                    ("policy", Some("old" | "ref")) => msq(&r.p, &r.q),
                    ("policy", Some("init")) => msq(&r.p, &r.s),
                    other => panic!("unexpected leaf {other:?}"),
                })
                .collect()
        })
        .collect()
}

/// `d loss / d p` of one row from the oracle's leaf gradients, by the chain rule through the leaves.
fn grad_p(obj: &Bound, grads: &[Option<Vec<f64>>], r: &Row, i: usize) -> Vec<f64> {
    let mut g = vec![0.0; DIM];
    for (input, lg) in obj.inputs.iter().zip(grads) {
        let Some(lg) = lg else { continue };
        let other = match input.against.as_deref() {
            None => &r.t,
            Some("init") => &r.s,
            Some(_) => &r.q,
        };
        for k in 0..DIM {
            g[k] += lg[i] * 2.0 * (r.p[k] - other[k]) / DIM as f64;
        }
    }
    g
}

/// Group mean and population standard deviation of each row's block of `k`.
fn group_stats(x: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut m, mut s) = (Vec::new(), Vec::new());
    for block in x.chunks(k) {
        let mean = block.iter().sum::<f64>() / k as f64;
        let var = block.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / k as f64;
        m.extend(std::iter::repeat_n(mean, k));
        s.extend(std::iter::repeat_n(var.sqrt(), k));
    }
    (m, s)
}

#[test]
fn mix_err_is_the_error_of_the_mixed_prediction() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let rs = rows(&mut rng, 5);
    for w in [0.3, 1.0, 0.0, -0.7, 1.8] {
        let text = format!(
            "objective t\nparam w: real = {w:?}\nreference ref = initial\nloss mean(mix_err(policy, ref, w, winner))\n"
        );
        let obj = parse(&text);
        let inputs: Vec<Vec<f64>> = obj
            .inputs
            .iter()
            .map(|i| {
                rs.iter()
                    .map(|r| match (i.model.name(), &i.against) {
                        ("policy", None) => msq(&r.p, &r.t),
                        ("ref", None) => msq(&r.q, &r.t),
                        (_, Some(_)) => msq(&r.p, &r.q),
                        other => panic!("unexpected leaf {other:?}"),
                    })
                    .collect()
            })
            .collect();
        let ev = evaluate(&obj, &LeafValues::leaves(inputs));
        let mixed = |r: &Row| -> Vec<f64> { (0..DIM).map(|k| w * r.p[k] + (1.0 - w) * r.q[k]).collect() };
        let direct: Vec<f64> = rs.iter().map(|r| msq(&mixed(r), &r.t)).collect();
        let per = ev.per_sample.as_ref().expect("a batch mean of per-sample values");
        for (i, (a, b)) in per.iter().zip(&direct).enumerate() {
            assert!(rel(*a, *b) <= 1e-12, "w = {w}, row {i}: identity {a} vs direct {b}");
        }
        // The gradient through the predictions: d/dp mean_CHW (w p + (1-w) q - t)^2 / B = 2 w (mix - t) / (D B).
        for (i, r) in rs.iter().enumerate() {
            let got = grad_p(&obj, &ev.grads, r, i);
            let m = mixed(r);
            for k in 0..DIM {
                let want = 2.0 * w * (m[k] - r.t[k]) / (DIM * rs.len()) as f64;
                assert!((got[k] - want).abs() <= 1e-12 * (1.0 + want.abs()), "w = {w}: d/dp[{k}] {} vs {want}", got[k]);
            }
        }
    }
}

const GROUP_FILE: &str = "objective g\nreference ref = initial\nlet x = sample(ref, prompt, group = 4)\n\
    let m = group_mean(reward(x))\nlet s = group_std(reward(x))\nlog mm = mean(group_mean(m))\n\
    loss mean((m + s) * err(policy, x))\n";

fn group_node(obj: &Bound, op: GroupOp) -> usize {
    obj.nodes.iter().position(|n| matches!(n, Node::Group(o, _) if *o == op)).expect("a group node")
}

#[test]
fn group_statistics_on_known_inputs() {
    let obj = parse(GROUP_FILE);
    assert_eq!(obj.group(), 4);
    let rewards = vec![1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0];
    let mut data = vec![Vec::new(); obj.datums.len()];
    data[datum(&obj, "reward_sample0")] = rewards.clone();
    let ev = evaluate(&obj, &LeafValues { inputs: vec![vec![0.1; 8]], data });
    let m = &ev.values[group_node(&obj, GroupOp::Mean)];
    let s = &ev.values[group_node(&obj, GroupOp::Std)];
    assert_eq!(m, &[2.5, 2.5, 2.5, 2.5, 5.0, 5.0, 5.0, 5.0]);
    // Population standard deviation (ddof 0) of 1, 2, 3, 4: sqrt(1.25); a constant block's is exactly 0.
    assert_eq!(s[..4], [1.25f64.sqrt(); 4]);
    assert_eq!(s[4..], [0.0; 4]);
    // No gradient through the statistics: d loss / d e_policy is (m + s) / B, the statistics' values.
    let g = ev.grads[0].as_ref().expect("policy leaf");
    for i in 0..8 {
        assert!(rel(g[i], (m[i] + s[i]) / 8.0) <= 1e-15);
    }
    // Rows that are not whole groups: named before evaluation, NaN in the oracle.
    let err = ir::group_rows(&obj, 6).expect_err("6 rows are not groups of 4");
    assert!(err.to_string().contains("groups of 4 rows") && err.to_string().contains("6 rows"), "{err}");
    assert!(ir::group_rows(&obj, 12).is_ok());
    let mut data = vec![Vec::new(); obj.datums.len()];
    data[datum(&obj, "reward_sample0")] = rewards[..6].to_vec();
    let ev = evaluate(&obj, &LeafValues { inputs: vec![vec![0.1; 6]], data });
    assert!(ev.loss.is_nan());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// mean(group_mean(x)) = mean(x); group_mean is idempotent; group_std >= 0, and 0 on constant blocks.
    #[test]
    fn group_statistic_invariants(x in prop::collection::vec(-5.0f64..5.0, 8..=8 * 6), constant in any::<bool>()) {
        let obj = parse(
            "objective g\nreference ref = initial\nlet x = sample(ref, prompt, group = 8)\nlet r = reward(x)\n\
             log a = mean(group_mean(r))\nlog b = mean(r)\nlog c = mean(abs(group_mean(group_mean(r)) - group_mean(r)))\n\
             log d = mean(group_std(r) < 0)\nlog e = mean(group_std(r))\nloss mean(group_std(r) * err(policy, x))\n",
        );
        let n = x.len() / 8 * 8;
        let x: Vec<f64> = if constant { x[..n].chunks(8).flat_map(|b| [b[0]; 8]).collect() } else { x[..n].to_vec() };
        let mut data = vec![Vec::new(); obj.datums.len()];
        data[datum(&obj, "reward_sample0")] = x.clone();
        let ev = evaluate(&obj, &LeafValues { inputs: vec![vec![0.2; n]], data });
        let log = |name: &str| ev.logs.iter().find(|(k, _)| k == name).expect("logged").1;
        prop_assert!((log("a") - log("b")).abs() <= 1e-12 * (1.0 + log("b").abs()));
        prop_assert_eq!(log("c"), 0.0);
        prop_assert_eq!(log("d"), 0.0);
        if constant {
            prop_assert_eq!(log("e"), 0.0);
        }
        let (m, s) = group_stats(&x, 8);
        for (got, want) in [(&ev.values[group_node(&obj, GroupOp::Mean)], &m), (&ev.values[group_node(&obj, GroupOp::Std)], &s)] {
            prop_assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(want) {
                prop_assert!((a - b).abs() <= 1e-13, "{} vs {}", a, b);
            }
        }
    }
}

/// The leaves and data of a shipped online file on `groups` groups of 8 rows, with the rows and rewards.
fn online_case(obj: &Bound, seed: u64, groups: usize) -> (Vec<Row>, Vec<f64>, LeafValues) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rs = rows(&mut rng, 8 * groups);
    let rewards: Vec<f64> = (0..rs.len()).map(|_| rng.gen_range(-2.0..3.0)).collect();
    let mut data = vec![Vec::new(); obj.datums.len()];
    data[datum(obj, "reward_sample0")] = rewards.clone();
    let inputs = leaves_from(obj, &rs);
    (rs, rewards, LeafValues { inputs, data })
}

/// DiffusionNFT written out: v+ = (1 - beta) v_old + beta v_theta, v- = (1 + beta) v_old - beta v_theta,
/// r from the clipped group-normalised advantage, the policy term times adv_clip_max / beta, plus
/// 1e-4 ||v_theta - v_init||^2. Returns the loss and d loss / d p per row.
fn nft_by_hand(rs: &[Row], rewards: &[f64]) -> (f64, Vec<Vec<f64>>) {
    let (beta, clip, kl) = (1.0, 5.0, 1e-4);
    let (m, s) = group_stats(rewards, 8);
    let b = rs.len() as f64;
    let (mut loss, mut grads) = (0.0, Vec::new());
    for (i, row) in rs.iter().enumerate() {
        let a = ((rewards[i] - m[i]) / (s[i] + 1e-4)).clamp(-clip, clip);
        let r = (a / clip / 2.0 + 0.5).clamp(0.0, 1.0);
        let vp: Vec<f64> = (0..DIM).map(|k| (1.0 - beta) * row.q[k] + beta * row.p[k]).collect();
        let vn: Vec<f64> = (0..DIM).map(|k| (1.0 + beta) * row.q[k] - beta * row.p[k]).collect();
        let scale = clip / beta;
        loss += (scale * (r * msq(&vp, &row.t) + (1.0 - r) * msq(&vn, &row.t)) + kl * msq(&row.p, &row.s)) / b;
        let g = (0..DIM)
            .map(|k| {
                let d = DIM as f64;
                (scale * (r * 2.0 * beta * (vp[k] - row.t[k]) - (1.0 - r) * 2.0 * beta * (vn[k] - row.t[k]))
                    + kl * 2.0 * (row.p[k] - row.s[k]))
                    / (d * b)
            })
            .collect();
        grads.push(g);
    }
    (loss, grads)
}

#[test]
fn diffusion_nft_equals_its_formula() {
    let obj = shipped("diffusion_nft");
    assert_eq!(obj.group(), 8);
    for seed in 0..4 {
        let (rs, rewards, leaves) = online_case(&obj, seed, 3);
        let ev = evaluate(&obj, &leaves);
        let (want, want_grad) = nft_by_hand(&rs, &rewards);
        assert!(rel(ev.loss, want) <= 1e-12, "seed {seed}: oracle {} vs formula {want}", ev.loss);
        for (i, row) in rs.iter().enumerate() {
            let got = grad_p(&obj, &ev.grads, row, i);
            for k in 0..DIM {
                let w = want_grad[i][k];
                assert!(
                    (got[k] - w).abs() <= 1e-12 * (1.0 + w.abs()),
                    "seed {seed} row {i}: d/dp[{k}] {} vs {w}",
                    got[k]
                );
            }
        }
    }
}

#[test]
fn grpo_elbo_equals_its_formula() {
    let obj = shipped("grpo_elbo");
    let (c, eps, kl) = (1.0, 0.2, 0.04);
    for seed in 10..14 {
        let (rs, rewards, leaves) = online_case(&obj, seed, 2);
        let ev = evaluate(&obj, &leaves);
        let (m, s) = group_stats(&rewards, 8);
        let mut want = 0.0;
        for (i, row) in rs.iter().enumerate() {
            let a = (rewards[i] - m[i]) / (s[i] + 1e-4);
            let ratio = (c * (msq(&row.q, &row.t) - msq(&row.p, &row.t))).exp();
            let surrogate = (ratio * a).min(ratio.clamp(1.0 - eps, 1.0 + eps) * a);
            want += (-surrogate + kl * msq(&row.p, &row.s)) / rs.len() as f64;
        }
        assert!(rel(ev.loss, want) <= 1e-12, "seed {seed}: oracle {} vs formula {want}", ev.loss);
    }
    // With c large enough to leave the clip range, the clipped rows pass no surrogate gradient (PPO's clip).
    let text = std::fs::read_to_string(format!("{}/objectives/grpo_elbo.obj", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let obj = parse(&text.replace("param c: real = 1.0 ", "param c: real = 100.0 "));
    let (rs, _, leaves) = online_case(&obj, 20, 2);
    let ev = evaluate(&obj, &leaves);
    let spread = &ev.values[group_node(&obj, GroupOp::Std)];
    assert!(spread.iter().all(|v| *v > 0.0), "every group's rewards differ, so every advantage has a sign");
    let ep = index(&obj, "e_policy_sample0");
    let g = ev.grads[ep].as_ref().expect("policy leaf");
    let mut clipped = 0;
    for (i, row) in rs.iter().enumerate() {
        let ratio = (100.0 * (msq(&row.q, &row.t) - msq(&row.p, &row.t))).exp();
        let a = leaves.data[datum(&obj, "reward_sample0")][i];
        let a = a - leaves.data[datum(&obj, "reward_sample0")][i / 8 * 8..i / 8 * 8 + 8].iter().sum::<f64>() / 8.0;
        let outside = (a > 0.0 && ratio > 1.2) || (a < 0.0 && ratio < 0.8);
        if outside {
            clipped += 1;
            assert_eq!(g[i], 0.0, "row {i}: ratio {ratio} clipped, yet a gradient");
        } else {
            assert!(g[i] != 0.0, "row {i}: ratio {ratio} inside the surrogate's active side, yet no gradient");
        }
    }
    assert!(clipped > 0 && clipped < rs.len(), "{clipped} of {} rows clipped: one side went unchecked", rs.len());
}

#[test]
fn dfdx_graph_agrees_with_the_oracle_on_online_files() {
    for name in ["diffusion_nft", "grpo_elbo"] {
        let obj = shipped(name);
        let (_, _, leaves) = online_case(&obj, 7, 2);
        let (oracle, dfdx) = conformance::both(&obj, &leaves);
        assert!(rel(oracle.loss, dfdx.loss) <= 1e-5, "{name}: oracle {} vs dfdx {}", oracle.loss, dfdx.loss);
        let scale = oracle.grads.iter().flatten().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: no gradient");
        for (k, (a, b)) in oracle.grads.iter().zip(&dfdx.grads).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => {
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        assert!((x - y).abs() <= 1e-5 * scale, "{name}: leaf {k} row {i}: oracle {x} vs dfdx {y}");
                    }
                }
                (None, None) => {}
                _ => panic!("{name}: leaf {k} has a gradient in one backend only"),
            }
        }
    }
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(SEPPOC).args(args).output().expect("runs seppoc");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn command_line_on_the_online_files() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("seppoc-online-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for name in ["diffusion_nft", "grpo_elbo"] {
        let path = format!("{root}/objectives/{name}.obj");
        let (ok, _, err) = run(&["check", &path]);
        assert!(ok, "{name}: check: {err}");
        let (ok, _, err) = run(&["fmt", "--check", &path]);
        assert!(ok, "{name}: fmt --check: {err}");
        let (ok, explain, err) = run(&["explain", &path]);
        assert!(ok, "{name}: explain: {err}");
        assert!(explain.contains("reward_sample0 = reward(sample0) (the run's reward model's score"), "{explain}");
        assert!(explain.contains("group_std n") && explain.contains("(over groups of 8 rows)"), "{explain}");
        assert!(explain.contains("in groups of 8 per prompt"), "{explain}");
        // `loss --inputs`: two groups evaluate; 12 rows are refused, naming the statistic and the group size.
        let obj = shipped(name);
        for (rows, fine) in [(16usize, true), (12, false)] {
            let mut rng = ChaCha8Rng::seed_from_u64(rows as u64);
            let mut inputs = serde_json::Map::new();
            for input in &obj.inputs {
                let v: Vec<f64> = (0..rows).map(|_| rng.gen_range(0.05..0.5)).collect();
                inputs.insert(input.name(), json!(v));
            }
            let r: Vec<f64> = (0..rows).map(|_| rng.gen_range(0.0..1.0)).collect();
            inputs.insert("reward_sample0".into(), json!(r));
            let file = dir.join(format!("{name}_{rows}.json"));
            std::fs::write(&file, json!({ "inputs": inputs }).to_string()).expect("writes inputs");
            let (ok, out, err) = run(&["loss", &path, "--inputs", file.to_str().expect("UTF-8 path")]);
            assert_eq!(ok, fine, "{name} on {rows} rows: {out}{err}");
            if fine {
                let v: Value = serde_json::from_str(&out).expect("JSON");
                assert!(v["oracle_f64"]["loss"].as_f64().is_some_and(f64::is_finite), "{out}");
            } else {
                assert!(err.contains("groups of 8 rows") && err.contains("12 rows"), "{err}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
