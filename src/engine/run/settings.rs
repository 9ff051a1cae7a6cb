//! A run's settings: what `run.json` stores and a resume reads back.

use crate::trainer::TrainConfig;
use crate::world::WorldKind;
use anyhow::bail;

/// Everything that determines a run besides the objective: saved in `run.json`, reused by a resume.
#[derive(clap::Args, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSettings {
    /// Seed of every random draw (data order, t, eps, reference choice, sampler).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Base model (default: the shipped `base/model.safetensors`, or `base_video_flow/...` for video, in the assets
    /// folder: `SEPPOC_ASSETS`, else the `assets/` of the source tree seppoc was built from).
    #[arg(long)]
    pub model: Option<String>,
    /// The base model's world: `video` trains a clip model on the video world's preference clips (default: what
    /// the checkpoint says; picks the default base model).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub world: Option<WorldKind>,
    /// Preference data: a Parquet file in the Pick-a-Pic schema (ties dropped, but kept with label 0.5 for a
    /// `data pairs` objective that reads `label`; optional `reward_0`/`reward_1`/`weight`), a folder in the imagefolder
    /// convention, or `synthetic` for the world's clean-render pairs (default: `preferences.parquet` beside the
    /// base model when it exists, else `synthetic`).
    #[arg(long)]
    pub data: Option<String>,
    /// Size of the synthetic preference set.
    #[arg(long, default_value_t = 2048)]
    pub data_size: usize,
    /// Rows per batch: prompts, or for an objective whose samples come in groups (`sample(..., group = K)`),
    /// K rows per prompt (then a multiple of K).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-5)]
    #[serde(serialize_with = "short_f32")]
    pub lr: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    #[serde(serialize_with = "short_f32")]
    pub max_grad_norm: f32,
    /// Keep an EMA of the policy with this decay and evaluate/save it.
    #[arg(long)]
    #[serde(serialize_with = "short_f32_opt")]
    pub ema: Option<f32>,
    /// Save `checkpoint.safetensors` and the resumable state every N updates (atomically).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    /// Probability that a caption is replaced by the null caption in the loss's forward passes (as pretraining
    /// does for classifier-free guidance; 0 keeps every caption). Diffusion-DPO's train.py blanks 20% of
    /// captions by default (`--proportion_empty_prompts 0.2`): give 0.2 to train as it does.
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub caption_dropout: f64,
    /// Held-out prompts judged at the end, spread evenly over the held-out list (default: all of them; 0 skips
    /// the evaluation).
    #[arg(long, value_name = "N")]
    pub eval_prompts: Option<usize>,
    /// Samples of each held-out prompt judged at the end, each with its own noise (the same default as `seppoc
    /// eval` and `seppoc compare`).
    #[arg(long, value_name = "K", default_value_t = crate::engine::eval::DEFAULT_EVAL_SAMPLES)]
    #[serde(default = "one")]
    pub eval_samples: usize,
    /// Judge the policy every N updates (and at steps 0 and last) on `--curve-prompts` held-out prompts,
    /// appending to `curve.jsonl` (0 = never).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub eval_every: usize,
    /// What scores generated samples for an objective that reads `reward(x)` of a `sample(...)`: a reward
    /// model (a `seppoc reward train` folder or its `model.safetensors`) or `judge`, the world's exact judge
    /// (circular: the same judge then evaluates the run). Objectives that read no such reward ignore it.
    #[arg(long, value_name = "PATH|judge")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<String>,
    /// Held-out prompts (spread evenly over the list) judged for each `--eval-every` point.
    #[arg(long, default_value_t = 32)]
    #[serde(default = "default_curve_prompts")]
    pub curve_prompts: usize,
}

fn default_curve_prompts() -> usize {
    32
}

/// Runs saved before `eval_samples` existed judged one sample per prompt.
fn one() -> usize {
    1
}

/// A piece of a folder name: letters, digits, `.`, `_`, `-` and `+` kept, anything else `_`.
fn path_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "._-+".contains(c) { c } else { '_' }).collect()
}

pub use crate::engine::files::f32_value;

fn short_f32<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f32_value(*x))
}

fn short_f32_opt<S: serde::Serializer>(x: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&f32_value(*x)),
        None => s.serialize_none(),
    }
}

