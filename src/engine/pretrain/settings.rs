//! Pretraining settings: model size, learning-rate and EMA schedules, validation.

use crate::data::MAX_TOKENS;
use crate::model::{DitConfig, Parametrisation, ScheduleKind, ScheduleSpec, TimeSampling};
use crate::world::Testbed;
use anyhow::bail;
use serde::Serialize;

/// Model size preset.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSize {
    /// Patch 4, width 96, 4 blocks (`DitConfig::small`): the shipped base models.
    Small,
    /// Patch 4, width 128, 6 blocks (`DitConfig::medium`): about 2.4× the compute per step of `small`.
    Medium,
    /// Patch 4, width 32, 2 blocks: for tests.
    Tiny,
}

/// How the learning rate moves after warmup.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Cosine decay from `--lr` to a tenth of it at the last step.
    Cosine,
    /// Constant `--lr`.
    Constant,
}

/// Everything that determines a pretraining run besides the world.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct PretrainSettings {
    /// Number of optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Web examples per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// Linear warmup length in steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Learning-rate schedule after warmup.
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    pub lr_schedule: LrSchedule,
    /// Noise schedule (1000 training timesteps; a `flow` model ignores the betas).
    #[arg(long, value_enum, default_value_t = ScheduleKind::Cosine)]
    pub schedule: ScheduleKind,
    /// What the model predicts: `eps` (ε-prediction), `v` (v-prediction) or `flow` (rectified-flow velocity,
    /// `x_t = (1 − t)·x_0 + t·ε`, target `ε − x_0`). Recorded in the checkpoint; sampling follows it.
    #[arg(long, value_enum, default_value_t = Parametrisation::Epsilon)]
    pub param: Parametrisation,
    /// Training timestep sampler (default: `logit-normal` for `flow`, as SD3 trains; `uniform` otherwise).
    #[arg(long, value_enum)]
    pub time_sampling: Option<TimeSampling>,
    /// Seed of the weights, the data stream and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Model size.
    #[arg(long, value_enum, default_value_t = ModelSize::Small)]
    pub size: ModelSize,
    /// Probability of replacing a caption by the null (all-PAD) caption, for classifier-free guidance.
    #[arg(long, default_value_t = 0.1)]
    pub caption_dropout: f64,
    /// EMA decay of the saved weights (0 = save the raw weights); warmed up as `min(d, (1+s)/(10+s))`.
    #[arg(long, default_value_t = 0.999)]
    pub ema: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Also write the checkpoint every N steps (0 = only at the end).
    #[arg(long, default_value_t = 250)]
    pub save_every: usize,
}

impl PretrainSettings {
    /// Checks the settings before any work is done; each error names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.steps == 0 || self.batch == 0 {
            bail!("--steps and --batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, found {}", self.lr);
        }
        if !(0.0..=1.0).contains(&self.caption_dropout) {
            bail!("--caption-dropout must be in [0, 1], found {}", self.caption_dropout);
        }
        if !(0.0..1.0).contains(&self.ema) {
            bail!("--ema must be in [0, 1), found {}", self.ema);
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm > 0.0) {
            bail!("--max-grad-norm must be a positive number, found {}", self.max_grad_norm);
        }
        Ok(())
    }

    /// The model config of the chosen size for `world`.
    pub fn model_config(&self, world: &dyn Testbed) -> anyhow::Result<DitConfig> {
        let (s, v) = (world.image_size(), world.vocab().len());
        let cfg = match self.size {
            ModelSize::Small => DitConfig::small(s, v, MAX_TOKENS),
            ModelSize::Medium => DitConfig::medium(s, v, MAX_TOKENS),
            ModelSize::Tiny => DitConfig::tiny(s, v, MAX_TOKENS),
        }
        .with_frames(world.frames());
        cfg.validate().map_err(|e| anyhow::anyhow!("--image-size {s} does not fit the model: {e}"))?;
        Ok(cfg)
    }

    /// The schedule the model is trained with and its checkpoint records: `T` = 1000.
    pub fn schedule_spec(&self) -> ScheduleSpec {
        let default_time =
            if self.param == Parametrisation::Flow { TimeSampling::LogitNormal } else { TimeSampling::Uniform };
        ScheduleSpec {
            kind: self.schedule,
            n_steps: 1000,
            param: self.param,
            time: self.time_sampling.unwrap_or(default_time),
        }
    }

    /// Learning rate before warmup scaling at `step_idx` (0-based).
    pub(super) fn lr_at(&self, step_idx: usize) -> f32 {
        match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Cosine => {
                let span = self.steps.saturating_sub(self.warmup).max(1) as f32;
                let progress = (step_idx.saturating_sub(self.warmup) as f32 / span).min(1.0);
                self.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()))
            }
        }
    }

    /// The EMA decay at `step_idx` (0-based): `min(ema, (1 + s) / (10 + s))`.
    pub(super) fn ema_at(&self, step_idx: usize) -> f32 {
        self.ema.min((1.0 + step_idx as f32) / (10.0 + step_idx as f32))
    }
}
