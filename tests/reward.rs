//! The learned reward model (`seppoc reward train` / `eval`, `engine::reward`): the Bradley–Terry loss and its
//! gradient, the prompt split, training reproducible by seed, resuming equal to an uninterrupted run, folders
//! of other settings refused, bad input named, both commands end to end on tiny data, and online runs
//! (`seppoc run --reward`) scoring their samples with a reward model or the judge.

mod cli_support;

#[path = "support/columns.rs"]
mod columns;
use arrow_array::{ArrayRef, BinaryArray, StringArray};
use cli_support::{scratch, seppoc, text, tiny_base};
use columns::write_columns;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::data::parquet::{self as pq, Comparison};
use seppoc::device::{cpu, with_device, DeviceKind};
use seppoc::engine::reward::{bt_gradients, bt_loss, pearson, spearman, RewardSettings, RewardTraining, Split, Ties};
use seppoc::engine::{open, Progress};
use seppoc::model::{load_tensors, Dit, DitConfig};
use seppoc::world::{WorldKind, WorldOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One tiny pretrained base shared by every test of this file (its world is the image world).
fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| tiny_base("reward", 1))
}

/// A tiny preference file: `n` synthetic comparisons of the image world (clean winner, unfaithful or degraded
/// loser, in a random order) and `ties` tied ones, written as `seppoc collect` writes them.
fn tiny_data(path: &Path, n: usize, ties: usize) {
    let world = WorldKind::Image.build(&WorldOptions::default()).expect("world");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let set = world.preference_set(n + ties, &mut rng);
    let rows: Vec<Comparison> = set
        .items
        .into_iter()
        .enumerate()
        .map(|(i, it)| {
            let loser = it.loser.expect("pairs");
            let swap = rng.gen_bool(0.5);
            let (images, label_0) = if swap { ([loser, it.winner], 0.0) } else { ([it.winner, loser], 1.0) };
            Comparison {
                caption: it.prompt,
                images,
                label_0: if i < n { label_0 } else { 0.5 },
                models: ["a".into(), "b".into()],
                judge: [0.0, 0.0],
                ranking_id: i as i64,
                user_id: 0,
                num_example_per_prompt: 1,
            }
        })
        .collect();
    pq::write(path, &rows, None).expect("writes");
}

/// A tiny scorer trained briefly.
fn tiny_settings(seed: u64) -> RewardSettings {
    RewardSettings {
        steps: 6,
        batch: 4,
        lr: 1e-3,
        warmup: 2,
        weight_decay: 0.05,
        max_grad_norm: 1.0,
        width: 16,
        depth: 1,
        heads: 2,
        patch: 4,
        init: None,
        ties: Ties::Soft,
        heldout: 0.3,
        val: 0.2,
        split_seed: 0,
        seed,
        eval_every: 3,
        save_every: 0,
    }
}

fn job(data: &Path, out: &Path, settings: RewardSettings, halt_after: Option<usize>) -> RewardTraining {
    RewardTraining {
        base: open(Path::new(base()), None).expect("opens the base"),
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        settings,
        command: "test".into(),
        progress: Progress::hidden(),
        halt_after,
    }
}

fn train(data: &Path, out: &Path, settings: RewardSettings) -> anyhow::Result<seppoc::engine::reward::RewardTrained> {
    with_device(DeviceKind::Cpu, job(data, out, settings, None)).expect("cpu")
}

fn weights(dir: &Path) -> Vec<Vec<f32>> {
    load_tensors(&dir.join("model.safetensors")).expect("a checkpoint").1
}

/// `metrics.jsonl` without the wall times.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    let t = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    t.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v.as_object_mut().expect("object").remove("elapsed_s");
            v
        })
        .collect()
}

fn data_file(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch("reward", name);
    let data = dir.join("prefs.parquet");
    tiny_data(&data, 40, 6);
    (dir, data)
}

