//! Evaluation of candidates in one process: the base model, the preference data and the judge's scores of the
//! base model's samples are loaded or computed once and shared by every candidate. A candidate at a stage of the
//! funnel trains the base model for the stage's updates on each of its seeds and is judged on the stage's
//! validation prompts against the base model's samples of the same prompts and noise.
//!
//! Validation prompts come from the world's training prompt list, never from the held-out list (which the
//! final comparison of `seppoc compare` reports): [`validation_prompts`] shuffles the training list with a fixed
//! seed and keeps the first `n`, and refuses a list that shares a prompt with the held-out one.

use crate::data::PreferenceSet;
use crate::device::{cpu, CpuDevice};
use crate::engine::eval::{evaluate, spread, EvalSettings};
use crate::engine::open::Opened;
use crate::engine::run::{field_needs, keeps_ties, load_data, RunSettings};
use crate::ir::Bound;
use crate::model::Dit;
use crate::trainer::{TrainConfig, Trainer, TrainerParts};
use crate::world::Split;
use anyhow::bail;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// Seed of the validation split's shuffle: one split for every search on a world.
pub const VALIDATION_SEED: u64 = 0x7A11_DA7E;

/// One rung of the funnel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Optimizer updates per training run.
    pub steps: usize,
    /// Training seeds (0, 1, ...), one run each.
    pub seeds: usize,
    /// Validation prompts judged (spread evenly over the validation list).
    pub prompts: usize,
    /// Samples of each prompt, each with its own noise.
    pub samples: usize,
}

/// A candidate's result at one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Per seed: mean judge score of the trained model minus the base model's, on the same validation samples.
    pub deltas: Vec<f64>,
    /// Per seed: the share of validation samples the trained model scores above the base (a tie counts ½).
    pub win_rates: Vec<f64>,
    /// Why training stopped early (a non-finite loss or gradient), if it did; its deltas are then empty.
    pub failed: Option<String>,
}

impl Outcome {
    /// The mean delta over seeds (`None` when training failed).
    pub fn score(&self) -> Option<f64> {
        (!self.deltas.is_empty()).then(|| self.deltas.iter().sum::<f64>() / self.deltas.len() as f64)
    }

