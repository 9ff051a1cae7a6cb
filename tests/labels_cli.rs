//! The data-field objectives from the command line: `check`, `explain`, `fmt`, `loss` with `label` given by
//! name, and short `seppoc run`s of Diffusion-KTO on unpaired labelled data and of a reward-reading objective on
//! the shipped Pick-a-Pic-shaped set; an objective reading a field the data lacks stops before training with an
//! error naming the file and the column.

mod cli_support;

use cli_support::{scratch, seppoc, text};
use serde_json::{json, Value};

#[test]
fn new_objectives_check_explain_and_format() {
    for name in ["kto_unpaired", "dpo_label", "dpo_elbo"] {
        let file = format!("objectives/{name}.obj");
        let o = seppoc(&["check", &file]);
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        let o = seppoc(&["fmt", "--check", &file]);
        assert!(o.status.success(), "{name} is canonical: {}", text(&o.stderr));
        let o = seppoc(&["explain", &file]);
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        let plan = text(&o.stdout);
        match name {
            "kto_unpaired" => assert!(
                plan.contains("d0 label = label")
                    && plan.contains("pass policy (taped) on [image]")
                    && plan.contains("ties left out"),
                "{plan}"
            ),
            "dpo_label" => assert!(plan.contains("ties (label 0.5, image 0 as winner)"), "{plan}"),
            _ => assert!(
                plan.contains("num_timesteps = num_timesteps (the noise schedule's training timesteps T)"),
                "{plan}"
            ),
        }
    }
}

