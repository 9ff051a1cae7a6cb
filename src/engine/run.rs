//! A training run: an objective trains a base model on preference data, saving checkpoints, resumable state,
//! `metrics.jsonl` and the score curve as it goes, then base and trained model are judged side by side.
//!
//! Output directory: `objective.obj` (canonical text), `run.json` (objective hash, parameters, settings: what a
//! resume reads back), `metrics.jsonl`, `curve.jsonl`, `checkpoint.safetensors` and the saved state every
//! `checkpoint_every` updates, `model.safetensors`, `report.json` and `grid.png` at the end.

use super::eval::{Comparison, Curve, EvalSettings};
use super::files::{write_json, JsonlWriter};
use super::open::{model_path, open, Opened};
use crate::check::Checked;
use crate::data::{load_imagefolder, PreferenceSet};
use crate::eval::GridConfig;
use crate::ir::{lower, Bound};
use crate::device::Backend;
use crate::device::{DeviceKind, OnDevice};
use crate::model::{save_checkpoint, CheckpointMeta, ObjectiveMeta};
use crate::syntax;
use crate::trainer::{StepReport, TrainConfig, Trainer, TrainerParts};
use crate::world::WorldKind;
use anyhow::{bail, Context};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything that determines a run besides the objective: saved in `run.json`, reused by a resume.
#[derive(clap::Args, Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunSettings {
    /// Seed of every random draw (data order, t, eps, reference choice, sampler).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Base model (default: the shipped `assets/base/model.safetensors`, or `assets/base_video/...` for video).
    #[arg(long)]
    pub model: Option<String>,
    /// The base model's world: `video` trains a clip model on the video world's preference clips (default: what
    /// the checkpoint says; picks the default base model).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub world: Option<WorldKind>,
    /// Preference data in the imagefolder convention (default: the base model's synthetic world).
    #[arg(long)]
    pub data: Option<String>,
    /// Size of the synthetic preference set.
    #[arg(long, default_value_t = 2048)]
    pub data_size: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    /// Keep an EMA of the policy with this decay and evaluate/save it.
    #[arg(long)]
    pub ema: Option<f32>,
    /// Save `checkpoint.safetensors` and the resumable state every N updates (atomically).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    /// Held-out prompts judged at the end, spread evenly over the held-out list (0 skips the evaluation).
    #[arg(long, default_value_t = 64)]
    pub eval_prompts: usize,
    /// Judge the policy every N updates (and at steps 0 and last) on `--curve-prompts` held-out prompts,
    /// appending to `curve.jsonl` (0 = never).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub eval_every: usize,
    /// Held-out prompts (spread evenly over the list) judged for each `--eval-every` point.
    #[arg(long, default_value_t = 32)]
    #[serde(default = "default_curve_prompts")]
    pub curve_prompts: usize,
}

fn default_curve_prompts() -> usize {
    32
}

/// Default number of updates of a fresh run.
pub const DEFAULT_STEPS: usize = 200;

/// A checked objective with its bound parameters, its canonical text and that text's SHA-256.
pub struct ObjectiveRun {
    /// The lowered objective with its parameter values.
    pub obj: Bound,
    /// The canonical text (`seppoc fmt`).
    pub canonical: String,
    /// Hex SHA-256 of `canonical`.
    pub sha256: String,
}

impl ObjectiveRun {
    /// Lowers a checked objective, binds its parameter values by name and records its text and hash.
    pub fn new(checked: &Checked, params: &[(String, f64)]) -> anyhow::Result<Self> {
        let canonical = syntax::format(&checked.file);
        let sha256 = format!("{:x}", Sha256::digest(canonical.as_bytes()));
        Ok(ObjectiveRun { obj: lower(checked).bind(params)?, canonical, sha256 })
    }

    fn params_json(&self) -> Map<String, Value> {
        self.obj.named_values().map(|(n, v)| (n.to_string(), json!(v))).collect()
    }
}

/// How a run starts.
pub enum Start {
    /// A new run into `out` (default `runs/<objective>-seed<S>`).
    Fresh {
        /// Output directory.
        out: Option<PathBuf>,
        /// The run's settings.
        settings: RunSettings,
    },
    /// Continue the run in this directory from its last saved state, with the settings of its `run.json`.
    Resume(PathBuf),
}

/// A run resolved and ready to train: run it on a device with [`crate::model::with_device`].
pub struct Training {
    pub(super) objective: ObjectiveRun,
    /// The output directory.
    pub out: PathBuf,
    /// The run's settings (a resumed run's come from its `run.json`).
    pub settings: RunSettings,
    /// Total optimizer updates, counting those before a resume.
    pub steps: usize,
    resume: bool,
    base_path: PathBuf,
    pub(super) base: Opened,
    pub(super) data: PreferenceSet,
    device: DeviceKind,
    command: String,
    /// Progress of the training loop (hidden for a library caller that wants none).
    pub bar: ProgressBar,
}

