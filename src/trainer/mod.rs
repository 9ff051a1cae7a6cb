//! The training loop: one step draws a batch, resolves references, generates reference samples, runs one taped
//! policy pass and one untaped pass per reference (never the same (model, image, t, eps) twice), builds the
//! compiled loss, and applies a clipped AdamW update; the checkpoint pool grows as the objective declares.

mod batch;
mod leaves;
mod online;
pub mod pool;
mod profile;
pub(crate) mod state;

pub use online::{partial_groups, SampleScorer};
pub use state::StateError;

use crate::check::Noise;
use crate::compile::loss_graph;
use crate::data::{PreferenceSet, Vocab};
use crate::device::Backend;
use crate::ir::{Bound, Datum, ImageRef, LeafValues};
use crate::model::{AdamW, AdamWConfig, Dit, Ema, ModelError, NoiseSchedule, ParamGrads};
use dfdx::prelude::*;
use pool::CheckpointPool;
pub use pool::Slot;
pub use profile::{Profile, PHASES};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// Optimisation settings of a run (the objective supplies everything else).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainConfig {
    /// Rows per batch: data items (prompts), each repeated K times under an objective whose samples come in
    /// groups of K (`sample(..., group = K)`; the batch must then be a multiple of K).
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warmup steps.
    pub warmup: usize,
    /// Global gradient-norm clip.
    pub max_grad_norm: f32,
    /// Decay of an EMA of the policy (the EMA is what gets evaluated and saved), if any.
    pub ema_decay: Option<f32>,
    /// Seed of every random draw (data order, t, eps, reference choice, sampler).
    pub seed: u64,
    /// Probability that a sample's caption is replaced by the null caption in the loss's forward passes (policy
    /// and references alike; reference samples are still drawn for the real prompt), as pretraining does for
    /// classifier-free guidance. 0 keeps every caption and draws nothing. The draws come from their own stream
    /// (seed, step), so they change no other draw and a resumed run repeats them.
    pub caption_dropout: f64,
}

/// What a run trains and on what: everything [`Trainer::new`] needs besides the [`TrainConfig`].
pub struct TrainerParts<D: Backend> {
    /// The objective with its parameter values.
    pub objective: Bound,
    /// The starting policy; it is also theta_0, the first checkpoint in the pool.
    pub initial: Dit<D>,
    /// The noise schedule `initial` was trained with.
    pub schedule: NoiseSchedule,
    /// The preference data.
    pub data: PreferenceSet,
    /// The prompt vocabulary of `initial`.
    pub vocab: Vocab,
}

/// What one step reports.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StepReport {
    /// Update number (1-based).
    pub step: usize,
    /// The loss before the update.
    pub loss: f64,
    /// Every `log` quantity.
    pub logs: Vec<(String, f64)>,
    /// Batch mean of every leaf (e_theta / e_ref per image kind).
    pub leaf_means: Vec<(String, f64)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used.
    pub lr: f32,
    /// Network evaluations (images through a model) in this step.
    pub nfe: u64,
    /// Pool entry drawn per reference (for per-sample draws, the first sample's).
    pub references: Vec<(String, String)>,
    /// Whether a pool snapshot was taken after this update.
    pub snapshot: bool,
}

