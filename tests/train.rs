//! Short seeded training runs of the shipped objectives on a tiny model: they run end to end, the first
//! SePPO/DPO step sits exactly at ln 2, the network evaluations per step equal the plan's minimum, runs are
//! deterministic, a NaN stops the run with a clear error, and each batch's data fields reach the loss.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::data::{PreferenceSet, SyntheticWorld, Vocab, World, WorldConfig, MAX_TOKENS};
use seppoc::device::{cpu, CpuDevice};
use seppoc::frontend::frontend_with;
use seppoc::ir::{lower, Bound};
use seppoc::model::{Dit, DitConfig, NoiseSchedule};
use seppoc::source::SourceFile;
use seppoc::trainer::{TrainConfig, TrainError, Trainer, TrainerParts};

fn objective(name: &str, sets: &[(&str, &str)]) -> Bound {
    // `seppo_fastpool` is seppo.obj snapshotting every update into a pool of 2, to exercise the pool quickly.
    let file = name.strip_suffix("_fastpool").unwrap_or(name);
    let path = format!("{}/objectives/{file}.obj", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).expect("objective exists");
    if file != name {
        text = text.replace("pool every = 30, keep = 7", "pool every = 1, keep = 2");
    }
    let sets: Vec<(String, String)> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (checked, params) = frontend_with(&SourceFile::new(path, text), &sets).expect("checks");
    lower(&checked).bind(&params).expect("checked values bind")
}

/// What a trainer needs besides its config: the objective, a tiny model (seed 3) and its vocabulary, on `data`.
fn parts(name: &str, sets: &[(&str, &str)], data: PreferenceSet) -> TrainerParts<CpuDevice> {
    let vocab = Vocab::new();
    let initial = Dit::new(&DitConfig::tiny(16, vocab.len(), MAX_TOKENS), &cpu(), 3).expect("tiny model");
    TrainerParts { objective: objective(name, sets), initial, schedule: NoiseSchedule::default_linear(), data, vocab }
}

/// The tests' optimisation settings: no warmup, clipping at 1, no EMA, no caption dropout.
fn config(batch: usize, lr: f32, seed: u64) -> TrainConfig {
    TrainConfig { batch, lr, warmup: 0, max_grad_norm: 1.0, ema_decay: None, seed, caption_dropout: 0.0 }
}

fn setup(name: &str, sets: &[(&str, &str)], seed: u64) -> Trainer<CpuDevice> {
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let data: PreferenceSet = world.preference_set(32, &mut ChaCha8Rng::seed_from_u64(7));
    let cfg = config(4, 1e-3, seed);
    Trainer::new(parts(name, sets, data), cfg).expect("trainer starts")
}

#[test]
fn seppo_dpo_sft_run_end_to_end() {
    // Two sampler steps keep reference sampling cheap in a test; pool every 2 updates exercises the pool.
    let fast = [("beta", "2000")];
    for name in ["seppo", "dpo", "sft", "spin", "seppo_indicator", "kto"] {
        let mut tr = setup(name, if name == "sft" { &[] } else { &fast }, 11);
        let first = tr.step().expect("first step");
        assert!(first.loss.is_finite(), "{name}");
        if ["seppo", "dpo", "spin", "seppo_indicator"].contains(&name) {
            // theta == theta_0 at the first update: every DPO-family loss is exactly ln 2 (invariant 1).
            assert!((first.loss - std::f64::consts::LN_2).abs() < 1e-6, "{name}: first loss {}", first.loss);
        }
        if name == "seppo" {
            let flip = first.logs.iter().find(|(n, _)| n == "flip_rate").expect("logged").1;
            assert_eq!(flip, 0.0, "tie = 1 at the first update gives no flips");
        }
        // NFE equals the plan's minimum: each (model, image) once, plus sampling.
        let plan = tr.obj.plan();
        assert_eq!(first.nfe, (plan.nfe_passes + plan.nfe_sampling) * 4, "{name}");
        for _ in 0..2 {
            let r = tr.step().expect("later steps");
            assert!(r.loss.is_finite() && r.grad_norm.is_finite(), "{name}");
        }
    }
}