#[test]
fn the_loss_is_bradley_terry_cross_entropy_and_its_gradient_matches_finite_differences() {
    for (d, p) in [(0.0, 1.0), (2.5, 1.0), (-3.0, 1.0), (1.2, 0.0), (0.7, 0.5), (-10.0, 1.0), (10.0, 0.0)] {
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let direct = -(p * s(d).ln() + (1.0 - p) * (1.0 - s(d)).ln());
        assert!((bt_loss(d, p) - direct).abs() < 1e-9 * direct.abs().max(1.0), "d {d} p {p}");
    }
    // The parameter gradient of the batch loss against central differences of the loss, on a few weights.
    let world = WorldKind::Image.build(&WorldOptions::default()).expect("world");
    let cfg = DitConfig { depth: 1, width: 16, heads: 2, ..DitConfig::tiny(16, world.vocab().len(), 16) };
    let dev = cpu();
    let model = Dit::new(&cfg, &dev, 3).expect("model");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let images: Vec<f32> = (0..4 * cfg.image_len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let tokens: Vec<Vec<usize>> = ["a red circle", "a blue square", "a red circle", "a blue square"]
        .iter()
        .map(|c| world.vocab().encode(c))
        .collect();
    let p0 = [1.0, 0.5];
    let (step, grads) = bt_gradients(&model, images.clone(), &tokens, &p0).expect("gradients");
    let host = model.to_host();
    let last = host.len() - 2; // `final.out.weight`: the reward is linear in it, so differences are exact.
    for (param, k) in [(last, 5), (last, 17), (0, 3)] {
        let loss_at = |delta: f32| {
            let mut h = host.clone();
            h[param][k] += delta;
            let m = Dit::from_host(&cfg, &dev, h).expect("model");
            bt_gradients(&m, images.clone(), &tokens, &p0).expect("loss").0.loss
        };
        let eps = 1e-2;
        let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * f64::from(eps));
        let analytic = f64::from(grads.grads[param].as_vec()[k]);
        assert!(
            (numeric - analytic).abs() < 2e-3 * analytic.abs().max(1e-2),
            "param {param}[{k}]: {numeric} vs {analytic}"
        );
    }
    assert!(step.loss.is_finite() && step.acc.is_some());
}

#[test]
fn the_split_is_disjoint_in_prompts_stable_and_near_its_shares() {
    let split = Split { heldout: 0.2, val: 0.1, seed: 0 };
    let captions: Vec<String> = (0..4000).map(|i| format!("a red circle number {i}")).collect();
    let parts: Vec<_> = captions.iter().map(|c| split.part(c)).collect();
    let held = parts.iter().filter(|p| matches!(p, seppoc::engine::reward::Part::Heldout)).count() as f64 / 4000.0;
    assert!((held - 0.2).abs() < 0.03, "held-out share {held}");
    // The part depends on the caption alone (not on order or the other captions), up to surrounding spaces.
    assert_eq!(split.part(" a red circle number 5 "), parts[5]);
    let other = Split { seed: 1, ..split };
    assert!(captions.iter().any(|c| other.part(c) != split.part(c)), "the seed changes the split");
}

#[test]
fn correlations_match_hand_computed_values() {
    let x = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0, 10.0]) - 1.0).abs() < 1e-12);
    assert!((pearson(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    // A monotone but nonlinear relation: Spearman 1, Pearson below 1.
    let y = [1.0, 8.0, 27.0, 64.0, 125.0];
    assert!((spearman(&x, &y) - 1.0).abs() < 1e-12);
    assert!(pearson(&x, &y) < 0.99);
    // Ties get their mean rank: ranks (1.5, 1.5, 3) against (1, 2, 3): r = 0.866...
    assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 0.75f64.sqrt()).abs() < 1e-12);
}

