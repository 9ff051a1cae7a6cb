//! Noise draws, timestep values and prediction-space distances: a K-draw average is the mean of K single-draw
//! evaluations (oracle and dfdx), a constant or data weight scales the gradient, the schedule's timestep values
//! follow their definitions, and the trainer runs each construct at the plan's minimum cost.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::compile::conformance;
use seppoc::data::{PreferenceSet, SyntheticWorld, Vocab, World, WorldConfig, MAX_TOKENS};
use seppoc::device::{cpu, CpuDevice};
use seppoc::frontend::frontend_with;
use seppoc::ir::{evaluate, lower, Bound, Datum, LeafValues, TimeQty};
use seppoc::model::{Dit, DitConfig, NoiseSchedule};
use seppoc::source::SourceFile;
use seppoc::trainer::{TrainConfig, TrainError, Trainer, TrainerParts};

fn bound(text: &str) -> Bound {
    let (checked, params) = frontend_with(&SourceFile::new("t.obj", text), &[]).expect("checks");
    lower(&checked).bind(&params).expect("binds")
}

const SINGLE: &str = "objective one\nreference ref = initial\nparam beta: real = 3.0\n\
    let m = beta * (err(ref, winner) - err(policy, winner))\nloss mean(-logsigmoid(m))";

fn draws_text(k: usize) -> String {
    format!(
        "objective k\nreference ref = initial\nparam beta: real = 3.0\n\
         let m = beta * (err(ref, winner) - err(policy, winner))\nloss mean(draws({k}, -logsigmoid(m)))"
    )
}

/// Every leaf's values: `all[d]` holds draw d's policy and reference errors.
fn per_draw(obj: &Bound, all: &[Vec<Vec<f64>>]) -> Vec<Vec<f64>> {
    obj.inputs.iter().map(|i| all[i.draw as usize][usize::from(i.model.name() != "policy")].clone()).collect()
}

/// The index of the (first) policy leaf.
fn policy_of(obj: &Bound) -> usize {
    obj.inputs.iter().position(|i| i.model.name() == "policy").expect("a policy leaf")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `draws(K, f)` is the mean over draws of `f` on each draw, in value and in gradient (oracle and dfdx).
    #[test]
    fn k_draw_average_is_the_mean_of_single_draws(
        k in 1usize..6,
        vals in prop::collection::vec((0.01f64..2.0, 0.01f64..2.0), 30),
    ) {
        let batch = 5;
        // all[d] = [policy errors, reference errors] of draw d.
        let all: Vec<Vec<Vec<f64>>> = (0..k)
            .map(|d| {
                let rows = &vals[d * batch..(d + 1) * batch];
                vec![rows.iter().map(|r| r.0).collect(), rows.iter().map(|r| r.1).collect()]
            })
            .collect();
        let multi = bound(&draws_text(k));
        let single = bound(SINGLE);
        prop_assert_eq!(multi.inputs.len(), 2 * k);
        let leaves = LeafValues::leaves(per_draw(&multi, &all));
        let (oracle, dfdx) = (evaluate(&multi, &leaves), conformance::both(&multi, &leaves).1);
        let mut mean = 0.0;
        for (d, draw) in all.iter().enumerate() {
            let one = evaluate(&single, &LeafValues::leaves(per_draw(&single, std::slice::from_ref(draw))));
            mean += one.loss / k as f64;
            let policy = multi.inputs.iter().position(|i| i.draw as usize == d && i.model.name() == "policy").unwrap();
            let g = oracle.grads[policy].as_ref().unwrap();
            let g1 = one.grads[policy_of(&single)].as_ref().unwrap();
            for i in 0..batch {
                prop_assert!((g[i] - g1[i] / k as f64).abs() <= 1e-12 * (1.0 + g1[i].abs()));
                let gd = dfdx.grads[policy].as_ref().unwrap()[i];
                prop_assert!((gd - g[i]).abs() <= 1e-5 * (1.0 + g[i].abs()), "dfdx {} vs oracle {}", gd, g[i]);
            }
        }
        prop_assert!((oracle.loss - mean).abs() <= 1e-12 * (1.0 + mean.abs()), "{} vs {}", oracle.loss, mean);
        prop_assert!((dfdx.loss - mean).abs() <= 1e-5 * (1.0 + mean.abs()));
    }

    /// A constant weight scales the gradient by itself; a per-sample data weight (`snr`) scales each sample's.
    #[test]
    fn weights_scale_the_gradient(
        c in 0.01f64..50.0,
        vals in prop::collection::vec((0.01f64..2.0, 0.01f64..2.0, 0.001f64..1000.0), 4),
    ) {
        let base = bound("objective b\nreference ref = initial\nloss mean(-logsigmoid(err(ref, winner) - err(policy, winner)))");
        let scaled = bound(&format!(
            "objective s\nreference ref = initial\nloss mean({c:?} * -logsigmoid(err(ref, winner) - err(policy, winner)))"
        ));
        let weighted = bound("objective w\nreference ref = initial\n\
            loss mean(snr(winner) * -logsigmoid(err(ref, winner) - err(policy, winner)))");
        // Reference errors first: `err(ref, winner)` is each file's first leaf.
        let leaves = vec![vals.iter().map(|v| v.1).collect::<Vec<_>>(), vals.iter().map(|v| v.0).collect()];
        let p = policy_of(&base);
        prop_assert_eq!(p, 1);
        let g0 = evaluate(&base, &LeafValues::leaves(leaves.clone())).grads[p].clone().unwrap();
        let gs = evaluate(&scaled, &LeafValues::leaves(leaves.clone())).grads[p].clone().unwrap();
        prop_assert_eq!(&weighted.datums, &vec![Datum::Time(TimeQty::Snr, weighted.inputs[0].view())]);
        let snr: Vec<f64> = vals.iter().map(|v| v.2).collect();
        let with_data = LeafValues { inputs: leaves, data: vec![snr.clone()] };
        let (gw, dfdx) = (evaluate(&weighted, &with_data), conformance::both(&weighted, &with_data).1);
        let gw = gw.grads[p].clone().unwrap();
        for i in 0..4 {
            prop_assert!((gs[i] - c * g0[i]).abs() <= 1e-12 * (1.0 + gs[i].abs()));
            prop_assert!((gw[i] - snr[i] * g0[i]).abs() <= 1e-12 * (1.0 + gw[i].abs()));
            let gd = dfdx.grads[p].as_ref().unwrap()[i];
            prop_assert!((gd - gw[i]).abs() <= 1e-4 * (1.0 + gw[i].abs()), "dfdx {} vs {}", gd, gw[i]);
        }
    }
}