#[test]
fn loss_takes_the_label_by_name() {
    let dir = scratch("labels", "loss");
    let path = dir.join("inputs.json");
    let inputs = serde_json::json!({"inputs": {
        "e_policy_winner": [0.10, 0.20], "e_ref_winner": [0.11, 0.20],
        "e_policy_loser": [0.30, 0.40], "e_ref_loser": [0.30, 0.40], "label": [1.0, 0.5]
    }});
    std::fs::write(&path, inputs.to_string()).expect("written");
    let o = seppoc(&["loss", "objectives/dpo_label.obj", "--inputs", path.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let got: Value = serde_json::from_str(&text(&o.stdout)).expect("json");
    // Sample 0: m = -2500 (-0.01) = 25, -log sigmoid(25); sample 1 is a tie at m = 0: log 2.
    let want = ((-25f64).exp().ln_1p() + std::f64::consts::LN_2) / 2.0;
    let loss = got["oracle_f64"]["loss"].as_f64().expect("loss");
    assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
    assert_eq!(got["oracle_f64"]["logs"]["tie_share"].as_f64(), Some(0.5));
    // Without the label the inputs are incomplete, and the message names it.
    let partial = serde_json::json!({"inputs": {
        "e_policy_winner": [0.1], "e_ref_winner": [0.1], "e_policy_loser": [0.3], "e_ref_loser": [0.3]
    }});
    std::fs::write(&path, partial.to_string()).expect("written");
    let o = seppoc(&["loss", "objectives/dpo_label.obj", "--inputs", path.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("missing leaf `label`"), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seppoc loss` on `image` leaves with labels (Diffusion-KTO) and with `num_timesteps` as a one-value list.
#[test]
fn loss_takes_image_leaves_and_num_timesteps() {
    let dir = scratch("labels", "loss_kto");
    let path = dir.join("inputs.json");
    let run = |file: &str, inputs: Value| -> Value {
        std::fs::write(&path, json!({ "inputs": inputs }).to_string()).expect("written");
        let o = seppoc(&["loss", file, "--inputs", path.to_str().expect("utf-8")]);
        assert!(o.status.success(), "{file}: {}", text(&o.stderr));
        serde_json::from_str(&text(&o.stdout)).expect("json")
    };
    // Leaves exact in f32 (seppoc loss rounds them as training does): r = e_ref - e_th = (1/512, -1/512),
    // z0 = max(0, 0) = 0; labels 1 and 0 give both samples 1 - sigmoid(1000/512).
    let kto = run(
        "objectives/kto_unpaired.obj",
        json!({"e_policy_image": [0.125, 0.126953125], "e_ref_image": [0.126953125, 0.125], "label": [1.0, 0.0]}),
    );
    let want = 1.0 - 1.0 / (1.0 + (-1000.0f64 / 512.0).exp());
    let got = kto["oracle_f64"]["loss"].as_f64().expect("loss");
    assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    // dpo_elbo at T = 1000 (and omega = 1) equals dpo.obj at beta = 2 T beta = 5000.
    let errors =
        json!({"e_policy_winner": [0.10], "e_ref_winner": [0.1002], "e_policy_loser": [0.3], "e_ref_loser": [0.2999]});
    let mut inputs = errors.clone();
    inputs["snr_winner"] = json!([2.0]);
    inputs["num_timesteps"] = json!([1000]);
    let elbo = run("objectives/dpo_elbo.obj", inputs);
    let dpo = run("objectives/dpo.obj", errors);
    let (a, b) =
        (elbo["oracle_f64"]["loss"].as_f64().expect("loss"), dpo["oracle_f64"]["loss"].as_f64().expect("loss"));
    assert!((a - b).abs() < 1e-12 && elbo["oracle_f64"]["logs"]["elbo_weight"] == json!(1000.0), "{a} vs {b}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kto_unpaired_and_a_reward_objective_train_on_the_shipped_set() {
    let dir = scratch("labels", "run");
    let out = dir.join("kto");
    let out_s = out.to_string_lossy().into_owned();
    let args = ["run", "objectives/kto_unpaired.obj", "--steps", "5", "--batch", "4", "--eval-prompts", "2"];
    let o = seppoc(&[&args[..], &["--eval-samples", "1", "--out", &out_s]].concat());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 5);
    for line in metrics.lines() {
        let m: Value = serde_json::from_str(line).expect("json");
        let share = m["logs"]["desirable_share"].as_f64().expect("logged");
        assert!((0.0..=1.0).contains(&share) && (share * 4.0).fract() == 0.0, "{m}");
    }
    let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).unwrap();
    assert!(run["data"].as_str().is_some_and(|d| d.ends_with("assets/base/preferences.parquet")), "{run}");

    // `reward(x)` reads the shipped file's judge_0/judge_1 columns (the exact judge's score of each image).
    let obj = dir.join("reward.obj");
    std::fs::write(
        &obj,
        "# Reward-weighted SFT (arXiv 2302.12192)\nobjective reward_sft\ndata pairs\n\
         log reward_gap = mean(reward(winner) - reward(loser))\n\
         loss mean(sigmoid(reward(winner) - reward(loser)) * err(policy, winner))\n",
    )
    .expect("written");
    let out = dir.join("reward");
    let line = format!("run {} --steps 2 --batch 4 --eval-prompts 0 --out {}", obj.display(), out.display());
    let o = seppoc(&line.split(' ').collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let first: Value = serde_json::from_str(metrics.lines().next().expect("a line")).expect("json");
    assert!(first["logs"]["reward_gap"].as_f64().is_some_and(|g| g.is_finite() && g != 0.0), "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_field_the_data_lacks_stops_the_run_before_training() {
    let dir = scratch("labels", "missing");
    let obj = dir.join("weighted.obj");
    std::fs::write(&obj, "objective weighted\ndata pairs\nloss mean(weight * err(policy, winner))\n").expect("written");
    let out = dir.join("out");
    let line = format!("run {} --steps 2 --out {}", obj.display(), out.display());
    let args: Vec<&str> = line.split(' ').collect();
    let o = seppoc(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("preferences.parquet") && err.contains("no column `weight`"), "{err}");
    assert!(!out.join("metrics.jsonl").exists(), "nothing was trained");
    // The synthetic data set has no rewards or weights either.
    let o = seppoc(&[&args[..], &["--data", "synthetic"]].concat());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("synthetic data set") && err.contains("`weight`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
