//! How a reward model is trained: the settings of `seppoc reward train`, stored in `run.json` and in the
//! checkpoint's metadata, and their checks.

use super::data::{Split, Ties};
use crate::data::MAX_TOKENS;
use crate::model::{Activation, DitConfig};
use crate::world::Testbed;
use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

/// How a reward model is trained (`seppoc reward train`).
#[derive(clap::Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardSettings {
    /// Optimizer updates.
    #[arg(long, default_value_t = 1500)]
    pub steps: usize,
    /// Comparisons per update (drawn uniformly with replacement from the training comparisons).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (linear warmup, then cosine decay to a tenth).
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f32,
    /// Warmup updates.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// AdamW's decoupled weight decay (matrices only).
    #[arg(long, default_value_t = 0.05)]
    pub weight_decay: f32,
    /// Global gradient-norm clipping.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Transformer width of the scorer.
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    /// Attention heads (must divide --width).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Side of a square image patch (must divide the world's image side).
    #[arg(long, default_value_t = 4)]
    pub patch: usize,
    /// Start from the weights of this DiT checkpoint (e.g. the base model, `assets/base_flow/model.safetensors`)
    /// instead of random ones: its architecture replaces --width, --depth, --heads and --patch.
    #[arg(long, value_name = "CHECKPOINT")]
    pub init: Option<String>,
    /// Tied comparisons: `soft` trains on them with target ½ (PickScore), `skip` leaves them out.
    #[arg(long, value_enum, default_value_t = Ties::Soft)]
    pub ties: Ties,
    /// Share of the file's distinct captions held out (never trained on; `seppoc reward eval` measures on them).
    #[arg(long, default_value_t = 0.2)]
    pub heldout: f64,
    /// Share of the other captions kept for validation (`val_acc` in metrics.jsonl; never trained on).
    #[arg(long, default_value_t = 0.1)]
    pub val: f64,
    /// Seed of the prompt split's hash.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Seed of the initial weights and of the batch draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Measure the validation comparisons every N updates (0: only at the end).
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    /// Save the model and the resumable state every N updates (0: only at the end or when stopped).
    #[arg(long, default_value_t = 500)]
    pub save_every: usize,
}

impl RewardSettings {
    /// Checks the settings; each error names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.steps == 0 || self.batch == 0 {
            bail!("--steps and --batch must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a positive number, found {}", self.lr);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be a number >= 0, found {}", self.weight_decay);
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm > 0.0) {
            bail!("--max-grad-norm must be a positive number, found {}", self.max_grad_norm);
        }
        if !(0.0..1.0).contains(&self.heldout) {
            bail!("--heldout must be in [0, 1), found {}", self.heldout);
        }
        if !(0.0..1.0).contains(&self.val) {
            bail!("--val must be in [0, 1), found {}", self.val);
        }
        Ok(())
    }

    /// The prompt split.
    pub fn split(&self) -> Split {
        Split { heldout: self.heldout, val: self.val, seed: self.split_seed }
    }

    /// The scorer's configuration for `world`, with the image channels of its base model.
    pub fn model_config(&self, world: &dyn Testbed, channels: usize) -> anyhow::Result<DitConfig> {
        let cfg = DitConfig {
            image_size: world.image_size(),
            channels,
            frames: world.frames(),
            patch_size: self.patch,
            width: self.width,
            depth: self.depth,
            heads: self.heads,
            mlp_ratio: 4,
            vocab_size: world.vocab().len(),
            max_tokens: MAX_TOKENS,
            activation: Activation::Relu,
        };
        cfg.validate().map_err(|e| {
            let flag = if e.contains("heads") {
                "--heads/--width"
            } else if e.contains("patch") {
                "--patch"
            } else {
                "--width/--depth/--heads/--patch"
            };
            anyhow!("{flag} do not fit the scorer: {e}")
        })?;
        Ok(cfg)
    }

    /// Learning rate before AdamW's warmup scaling at update `step` (0-based): cosine from `lr` to `lr / 10`.
    pub(super) fn lr_at(&self, step: usize) -> f32 {
        let floor = self.lr / 10.0;
        let progress = step as f64 / self.steps.max(1) as f64;
        floor + (self.lr - floor) * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
    }
}