/// The settings that only change how the finished run is judged, not what it trains.
const EVAL_ONLY: [&str; 4] = ["eval_prompts", "eval_samples", "eval_every", "curve_prompts"];

impl RunSettings {
    /// The settings of a run given no flags.
    pub fn defaults() -> RunSettings {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            settings: RunSettings,
        }
        <Defaults as clap::Parser>::parse_from(["seppoc"]).settings
    }

    /// The default output directory: `runs/<objective>-seed<S>`, followed by every training setting that is not
    /// its default and every `--set` (in the order given), so the runs of a sweep each get their own folder
    /// (`runs/sft-seed0-lr0.0001-batch8`, `runs/seppo-seed1-beta500`); the evaluation settings are left out
    /// (they judge the same training).
    pub fn default_out(&self, objective: &str, sets: &[(String, String)]) -> std::path::PathBuf {
        let mut name = format!("{objective}-seed{}", self.seed);
        let (mine, base) = (serde_json::to_value(self), serde_json::to_value(Self::defaults()));
        if let (Ok(serde_json::Value::Object(mine)), Ok(base)) = (mine, base) {
            for (key, value) in &mine {
                if key == "seed" || EVAL_ONLY.contains(&key.as_str()) || base.get(key) == Some(value) {
                    continue;
                }
                let shown = match (key.as_str(), value) {
                    // A file stands for itself by its name: `base_flow` for `assets/base_flow/model.safetensors`.
                    ("model" | "data" | "reward", serde_json::Value::String(p)) => {
                        let path = std::path::Path::new(p);
                        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                        let parent = path.parent().and_then(|d| d.file_name()).map(|s| s.to_string_lossy());
                        match parent {
                            Some(dir) if stem == "model" || stem == "preferences" => dir.into_owned(),
                            _ => stem,
                        }
                    }
                    (_, serde_json::Value::String(s)) => s.clone(),
                    (_, v) => v.to_string(),
                };
                name.push_str(&format!("-{}{}", key.replace('_', "-"), path_safe(&shown)));
            }
        }
        for (k, v) in sets {
            name.push_str(&format!("-{}{}", path_safe(k), path_safe(v)));
        }
        std::path::PathBuf::from("runs").join(name)
    }

    /// The settings that differ between a saved run's `settings` and these, as flags with both values
    /// (`--lr 2e-05 there, 0.0001 here`), and whether they all only concern the evaluation.
    pub fn differences(&self, saved: &serde_json::Value) -> (Vec<String>, bool) {
        let mine = serde_json::to_value(self).unwrap_or_default();
        let (Some(mine), Some(theirs)) = (mine.as_object(), saved.as_object()) else {
            return (vec!["`settings` (unreadable)".into()], false);
        };
        let mut diffs = Vec::new();
        let mut eval_only = true;
        for (key, value) in mine {
            let there = theirs.get(key).cloned().unwrap_or(serde_json::Value::Null);
            if &there != value {
                diffs.push(format!("--{} {there} there, {value} here", key.replace('_', "-")));
                eval_only &= EVAL_ONLY.contains(&key.as_str());
            }
        }
        (diffs, eval_only)
    }

    /// The trainer's settings.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            batch: self.batch,
            lr: self.lr,
            warmup: self.warmup,
            max_grad_norm: self.max_grad_norm,
            ema_decay: self.ema,
            seed: self.seed,
            caption_dropout: self.caption_dropout,
        }
    }

    /// Rejects values no run can use (`--lr nan`, a zero batch, ...) before anything is loaded or written.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("--lr must be a finite number > 0, found {}", self.lr);
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm > 0.0) {
            bail!("--max-grad-norm must be a finite number > 0, found {}", self.max_grad_norm);
        }
        if let Some(d) = self.ema.filter(|d| !(*d > 0.0 && *d < 1.0)) {
            bail!("--ema must be in (0, 1), found {d}");
        }
        if !(0.0..=1.0).contains(&self.caption_dropout) {
            bail!("--caption-dropout must be in [0, 1], found {}", self.caption_dropout);
        }
        if self.batch == 0 || self.data_size == 0 || self.curve_prompts == 0 {
            bail!("--batch, --data-size and --curve-prompts must each be at least 1");
        }
        if self.eval_samples == 0 {
            bail!("--eval-samples must be at least 1 (`--eval-prompts 0` skips the final evaluation)");
        }
        Ok(())
    }
}