#[test]
fn timestep_values_follow_the_ddpm_definitions() {
    let s = NoiseSchedule::default_linear();
    for t in [0, 1, 499, 998, 999, 5000] {
        let v = s.time_values(t);
        let ab = s.alphas_cumprod[t.min(999)];
        assert_eq!(v.alpha, ab.sqrt());
        assert_eq!(v.sigma, (1.0 - ab).sqrt());
        assert_eq!(v.snr, ab / (1.0 - ab));
        assert!((v.alpha * v.alpha + v.sigma * v.sigma - 1.0).abs() < 1e-12, "variance preserving");
        assert_eq!(v.timestep, (t.min(999) + 1) as f64 / 1000.0);
    }
    assert!(s.time_values(0).snr > s.time_values(500).snr, "snr falls with t");
}

fn trainer(text: &str, steps: usize) -> Trainer<CpuDevice> {
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let data: PreferenceSet = world.preference_set(32, &mut ChaCha8Rng::seed_from_u64(7));
    let vocab = Vocab::new();
    let initial = Dit::new(&DitConfig::tiny(16, vocab.len(), MAX_TOKENS), &cpu(), 3).expect("tiny model");
    let parts =
        TrainerParts { objective: bound(text), initial, schedule: NoiseSchedule::default_linear(), data, vocab };
    let cfg = TrainConfig {
        batch: 4,
        lr: 3e-3,
        warmup: 0,
        max_grad_norm: 1.0,
        ema_decay: None,
        seed: 5,
        caption_dropout: 0.0,
    };
    let mut tr = Trainer::new(parts, cfg).expect("trainer starts");
    tr.set_total_steps(steps);
    tr
}

#[test]
fn trainer_averages_draws_at_the_plan_cost() {
    let mut tr = trainer("objective k\nnoise independent\nloss mean(draws(3, err(policy, winner)))", 4);
    let plan = tr.obj.plan();
    assert_eq!(plan.nfe_passes, 3, "one pass per draw");
    let r = tr.step().expect("step");
    assert_eq!(r.nfe, 3 * 4);
    let means: Vec<f64> = r.leaf_means.iter().map(|(_, v)| *v).collect();
    assert_eq!(means.len(), 3);
    assert!((r.loss - means.iter().sum::<f64>() / 3.0).abs() < 1e-5, "{} vs {means:?}", r.loss);
    assert!(means[0] != means[1] && means[1] != means[2], "independent draws differ: {means:?}");
}