#[test]
fn same_seed_same_metrics_bitwise() {
    let run = |seed| {
        let mut tr = setup("seppo", &[], seed);
        (0..3)
            .map(|_| tr.step().expect("step"))
            .map(|r| (r.loss.to_bits(), r.grad_norm.to_bits(), r.references))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

#[test]
fn pool_grows_and_uniform_draws_earlier_checkpoints() {
    let mut tr = setup("seppo", &[], 1);
    // seppo.obj saves every 30 updates; check the pool mechanics directly at a short interval.
    for step in 1..=5 {
        let r = tr.step().expect("step");
        assert_eq!(r.step, step);
    }
    assert_eq!(tr.pool.len(), 1, "no snapshot before 30 updates");
    let policy = tr.policy.clone();
    let mut pool = seppoc::trainer::pool::CheckpointPool::new(policy.clone(), 2, 3);
    for step in 1..=10 {
        pool.after_update(step, &policy);
    }
    assert_eq!(pool.len(), 4, "theta_0 + keep 3");
    assert_eq!(pool.steps, vec![0, 6, 8, 10]);
}

#[test]
fn nan_in_the_data_stops_with_a_clear_error() {
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let mut data = world.preference_set(8, &mut ChaCha8Rng::seed_from_u64(1));
    for item in &mut data.items {
        item.winner.data[0] = f32::NAN;
    }
    let cfg = config(2, 1e-3, 0);
    let mut tr = Trainer::new(parts("sft", &[], data), cfg).expect("starts");
    let before = tr.policy.to_host();
    match tr.step() {
        Err(e @ TrainError::NonFinite { step: 1, .. }) => assert!(e.to_string().contains("non-finite"), "{e}"),
        other => panic!("expected a non-finite error, got {:?}", other.map(|r| r.loss)),
    }
    assert_eq!(tr.policy.to_host(), before, "the bad update was not applied");
}

#[test]
fn pairs_objective_rejects_winner_only_data() {
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let data = world.preference_set(4, &mut ChaCha8Rng::seed_from_u64(1)).winners_only();
    let cfg = config(2, 1e-3, 0);
    let err = Trainer::new(parts("dpo", &[], data), cfg).err().expect("rejected");
    assert!(err.to_string().contains("no pairs"), "{err}");
}

/// Saving the state after 2 updates and resuming in a fresh trainer gives bitwise the same weights, metrics and
/// pool as 5 uninterrupted updates (SePPO: reference draws, sampler noise and data order all continue).
#[test]
fn save_and_restore_continue_bitwise() {
    let dir = std::env::temp_dir().join(format!("seppoc-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sets = [("beta", "2000")];
    let mut straight = setup("seppo_fastpool", &sets, 9);
    let all: Vec<_> = (0..5).map(|_| straight.step().expect("step")).collect();

    let mut first = setup("seppo_fastpool", &sets, 9);
    for _ in 0..2 {
        first.step().expect("step");
    }
    first.save_state(&dir, "t").expect("saved");
    drop(first);
    let mut resumed = setup("seppo_fastpool", &sets, 9);
    assert_eq!(resumed.restore_state(&dir).expect("restored"), "t");
    let rest: Vec<_> = (0..3).map(|_| resumed.step().expect("step")).collect();
    assert_eq!(rest, all[2..].to_vec());
    assert_eq!(resumed.policy.to_host(), straight.policy.to_host());
    assert_eq!(resumed.pool.steps, vec![0, 4, 5], "theta_0 plus the newest 2 snapshots");
    assert!(all.iter().any(|r| r.references[0].1 != "Pool(0)"), "uniform draws reach later checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A non-finite weight after an update (here forced by an infinite learning rate) stops the run, names the
/// weight, and leaves the last good weights in place.
#[test]
fn nonfinite_weights_stop_the_run_and_keep_good_weights() {
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let data = world.preference_set(8, &mut ChaCha8Rng::seed_from_u64(1));
    let cfg = config(2, f32::INFINITY, 0);
    let mut tr = Trainer::new(parts("sft", &[], data), cfg).expect("starts");
    let before = tr.policy.to_host();
    let err = tr.step().expect_err("stopped");
    assert!(err.to_string().contains("weight `") && err.to_string().contains("step 1"), "{err}");
    assert_eq!(tr.policy.to_host(), before);
}

#[test]
fn caption_dropout_is_seeded_and_changes_no_other_draw() {
    let with = |p: f64, seed: u64| {
        let world = World::new(WorldConfig::default_16()).expect("default world");
        let data: PreferenceSet = world.preference_set(32, &mut ChaCha8Rng::seed_from_u64(7));
        let cfg = TrainConfig { caption_dropout: p, ..config(8, 1e-3, seed) };
        let mut tr = Trainer::new(parts("seppo", &[("beta", "2000")], data), cfg).expect("trainer starts");
        (0..3).map(|_| tr.step_recorded().expect("step")).collect::<Vec<_>>()
    };
    let (none, half, again, all) = (with(0.0, 5), with(0.5, 5), with(0.5, 5), with(1.0, 5));
    for k in 0..3 {
        assert_eq!(half[k].0, again[k].0, "the same seed drops the same captions");
        assert_eq!(none[k].1.references, half[k].1.references, "reference draws are unchanged");
        assert_eq!(none[k].1.kinds.len(), half[k].1.kinds.len());
        assert!(all[k].1.tokens.iter().all(|t| t.iter().all(|&id| id == seppoc::model::PAD)), "p = 1 blanks all");
    }
    assert_eq!(none[0].1.kinds, half[0].1.kinds, "the first step's noise and samples do not depend on dropout");
    let dropped = half.iter().flat_map(|(_, r)| &r.tokens).filter(|t| t.iter().all(|&id| id == 0)).count();
    assert!((4..=20).contains(&dropped), "about half of 24 captions dropped, found {dropped}");
    assert_ne!(none[1].0.loss, half[1].0.loss, "dropping captions changes the loss");
}

/// The trainer feeds each sample's data fields to the loss: a step's `label`, `weight` and `reward(x)` are the
/// batch's own values (a constant weight c gives c times the loss of weight 1 on the same seed), `num_timesteps`
/// is the schedule's T, and data that cannot feed the objective is an error when the trainer starts.
mod fields {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use seppoc::data::{Fields, PreferenceSet, SyntheticWorld, Vocab, World, WorldConfig, MAX_TOKENS};
    use seppoc::device::{cpu, CpuDevice};
    use seppoc::frontend::Objective as Parsed;
    use seppoc::ir::lower;
    use seppoc::model::{Dit, DitConfig, NoiseSchedule, ScheduleKind};
    use seppoc::trainer::{TrainError, Trainer, TrainerParts};

    /// 16 synthetic pairs; pair k has weight `w(k)`, rewards `(k, -k)` and label 1.
    fn pairs(weight: impl Fn(usize) -> f64) -> PreferenceSet {
        let world = World::new(WorldConfig::default_16()).expect("default world");
        let mut set = world.preference_set(16, &mut ChaCha8Rng::seed_from_u64(7));
        for (k, it) in set.items.iter_mut().enumerate() {
            it.fields = Fields { label: 1.0, reward: [Some(k as f64), Some(-(k as f64))], weight: Some(weight(k)) };
        }
        set
    }

    fn trainer(text: &str, data: PreferenceSet, schedule: NoiseSchedule) -> Result<Trainer<CpuDevice>, TrainError> {
        let parsed = Parsed::parse("fields.obj", text).unwrap_or_else(|(_, d)| panic!("{d:?}"));
        let vocab = Vocab::new();
        let initial = Dit::new(&DitConfig::tiny(16, vocab.len(), MAX_TOKENS), &cpu(), 3).expect("tiny model");
        let parts = TrainerParts { objective: lower(&parsed.checked).bind_defaults(), initial, schedule, data, vocab };
        Trainer::new(parts, super::config(4, 1e-3, 5))
    }

    const WEIGHTED: &str = "objective w\ndata pairs\n\
    log reward_gap = mean(reward(winner) - reward(loser))\n\
    log label_mean = mean(label)\n\
    log t = num_timesteps\n\
    loss mean(weight * err(policy, winner))\n";

    #[test]
    fn the_batch_fields_reach_the_loss() {
        let schedule = NoiseSchedule::new(ScheduleKind::Linear, 250);
        let one = trainer(WEIGHTED, pairs(|_| 1.0), schedule.clone()).expect("starts").step().expect("step");
        let three = trainer(WEIGHTED, pairs(|_| 3.0), schedule.clone()).expect("starts").step().expect("step");
        assert!((three.loss - 3.0 * one.loss).abs() <= 1e-6 * three.loss, "{} vs 3 x {}", three.loss, one.loss);
        let log =
            |r: &seppoc::trainer::StepReport, name: &str| r.logs.iter().find(|(n, _)| n == name).expect("logged").1;
        assert_eq!(log(&one, "label_mean"), 1.0);
        assert_eq!(log(&one, "t"), 250.0);
        // reward(winner) - reward(loser) = 2k for pair k: the mean over 4 drawn pairs is (k1 + .. + k4) / 2.
        let gap = log(&one, "reward_gap");
        assert!((0.0..=30.0).contains(&gap) && (2.0 * gap).fract() == 0.0, "{gap}");
    }

    #[test]
    fn data_that_cannot_feed_the_objective_is_an_error_at_start() {
        let world = World::new(WorldConfig::default_16()).expect("default world");
        let plain = world.preference_set(8, &mut ChaCha8Rng::seed_from_u64(1));
        let schedule = NoiseSchedule::default_linear();
        let err = trainer(WEIGHTED, plain.clone(), schedule.clone()).err().expect("no weights").to_string();
        assert!(err.contains("`weight`") || err.contains("`reward_winner`"), "{err}");
        let kto =
            "objective k\ndata labelled\nreference ref = initial\nloss mean(label * logratio(policy, ref, image))\n";
        let err = trainer(kto, plain.clone(), schedule.clone()).err().expect("pairs, not labelled images").to_string();
        assert!(err.contains("data labelled") && err.contains("PreferenceSet::labelled"), "{err}");
        let mut tr = trainer(kto, plain.labelled(), schedule).expect("labelled images train");
        assert!(tr.step().expect("a step").loss.is_finite());
    }
}