    /// The sample standard deviation of the deltas over seeds (0 for one seed).
    pub fn sd(&self) -> f64 {
        let n = self.deltas.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.deltas.iter().sum::<f64>() / n as f64;
        (self.deltas.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

/// The training settings every candidate shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// Prompts per batch.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warmup steps.
    pub warmup: usize,
    /// Gradient-norm clip.
    pub max_grad_norm: f32,
}

/// The validation prompts: the world's training prompts shuffled with [`VALIDATION_SEED`], the first `n` (all of
/// them when fewer); an error if any is also a held-out prompt.
pub fn validation_prompts(world: &dyn crate::world::Testbed, n: usize) -> anyhow::Result<Vec<String>> {
    let mut train = world.prompts(Split::Train);
    train.shuffle(&mut ChaCha8Rng::seed_from_u64(VALIDATION_SEED));
    train.truncate(n);
    let heldout = world.prompts(Split::Heldout);
    if let Some(p) = train.iter().find(|p| heldout.contains(p)) {
        bail!("validation prompt `{p}` is also a held-out prompt of this world; the search never judges those");
    }
    if train.is_empty() {
        bail!("the world has no training prompts to validate on");
    }
    Ok(train)
}

/// Shared state of the evaluations of one search.
pub struct Funnel {
    base: Opened,
    model: Dit<CpuDevice>,
    run: RunSettings,
    training: Training,
    validation: Vec<String>,
    judge: EvalSettings,
    data: Mutex<HashMap<(&'static str, bool, bool, bool), PreferenceSet>>,
    base_scores: Mutex<HashMap<(usize, usize), Vec<f64>>>,
}

impl Funnel {
    /// Opens the base model and picks the validation prompts; `run` names the model and data as `seppoc run`
    /// takes them.
    pub fn new(run: RunSettings, training: Training, n_validation: usize) -> anyhow::Result<Funnel> {
        let path = crate::engine::open::model_path(run.model.as_deref(), run.world)?;
        let base = crate::engine::open::open(&path, run.world)?;
        let model = base.model.to_device(&cpu())?;
        let validation = validation_prompts(base.world.as_ref(), n_validation)?;
        let judge = EvalSettings { split: Split::Train, ..EvalSettings::standard() }.for_model(&base.schedule)?;
        Ok(Funnel {
            base,
            model,
            run,
            training,
            validation,
            judge,
            data: Mutex::new(HashMap::new()),
            base_scores: Mutex::new(HashMap::new()),
        })
    }

    /// The validation prompts.
    pub fn validation(&self) -> &[String] {
        &self.validation
    }

    /// The base model's file.
    pub fn base_path(&self) -> &std::path::Path {
        &self.base.path
    }

    /// The prompts of a stage, sample `k` of every prompt after sample `k − 1` of all.
    fn prompts(&self, stage: &Stage) -> Vec<String> {
        let picked = spread(&self.validation, Some(stage.prompts));
        (0..stage.samples.max(1)).flat_map(|_| picked.iter().cloned()).collect()
    }

    fn settings(&self, stage: &Stage) -> EvalSettings {
        EvalSettings { n_prompts: Some(stage.prompts), samples: stage.samples.max(1), ..self.judge.clone() }
    }

    /// A copy of the base model on a device of its own. Evaluations run on threads side by side (`--jobs`), and
    /// dfdx's CPU device keeps an allocation cache that is not safe to share between threads (a check and the
    /// pop that follows it take the lock separately), so every evaluation works on its own device.
    fn own_model(&self) -> anyhow::Result<Dit<CpuDevice>> {
        Ok(self.model.to_device(&cpu())?)
    }

    /// The judge's scores of the base model's samples of a stage's prompts (computed once per stage shape; the
    /// lock is held while they are computed, so concurrent evaluations compute them once).
    pub fn base_scores(&self, stage: &Stage) -> anyhow::Result<Vec<f64>> {
        let key = (stage.prompts, stage.samples);
        let mut cache = self.base_scores.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(s) = cache.get(&key) {
            return Ok(s.clone());
        }
        let prompts = self.prompts(stage);
        let e = evaluate(
            &self.own_model()?,
            &self.base.schedule,
            self.base.world.as_ref(),
            &prompts,
            &self.settings(stage),
            |_, _| {},
        )?;
        let scores: Vec<f64> = e.judged.verdicts.iter().map(|v| f64::from(v.score)).collect();
        cache.insert(key, scores.clone());
        Ok(scores)
    }

    /// The preference data shaped for an objective (loaded once per data kind and field needs).
    fn data(&self, obj: &Bound) -> anyhow::Result<PreferenceSet> {
        let needs = field_needs(obj);
        let key = (obj.data.word(), keeps_ties(obj), needs.reward, needs.weight);
        let mut cache = self.data.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(d) = cache.get(&key) {
            return Ok(d.clone());
        }
        let (set, _) = load_data(&self.run, &self.base, obj)?;
        cache.insert(key, set.clone());
        Ok(set)
    }

    /// Trains `obj` at `stage` on each seed and judges it. `Ok(None)` when `stop()` asked to stop between two
    /// updates (nothing of this evaluation is kept).
    pub fn evaluate(
        &self,
        obj: &Bound,
        stage: &Stage,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> anyhow::Result<Option<Outcome>> {
        let base = self.base_scores(stage)?;
        let prompts = self.prompts(stage);
        let settings = self.settings(stage);
        let world = self.base.world.as_ref();
        let mut out = Outcome { deltas: Vec::new(), win_rates: Vec::new(), failed: None };
        for seed in 0..stage.seeds as u64 {
            let parts = TrainerParts {
                objective: obj.clone(),
                initial: self.own_model()?,
                schedule: self.base.schedule.clone(),
                data: self.data(obj)?,
                vocab: world.vocab().clone(),
            };
            let t = &self.training;
            let cfg = TrainConfig {
                batch: t.batch,
                lr: t.lr,
                warmup: t.warmup,
                max_grad_norm: t.max_grad_norm,
                ema_decay: None,
                seed,
                caption_dropout: 0.0,
            };
            let mut trainer = Trainer::new(parts, cfg).map_err(|e| anyhow::anyhow!("objective `{}`: {e}", obj.name))?;
            trainer.set_total_steps(stage.steps);
            while trainer.step < stage.steps {
                if stop() {
                    return Ok(None);
                }
                if let Err(e) = trainer.step() {
                    out.failed = Some(format!("seed {seed}: {e}"));
                    out.deltas.clear();
                    out.win_rates.clear();
                    return Ok(Some(out));
                }
            }
            let e = evaluate(trainer.output_model(), &self.base.schedule, world, &prompts, &settings, |_, _| {})?;
            let scores: Vec<f64> = e.judged.verdicts.iter().map(|v| f64::from(v.score)).collect();
            let n = scores.len().max(1) as f64;
            out.deltas.push(scores.iter().zip(&base).map(|(t, b)| t - b).sum::<f64>() / n);
            out.win_rates.push(crate::compare::Wins::count(&base, &scores).rate());
        }
        Ok(Some(out))
    }
}