#[test]
fn dist_to_the_initial_model_is_zero_first_and_restrains_training() {
    let text = "objective kl\nparam lambda: real = 0.0\nreference ref = initial\n\
        let kl = dist(policy, ref, winner)\nlog kl_mean = mean(stopgrad(kl))\n\
        loss mean(err(policy, winner) + lambda * kl)";
    let mut tr = trainer(text, 20);
    assert_eq!(tr.obj.plan().nfe_passes, 2, "policy and ref on the winner, once each");
    let first = tr.step().expect("step");
    assert_eq!(first.logs[0].1, 0.0, "theta == theta_0: identical predictions");
    let kl_after = |lambda: &str| {
        let mut tr = trainer(&text.replace("0.0", lambda), 20);
        (0..12).map(|_| tr.step().expect("step").logs[0].1).last().unwrap()
    };
    let (free, held) = (kl_after("0.0"), kl_after("50.0"));
    assert!(free > 0.0 && held < 0.5 * free, "distance without penalty {free}, with {held}");
}

#[test]
fn progress_needs_the_run_length_and_counts_updates() {
    let text = "objective p\nlog p = progress\nloss mean(err(policy, winner)) * (1.0 - progress)";
    let mut tr = trainer(text, 4);
    let ps: Vec<f64> = (0..4).map(|_| tr.step().expect("step").logs[0].1).collect();
    assert_eq!(ps, vec![0.0, 0.25, 0.5, 0.75]);
    let mut unset = trainer(text, 0);
    assert!(matches!(unset.step(), Err(TrainError::Data(m)) if m.contains("progress")));
}

#[test]
fn timestep_values_reach_the_loss() {
    let text = "objective w\nlog s = mean(snr(winner))\nlog t = mean(timestep(winner))\nloss mean(err(policy, winner))";
    let mut tr = trainer(text, 1);
    let r = tr.step().expect("step");
    let (s, t) = (r.logs[0].1, r.logs[1].1);
    assert!(s > 0.0 && (0.0..=1.0).contains(&t) && t > 0.0, "snr {s}, timestep {t}");
}

#[test]
fn chains_of_averaged_bindings_lower_in_linear_time() {
    // Each binding averages the previous one over 64 draws: lowering must not redo the chain per path.
    let mut text = String::from("objective chain\nlet a0 = err(policy, winner)\n");
    for k in 1..=12 {
        text.push_str(&format!("let a{k} = draws(64, a{} + a{})\n", k - 1, k - 1));
    }
    text.push_str("loss mean(a12)\n");
    let start = std::time::Instant::now();
    let obj = bound(&text);
    assert!(start.elapsed().as_secs_f64() < 2.0, "lowering took {:?}", start.elapsed());
    // The innermost average wins: a1 averages a0 over draws 0..63, and so does every later binding.
    assert_eq!(obj.inputs.len(), 64);
}

#[test]
fn loss_cli_reads_timestep_values_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("seppoc-draws-loss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let run = |inputs: serde_json::Value| {
        let path = dir.join("inputs.json");
        std::fs::write(&path, inputs.to_string()).expect("writes");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_seppoc"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["loss", "objectives/sft_minsnr.obj", "--inputs"])
            .arg(&path)
            .output()
            .expect("runs seppoc");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) =
        run(serde_json::json!({"inputs": {"e_policy_winner": [0.2, 0.4], "snr_winner": [10.0, 2.0]}}));
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let want = (5.0 / 10.0 * 0.2 + 1.0 * 0.4) / 2.0;
    // Leaves are rounded to f32 before evaluation (as in training); the timestep values are not.
    assert!((v["oracle_f64"]["loss"].as_f64().unwrap() - want).abs() < 1e-8, "{stdout}");
    assert_eq!(v["oracle_f64"]["grad"]["e_policy_winner"], serde_json::json!([0.25, 0.5]));
    let (code, _, stderr) = run(serde_json::json!({"inputs": {"e_policy_winner": [0.2, 0.4]}}));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("missing leaf `snr_winner`"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