/// Why training stopped.
#[derive(Debug)]
pub enum TrainError {
    /// The model rejected an input (shapes, tokens).
    Model(ModelError),
    /// A NaN or infinity appeared.
    NonFinite {
        /// Update number at which it appeared.
        step: usize,
        /// Which quantity (loss, gradient norm, a leaf, a weight).
        quantity: String,
    },
    /// The data cannot feed the objective.
    Data(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Model(e) => write!(f, "{e}"),
            TrainError::NonFinite { step, quantity } => {
                write!(f, "non-finite {quantity} at step {step}; the update was not applied")
            }
            TrainError::Data(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<ModelError> for TrainError {
    fn from(e: ModelError) -> Self {
        TrainError::Model(e)
    }
}

/// A run in progress.
pub struct Trainer<D: Backend> {
    /// The objective with its parameter values.
    pub obj: Bound,
    /// The policy theta.
    pub policy: Dit<D>,
    /// Reference checkpoints (theta_0 first).
    pub pool: CheckpointPool<D>,
    /// EMA of the policy when `TrainConfig::ema_decay` is set.
    pub ema: Option<Ema<D>>,
    /// Updates applied.
    pub step: usize,
    ref_emas: Vec<Option<Ema<D>>>,
    opt: AdamW<D>,
    data: PreferenceSet,
    vocab: Vocab,
    schedule: NoiseSchedule,
    rng: ChaCha8Rng,
    cfg: TrainConfig,
    total_steps: usize,
    profile: Profile,
    scorer: Option<Box<dyn SampleScorer>>,
}

impl<D: Backend> Trainer<D> {
    /// Starts a run from `parts.initial` (which also becomes theta_0), noised with `parts.schedule`.
    pub fn new(parts: TrainerParts<D>, cfg: TrainConfig) -> Result<Self, TrainError> {
        let TrainerParts { objective: obj, initial: base, schedule, data, vocab } = parts;
        if data.is_empty() {
            return Err(TrainError::Data("the data set is empty".into()));
        }
        let uses_loser = obj.inputs.iter().any(|i| i.images == ImageRef::Loser);
        if uses_loser && !data.has_pairs() {
            return Err(TrainError::Data(format!(
                "objective `{}` reads `loser` images but the data set has no pairs",
                obj.name
            )));
        }
        if obj.data == crate::check::DataKind::Labelled && data.n_pairs() > 0 {
            return Err(TrainError::Data(format!(
                "objective `{}` reads unpaired labelled images (`data labelled`) but the data set holds pairs; \
                 split them with `PreferenceSet::labelled`",
                obj.name
            )));
        }
        for datum in obj.datums.iter().filter(|d| d.is_field() && !matches!(d, Datum::Label)) {
            leaves::field_values(*datum, &data.items)?;
        }
        if cfg.batch == 0 {
            return Err(TrainError::Data("batch size must be at least 1".into()));
        }
        if let Some(m) = partial_groups(cfg.batch, &obj) {
            return Err(TrainError::Data(m));
        }
        let (every, keep) = obj.pool.map_or((0, 0), |p| (p.every as usize, p.keep as usize));
        let ref_emas = obj
            .references
            .iter()
            .map(|r| matches!(r.strategy, crate::check::Strategy::Ema { .. }).then(|| Ema::new(&base)))
            .collect();
        let opt = AdamW::new(&base, AdamWConfig { warmup_steps: cfg.warmup, ..AdamWConfig::with_lr(cfg.lr) });
        Ok(Trainer {
            ema: cfg.ema_decay.map(|_| Ema::new(&base)),
            pool: CheckpointPool::new(base.clone(), every, keep),
            policy: base,
            step: 0,
            ref_emas,
            opt,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            schedule,
            obj,
            data,
            vocab,
            cfg,
            total_steps: 0,
            profile: Profile::default(),
            scorer: None,
        })
    }

    /// Sets what scores generated images for `reward(x)` of a `sample(...)` (an objective that reads one fails
    /// its first step without a scorer).
    pub fn set_scorer(&mut self, scorer: Box<dyn SampleScorer>) {
        self.scorer = Some(scorer);
    }

    /// Wall time per phase of the steps this trainer has run (not saved with the state).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Sets the number of updates the run will make, which `progress` divides by.
    pub fn set_total_steps(&mut self, steps: usize) {
        self.total_steps = steps;
    }

    /// The model to evaluate and save: the EMA if one is kept, else the policy.
    pub fn output_model(&self) -> &Dit<D> {
        self.ema.as_ref().map_or(&self.policy, Ema::model)
    }

    /// Runs one update.
    pub fn step(&mut self) -> Result<StepReport, TrainError> {
        self.step_inner(None)
    }

    /// Runs one update and records its inputs (the batch's tokens, every image kind's `x_t`, `t` and `eps`, the
    /// drawn references), so another implementation can recompute the same step's loss.
    pub fn step_recorded(&mut self) -> Result<(StepReport, StepRecord), TrainError> {
        let mut record = StepRecord::default();
        let report = self.step_inner(Some(&mut record))?;
        Ok((report, record))
    }

    /// Blanks each caption with probability `caption_dropout`, from a stream of its own for `(seed, step)`.
    fn drop_captions(&self, mut tokens: Vec<Vec<usize>>, step: usize) -> Vec<Vec<usize>> {
        let p = self.cfg.caption_dropout;
        if p > 0.0 {
            let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0xc0ff_ee00_ca97_1011);
            rng.set_stream(step as u64);
            for t in &mut tokens {
                if rng.gen_bool(p.min(1.0)) {
                    crate::model::blank_caption(t);
                }
            }
        }
        tokens
    }

    fn step_inner(&mut self, mut record: Option<&mut StepRecord>) -> Result<StepReport, TrainError> {
        let mut lap = profile::Lap::start();
        let b = self.cfg.batch;
        let step = self.step + 1;
        // Under `group = K` each drawn item fills K consecutive rows (one group); with K = 1 the draws are the
        // same as without groups.
        let group = self.obj.group() as usize;
        let items: Vec<_> = self
            .data
            .sample_winners(b / group, &mut self.rng)
            .into_iter()
            .flat_map(|it| std::iter::repeat_n(it, group))
            .cloned()
            .collect();
        let tokens: Vec<Vec<usize>> = items.iter().map(|it| self.vocab.encode(&it.prompt)).collect();
        let slots: Vec<Vec<Slot>> = self
            .obj
            .references
            .iter()
            .enumerate()
            .map(|(r, reference)| pool::choose(reference.strategy, r, self.pool.len(), b, &mut self.rng))
            .collect();
        let mut nfe = 0;
        lap.next();
        let images = batch::images(self, &items, &tokens, &slots, &mut nfe)?;
        let sample_rewards = self.sample_rewards(&images, &items, &tokens, step, &mut nfe)?;
        lap.next();
        let noised = batch::noise(
            &self.schedule,
            &images,
            &self.obj.views(None),
            self.obj.noise == Noise::Shared,
            b,
            self.policy.config().image_len(),
            &mut self.rng,
        );
        let tokens = self.drop_captions(tokens, step);
        if let Some(rec) = record.as_deref_mut() {
            rec.tokens = tokens.clone();
            rec.kinds = noised.kinds().iter().map(|(k, v)| (k.name(), v.clone())).collect();
            rec.references = self.obj.references.iter().map(|r| r.name.clone()).zip(slots.clone()).collect();
        }

        lap.next();
        let mut leaves = vec![Vec::new(); self.obj.inputs.len()];
        let (ref_nfe, preds) = self.reference_passes(&noised, &tokens, &slots, &mut leaves)?;
        nfe += ref_nfe;
        lap.next();
        // One taped policy pass over every view the policy is evaluated on.
        let (errs, offsets, policy_nfe) = self.policy_pass(&noised, &tokens, &preds, &mut leaves)?;
        nfe += policy_nfe;
        let data = self.data_values(&noised, step, &items, &sample_rewards)?;
        if let Some(rec) = record {
            rec.data = self.obj.datums.iter().map(Datum::name).zip(data.iter().cloned()).collect();
        }
        let named = self.obj.inputs.iter().map(|i| i.name()).chain(self.obj.datums.iter().map(Datum::name));
        for (name, values) in named.zip(leaves.iter().chain(&data)) {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(TrainError::NonFinite { step, quantity: format!("leaf {name}") });
            }
        }
        lap.next();
        let leaves = LeafValues { inputs: leaves, data };
        let graph = loss_graph(&self.obj, errs, &offsets, &leaves, b);
        let loss = graph.loss.array() as f64;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { step, quantity: "loss".into() });
        }
        lap.next();
        let mut grads = ParamGrads::backward(&self.policy, graph.loss);
        let grad_norm = grads.clip_global_norm(self.cfg.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite { step, quantity: "gradient norm".into() });
        }
        lap.next();
        let lr = self.opt.current_lr();
        let before = self.policy.clone();
        self.opt.update(&mut self.policy, &grads);
        let bad = self.policy.specs().iter().zip(self.policy.params()).find_map(|(spec, p)| {
            let sq: f32 = p.clone().square().sum::<Rank0, _>().array();
            (!sq.is_finite()).then(|| spec.name.clone())
        });
        if let Some(name) = bad {
            // Put the last good weights back so a caller that saves after the error saves good weights.
            self.policy = before;
            return Err(TrainError::NonFinite { step, quantity: format!("weight `{name}` after the update") });
        }
        self.step = step;
        if let (Some(ema), Some(decay)) = (self.ema.as_mut(), self.cfg.ema_decay) {
            ema.update(&self.policy, decay);
        }
        for (r, reference) in self.obj.references.iter().enumerate() {
            if let (Some(ema), crate::check::Strategy::Ema { decay }) = (self.ref_emas[r].as_mut(), reference.strategy)
            {
                ema.update(&self.policy, decay as f32);
            }
        }
        let snapshot = self.pool.after_update(step, &self.policy);
        let leaf_means = self
            .obj
            .inputs
            .iter()
            .zip(&leaves.inputs)
            .map(|(i, v)| (i.name(), v.iter().sum::<f64>() / v.len().max(1) as f64))
            .collect();
        let references = self
            .obj
            .references
            .iter()
            .zip(&slots)
            .map(|(r, s)| (r.name.clone(), s.first().map_or(String::new(), |s| format!("{s:?}"))))
            .collect();
        lap.finish(&mut self.profile);
        Ok(StepReport { step, loss, logs: graph.host.logs, leaf_means, grad_norm, lr, nfe, references, snapshot })
    }
}

/// The inputs of one step, as [`Trainer::step_recorded`] saw them.
#[derive(Clone, Debug, Default)]
pub struct StepRecord {
    /// Token ids per prompt.
    pub tokens: Vec<Vec<usize>>,
    /// Per image kind (`winner`, `loser`, `sample0`, ...): flattened `x_t`, `t` per image, flattened `eps`.
    pub kinds: Vec<(String, batch::NoisedKind)>,
    /// Per reference: the pool slot drawn for each prompt.
    pub references: Vec<(String, Vec<Slot>)>,
    /// Every datum the objective reads, by its `explain` name: one value per prompt (one per step for
    /// `progress` and `num_timesteps`).
    pub data: Vec<(String, Vec<f64>)>,
}