#[test]
fn training_is_reproducible_by_seed_and_resuming_equals_an_uninterrupted_run() {
    let (dir, data) = data_file("repro");
    let (a, b, c, halted) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("halted"));
    let done = train(&data, &a, tiny_settings(0)).expect("trains");
    assert_eq!(done.step, 6);
    assert!(done.counts.heldout > 0 && done.counts.train > 0 && done.val_acc.is_some());
    train(&data, &b, tiny_settings(0)).expect("trains");
    assert!(weights(&a) == weights(&b), "the same seed gave other weights");
    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(metrics(&a).len(), 6);
    train(&data, &c, tiny_settings(1)).expect("trains");
    assert!(weights(&a) != weights(&c), "another seed gave the same weights");

    // Stopped after 4 updates, the state is saved; the same settings again continue bitwise.
    let first =
        with_device(DeviceKind::Cpu, job(&data, &halted, tiny_settings(0), Some(4))).expect("cpu").expect("runs");
    assert!(first.halted && first.step == 4);
    assert!(halted.join("state/state.json").exists() && !halted.join("model.safetensors").exists());
    let rest = train(&data, &halted, tiny_settings(0)).expect("resumes");
    assert_eq!(rest.resumed_at, Some(4));
    assert!(!halted.join("state").exists(), "a finished training keeps no state");
    assert!(weights(&a) == weights(&halted), "resumed weights differ from the uninterrupted run's");
    assert_eq!(metrics(&a), metrics(&halted));

    // A folder made with other settings is refused, naming what differs; nothing in it changes.
    let before = weights(&a);
    let e = train(&data, &a, RewardSettings { lr: 5e-3, ..tiny_settings(0) }).expect_err("refused");
    let shown = format!("{e:#}");
    assert!(shown.contains("other settings") && shown.contains("run.json"), "{shown}");
    assert!(weights(&a) == before);
    // Other data too.
    let other = dir.join("other.parquet");
    tiny_data(&other, 30, 0);
    let e = train(&other, &a, tiny_settings(0)).expect_err("refused");
    assert!(format!("{e:#}").contains("data_sha256"), "{e:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_an_error_naming_the_file_and_what_is_wrong() {
    let dir = scratch("reward", "bad");
    // A missing column.
    let missing = dir.join("missing.parquet");
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/base/eval_grid.png")).expect("png");
    write_columns(
        &missing,
        vec![
            ("caption", std::sync::Arc::new(StringArray::from(vec!["a red circle"])) as ArrayRef),
            ("jpg_0", std::sync::Arc::new(BinaryArray::from(vec![png.as_slice()])) as ArrayRef),
            ("jpg_1", std::sync::Arc::new(BinaryArray::from(vec![png.as_slice()])) as ArrayRef),
        ],
    );
    let e = train(&missing, &dir.join("m"), tiny_settings(0)).expect_err("refused");
    let shown = format!("{e:#}");
    assert!(shown.contains("missing.parquet") && shown.contains("label_0"), "{shown}");
    // No decided comparison (only ties), and no rows at all.
    let ties = dir.join("ties.parquet");
    tiny_data(&ties, 0, 5);
    let e = train(&ties, &dir.join("t"), tiny_settings(0)).expect_err("refused");
    assert!(format!("{e:#}").contains("no decided comparison"), "{e:#}");
    let empty = dir.join("empty.parquet");
    pq::write(&empty, &[], None).expect("writes");
    let e = train(&empty, &dir.join("e"), tiny_settings(0)).expect_err("refused");
    assert!(format!("{e:#}").contains("empty.parquet") && format!("{e:#}").contains("0 rows"), "{e:#}");
    // Every prompt held out leaves nothing to train on.
    let (_, data) = data_file("bad-split");
    let e = train(&data, &dir.join("h"), RewardSettings { heldout: 0.999, ..tiny_settings(0) }).expect_err("refused");
    assert!(format!("{e:#}").contains("no comparison has a training prompt"), "{e:#}");
    // Settings that cannot work name their flag.
    let e = train(&data, &dir.join("w"), RewardSettings { heads: 3, ..tiny_settings(0) }).expect_err("refused");
    assert!(format!("{e:#}").contains("--heads"), "{e:#}");
    let e = train(&data, &dir.join("l"), RewardSettings { lr: f32::NAN, ..tiny_settings(0) }).expect_err("refused");
    assert!(format!("{e:#}").contains("--lr"), "{e:#}");
    // A folder that holds another command's output is refused.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).expect("dir");
    std::fs::copy(base(), foreign.join("model.safetensors")).expect("copy");
    let e = train(&data, &foreign, tiny_settings(0)).expect_err("refused");
    assert!(format!("{e:#}").contains("no `run.json`"), "{e:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn train_and_eval_run_end_to_end_from_the_command_line() {
    let (dir, data) = data_file("cli");
    let out = dir.join("rm");
    let (d, o) = (data.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let flags = ["--steps", "4", "--batch", "4", "--width", "16", "--depth", "1", "--heads", "2", "--heldout", "0.3"];
    let mut args = vec!["reward", "train", "--data", &d, "--out", &o, "--base", base()];
    args.extend(flags);
    let run = seppoc(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("held out") && stdout.contains("after 4 updates"), "{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
    assert_eq!(record["status"], "done");
    assert_eq!(record["fingerprint"]["settings"]["steps"], 4);

    // Eval: held-out accuracies in [0, 1] over the held-out comparisons, and the samples' correlation.
    let json = dir.join("eval.json").to_string_lossy().into_owned();
    let args =
        ["reward", "eval", "--reward", &o, "--model", base(), "--samples", "2", "--prompts", "3", "--out", &json];
    let ev = seppoc(&args);
    assert!(ev.status.success(), "{}", text(&ev.stderr));
    let shown = text(&ev.stdout);
    assert!(shown.contains("pair accuracy vs the annotator's labels") && shown.contains("Spearman"), "{shown}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("eval.json")).expect("json");
    let acc = report["label_acc"]["value"].as_f64().expect("label_acc");
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(report["heldout_pairs"].as_u64(), record["counts"]["heldout"].as_u64());
    // A clean winner vs its loser: the judge orders most held-out pairs as the labels do.
    assert!(report["judge_label_acc"]["value"].as_f64().expect("judge acc") > 0.6, "{report}");
    assert_eq!(report["samples"]["captions"], 3);
    assert_eq!(report["samples"]["correlation"]["n"], 6);

    // A reward model is not a denoiser, a denoiser is not a reward model; a missing one is named.
    let e =
        seppoc(&["sample", "--model", &out.join("model.safetensors").to_string_lossy(), "--prompt", "a red circle"]);
    assert_eq!(e.status.code(), Some(2));
    assert!(text(&e.stderr).contains("is a reward model"), "{}", text(&e.stderr));

    let e = seppoc(&["reward", "eval", "--reward", base(), "--model", base()]);
    assert_eq!(e.status.code(), Some(2));
    assert!(text(&e.stderr).contains("is not a reward model"), "{}", text(&e.stderr));
    let e = seppoc(&["reward", "eval", "--reward", &dir.join("nope").to_string_lossy(), "--model", base()]);
    assert!(text(&e.stderr).contains("does not exist"), "{}", text(&e.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn online_runs_score_their_samples_with_a_reward_model_or_the_judge() {
    let (dir, data) = data_file("online");
    let rm = dir.join("rm").to_string_lossy().into_owned();
    let d = data.to_string_lossy().into_owned();
    let flags = ["--steps", "2", "--batch", "4", "--width", "16", "--depth", "1", "--heads", "2"];
    let mut args = vec!["reward", "train", "--data", &d, "--out", &rm, "--base", base()];
    args.extend(flags);
    let t = seppoc(&args);
    assert!(t.status.success(), "{}", text(&t.stderr));
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name).to_string_lossy().into_owned();
        let mut args = vec!["run", "objectives/diffusion_nft.obj", "--model", base(), "--data", &d];
        args.extend(["--eval-prompts", "0", "--out", &out]);
        args.extend(extra);
        (seppoc(&args), dir.join(name))
    };
    // With the reward model: two updates of one prompt's 8 samples, the reward logged, `--reward` recorded.
    let (o, out) = run("nft", &["--batch", "8", "--steps", "2", "--reward", &rm]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let steps: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|s| s["loss"].as_f64().is_some_and(f64::is_finite)), "{lines}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json")).expect("json");
    assert_eq!(record["settings"]["reward"].as_str(), Some(rm.as_str()));
    // The judge scores too.
    let (o, _) = run("nft_judge", &["--batch", "8", "--steps", "1", "--reward", "judge"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Refusals, before anything is trained: no scorer, a denoiser as the scorer, a batch of partial groups.
    let (o, _) = run("none", &["--batch", "8"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--reward PATH") && text(&o.stderr).contains("reward_sample0"),
        "{}",
        text(&o.stderr)
    );
    let (o, _) = run("denoiser", &["--batch", "8", "--reward", base()]);
    assert!(text(&o.stderr).contains("is not a reward model"), "{}", text(&o.stderr));
    let (o, _) = run("partial", &["--batch", "12", "--reward", "judge"]);
    assert!(text(&o.stderr).contains("not a multiple of"), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
