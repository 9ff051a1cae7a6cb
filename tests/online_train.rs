//! Online objectives in the trainer: a grouped `sample(..., group = K)` fills the batch with K consecutive rows
//! per prompt, each with its own sample; `reward(x)` of those samples comes from the run's scorer, scored on the
//! samples and their real captions; the trainer refuses a batch that is not whole groups and a step without a
//! scorer, naming what to give.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::data::{PreferenceSet, SyntheticWorld, Vocab, World, WorldConfig, MAX_TOKENS};
use seppoc::device::{cpu, CpuDevice};
use seppoc::frontend::frontend_with;
use seppoc::ir::lower;
use seppoc::model::{Dit, DitConfig, NoiseSchedule};
use seppoc::source::SourceFile;
use seppoc::trainer::{SampleScorer, TrainConfig, TrainError, Trainer, TrainerParts};
use std::sync::{Arc, Mutex};

/// A group-normalised advantage on the reward of K = 4 samples per prompt, weighting the policy's error on them.
const GROUPED: &str = "objective grouped
reference old = ema(decay = 0.0)
let x = sample(old, prompt, sampler = ddim, steps = 2, cfg = 1.0, eta = 0.0, group = 4)
let r = reward(x)
let a = (r - group_mean(r)) / (group_std(r) + 0.0001)
log reward_mean = mean(r)
loss mean(-a * err(policy, x))
";

fn trainer(text: &str, batch: usize) -> Result<Trainer<CpuDevice>, TrainError> {
    let (checked, params) = frontend_with(&SourceFile::new("grouped.obj", text.to_string()), &[]).expect("checks");
    let objective = lower(&checked).bind(&params).expect("binds");
    let world = World::new(WorldConfig::default_16()).expect("default world");
    let data: PreferenceSet = world.preference_set(32, &mut ChaCha8Rng::seed_from_u64(7));
    let vocab = Vocab::new();
    let initial = Dit::new(&DitConfig::tiny(16, vocab.len(), MAX_TOKENS), &cpu(), 3).expect("tiny model");
    let parts = TrainerParts { objective, initial, schedule: NoiseSchedule::default_linear(), data, vocab };
    let cfg =
        TrainConfig { batch, lr: 1e-3, warmup: 0, max_grad_norm: 1.0, ema_decay: None, seed: 5, caption_dropout: 0.0 };
    Trainer::new(parts, cfg)
}

/// Scores an image by its mean value and records the prompts it was asked about.
struct MeanScorer(Arc<Mutex<Vec<String>>>);

impl SampleScorer for MeanScorer {
    fn score(
        &self,
        images: &[f32],
        image_len: usize,
        prompts: &[String],
        _: &[Vec<usize>],
    ) -> Result<Vec<f64>, String> {
        self.0.lock().unwrap().extend(prompts.iter().cloned());
        Ok(images.chunks(image_len).map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() / c.len() as f64).collect())
    }
    fn nfe_per_image(&self) -> u64 {
        1
    }
    fn describe(&self) -> String {
        "the mean scorer".into()
    }
}

#[test]
fn groups_fill_consecutive_rows_and_rewards_come_from_the_scorer() {
    let mut tr = trainer(GROUPED, 8).expect("a batch of two groups of 4");
    let seen = Arc::new(Mutex::new(Vec::new()));
    tr.set_scorer(Box::new(MeanScorer(seen.clone())));
    let (report, record) = tr.step_recorded().expect("step");
    assert!(report.loss.is_finite());
    // Two prompts, each filling 4 consecutive rows.
    let prompts = seen.lock().unwrap().clone();
    assert_eq!(prompts.len(), 8);
    for g in 0..2 {
        assert!(prompts[4 * g..4 * g + 4].iter().all(|p| *p == prompts[4 * g]), "{prompts:?}");
        assert!(record.tokens[4 * g..4 * g + 4].iter().all(|t| *t == record.tokens[4 * g]));
    }
    // The rewards the objective read are the scorer's, one per row, and the 4 samples of a prompt differ.
    let rewards = &record.data.iter().find(|(n, _)| n == "reward_sample0").expect("reward_sample0 recorded").1;
    assert_eq!(rewards.len(), 8);
    for g in 0..2 {
        let block = &rewards[4 * g..4 * g + 4];
        assert!(block.iter().any(|r| r != &block[0]), "four samples of one prompt, four rewards: {block:?}");
    }
    let logged = report.logs.iter().find(|(n, _)| n == "reward_mean").expect("logged").1;
    assert!((logged - rewards.iter().sum::<f64>() / 8.0).abs() < 1e-6, "{logged} vs {rewards:?}");
    // Sampling (2 steps, no guidance) + the scorer + one taped policy pass on the samples.
    assert_eq!(report.nfe, 8 * 2 + 8 + 8, "{report:?}");
}

#[test]
fn a_batch_of_partial_groups_and_a_missing_scorer_are_errors_that_say_what_to_give() {
    let Err(e) = trainer(GROUPED, 6) else { panic!("a batch of 6 is not whole groups of 4") };
    let m = e.to_string();
    assert!(m.contains("not a multiple") && m.contains("group = 4") && m.contains("batch of 4"), "{m}");
    let mut tr = trainer(GROUPED, 4).expect("one group");
    let m = tr.step().expect_err("no scorer").to_string();
    assert!(m.contains("reward_sample0") && m.contains("--reward PATH") && m.contains("--reward judge"), "{m}");
}

#[test]
fn without_groups_the_draws_are_unchanged() {
    // group = 1 written out draws exactly what no `group` draws: the same batches, samples and losses.
    let plain =
        GROUPED.replace(", group = 4", "").replace("(group_std(r) + 0.0001)", "1.0").replace(" - group_mean(r)", "");
    let one = GROUPED
        .replace("group = 4", "group = 1")
        .replace("(group_std(r) + 0.0001)", "1.0")
        .replace(" - group_mean(r)", "");
    let run = |text: &str| {
        let mut tr = trainer(text, 4).expect("starts");
        tr.set_scorer(Box::new(MeanScorer(Arc::new(Mutex::new(Vec::new())))));
        (0..2)
            .map(|_| tr.step_recorded().expect("step"))
            .map(|(r, rec)| (r.loss, rec.tokens, rec.data))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(&plain), run(&one));
}