/// What a finished run reports.
pub struct RunOutcome {
    /// The objective's name.
    pub objective: String,
    /// The step a resumed run continued from.
    pub resumed_at: Option<usize>,
    /// Updates done in total.
    pub steps: usize,
    /// Wall time of the training loop in seconds.
    pub train_s: f64,
    /// The trained model.
    pub model_path: PathBuf,
    /// Base and trained model judged side by side (absent with `eval_prompts` 0).
    pub comparison: Option<Comparison>,
    /// `report.json` and `grid.png`, when judged.
    pub report: Option<(PathBuf, PathBuf)>,
    /// Samples per side in the grid.
    pub grid_samples: usize,
}

/// Resolves a run: its settings (from `run.json` when resuming: the objective and parameters must match), its
/// base model, its data and its output directory. `steps` defaults to the resumed run's, or [`DEFAULT_STEPS`].
pub fn prepare(
    objective: ObjectiveRun,
    start: Start,
    steps: Option<usize>,
    device: DeviceKind,
    command: String,
) -> anyhow::Result<Training> {
    let (out, settings, steps, resume) = match start {
        Start::Resume(out) => {
            let path = out.join("run.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot resume: cannot read `{}`", path.display()))?;
            let saved: Value =
                serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))?;
            if saved["objective_sha256"].as_str() != Some(objective.sha256.as_str())
                || saved["params"] != Value::Object(objective.params_json())
            {
                bail!(
                    "cannot resume `{}`: it was started with a different objective or parameters (see `{}`)",
                    out.display(),
                    path.display()
                );
            }
            let settings: RunSettings = serde_json::from_value(saved["settings"].clone())
                .with_context(|| format!("`{}`: bad `settings`", path.display()))?;
            let steps = steps.or(saved["steps"].as_u64().map(|s| s as usize)).unwrap_or(DEFAULT_STEPS);
            (out, settings, steps, true)
        }
        Start::Fresh { out, settings } => {
            let out = out.unwrap_or_else(|| PathBuf::from(format!("runs/{}-seed{}", objective.obj.name, settings.seed)));
            (out, settings, steps.unwrap_or(DEFAULT_STEPS), false)
        }
    };
    let base_path = model_path(settings.model.as_deref(), settings.world);
    let base = open(&base_path, settings.world)?;
    let data = match &settings.data {
        Some(dir) => {
            if base.world.frames() != 1 {
                bail!("--data (imagefolder) is for image models only");
            }
            load_imagefolder(Path::new(dir), base.model.config().image_size).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => {
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x5eed_da7a);
            base.world.preference_set(settings.data_size, &mut rng)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let bar = ProgressBar::hidden();
    Ok(Training { objective, out, settings, steps, resume, base_path, base, data, device, command, bar })
}

impl Training {
    /// The checkpoint metadata at `step`.
    fn meta(&self, step: usize) -> CheckpointMeta {
        let o = &self.objective;
        CheckpointMeta {
            seed: self.settings.seed,
            step: step as u64,
            kind: Some("run".into()),
            command: Some(self.command.clone()),
            train: serde_json::to_value(&self.settings).ok(),
            objective: Some(ObjectiveMeta {
                text: o.canonical.clone(),
                sha256: o.sha256.clone(),
                params: o.obj.named_values().map(|(n, v)| (n.to_string(), v)).collect(),
            }),
            ..CheckpointMeta::new(&self.base.meta.world, self.base.meta.world_config.clone(), self.base.meta.schedule)
        }
    }

    /// Writes `objective.obj` and `run.json` of a fresh run.
    fn write_run_files(&self, plan: String) -> anyhow::Result<()> {
        let o = &self.objective;
        std::fs::write(self.out.join("objective.obj"), &o.canonical)
            .with_context(|| format!("cannot write into `{}`", self.out.display()))?;
        write_json(
            &self.out.join("run.json"),
            &json!({
                "command": self.command, "objective": o.obj.name, "objective_sha256": o.sha256,
                "params": o.params_json(), "base_model": self.base_path.display().to_string(),
                "settings": self.settings, "device": self.device, "steps": self.steps, "plan": plan,
            }),
        )
    }
}

impl OnDevice for Training {
    type Output = anyhow::Result<RunOutcome>;

    fn run<D: Backend>(mut self, dev: D) -> anyhow::Result<RunOutcome> {
        let data = std::mem::replace(&mut self.data, PreferenceSet { items: Vec::new() });
        let s = &self.settings;
        let cfg = TrainConfig {
            batch: s.batch,
            lr: s.lr,
            warmup: s.warmup,
            max_grad_norm: s.max_grad_norm,
            ema_decay: s.ema,
            seed: s.seed,
        };
        let initial = self.base.model.to_device(&dev)?;
        let (world, schedule) = (self.base.world.as_ref(), &self.base.schedule);
        let parts = TrainerParts {
            objective: self.objective.obj.clone(),
            initial: initial.clone(),
            schedule: schedule.clone(),
            data,
            vocab: world.vocab().clone(),
        };
        let mut trainer = Trainer::new(parts, cfg)?;
        let out = &self.out;
        let resumed_at = if self.resume {
            trainer.restore_state(out)?;
            Some(trainer.step)
        } else {
            self.write_run_files(trainer.obj.plan_text())?;
            None
        };
        let mut metrics = JsonlWriter::append(&out.join("metrics.jsonl"), trainer.step)?;
        let curve_settings = EvalSettings::standard_on(s.curve_prompts.max(1));
        let mut curve = Curve {
            every: s.eval_every,
            world,
            schedule,
            prompts: curve_settings.prompts(world),
            settings: curve_settings,
            out: JsonlWriter::append_upto_step(&out.join("curve.jsonl"), trainer.step)?,
            last: None,
        };
        if trainer.step == 0 {
            curve.point(0, trainer.output_model())?;
        }
        let bar = &self.bar;
        bar.set_length(self.steps.saturating_sub(trainer.step) as u64);
        let started = Instant::now();
        let checkpoint = out.join("checkpoint.safetensors");
        while trainer.step < self.steps {
            let report = match trainer.step() {
                Ok(r) => r,
                Err(e) => {
                    bar.abandon();
                    let kept = if checkpoint.exists() {
                        format!(
                            "the last good checkpoint is `{}` (resume with `--resume {}`)",
                            checkpoint.display(),
                            out.display()
                        )
                    } else {
                        "no checkpoint had been written yet".to_string()
                    };
                    bail!("training stopped: {e}; {kept}");
                }
            };
            metrics.write(&step_json(&report))?;
            bar.set_message(format!("loss {:.4}", report.loss));
            bar.inc(1);
            if s.checkpoint_every > 0 && report.step % s.checkpoint_every == 0 {
                save_checkpoint(&checkpoint, trainer.output_model(), &self.meta(report.step))?;
                trainer.save_state(out, &self.objective.sha256)?;
            }
            if curve.due(report.step) {
                bar.suspend(|| curve.point(report.step, trainer.output_model()))?;
            }
        }
        curve.finish(trainer.step, trainer.output_model())?;
        bar.finish_and_clear();
        let train_s = started.elapsed().as_secs_f64();
        let model_path = out.join("model.safetensors");
        save_checkpoint(&model_path, trainer.output_model(), &self.meta(trainer.step))?;

        let mut outcome = RunOutcome {
            objective: trainer.obj.name.clone(),
            resumed_at,
            steps: trainer.step,
            train_s,
            model_path,
            comparison: None,
            report: None,
            grid_samples: 0,
        };
        if s.eval_prompts == 0 {
            return Ok(outcome);
        }
        let settings = EvalSettings::standard_on(s.eval_prompts);
        let cmp = Comparison::new(&initial, trainer.output_model(), schedule, world, &settings)?;
        let (report_path, grid_path) = (out.join("report.json"), out.join("grid.png"));
        write_json(
            &report_path,
            &json!({
                "world": world.kind().name(), "prompts": settings.split.name(), "n_prompts": cmp.base.prompts.len(),
                "eval": settings, "base": cmp.base.summary().json, "trained": cmp.trained.summary().json,
                "win_rate": cmp.win_rate(), "train_seconds": train_s,
            }),
        )?;
        let n = cmp.base.samples.len().min(8);
        let grid: Vec<_> = cmp.base.samples[..n].iter().chain(&cmp.trained.samples[..n]).cloned().collect();
        let layout = GridConfig { cols: n.max(1), spacing: 2, scale: 4, background: [128, 128, 128] };
        world.write_samples(&grid, &layout, &grid_path)?;
        outcome.comparison = Some(cmp);
        outcome.report = Some((report_path, grid_path));
        outcome.grid_samples = n;
        Ok(outcome)
    }
}

/// One metrics line. Wall time is left out on purpose: the same seed must give bitwise the same file.
fn step_json(r: &StepReport) -> Value {
    let logs: Map<String, Value> = r.logs.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let leaves: Map<String, Value> = r.leaf_means.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let refs: Map<String, Value> = r.references.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    json!({ "step": r.step, "loss": r.loss, "logs": logs, "e": leaves, "grad_norm": r.grad_norm, "lr": r.lr,
            "nfe": r.nfe, "ref": refs, "snapshot": r.snapshot })
}
