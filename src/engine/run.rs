//! A training run: an objective trains a base model on preference data, saving checkpoints, resumable state,
//! `metrics.jsonl` and the score curve as it goes, then base and trained model are judged side by side.
//!
//! Output directory: `objective.obj` (canonical text), `run.json` (objective hash, parameters, settings: what a
//! resume reads back), `metrics.jsonl`, `curve.jsonl`, `checkpoint.safetensors` and the saved state every
//! `checkpoint_every` updates, `model.safetensors`, `report.json`, `grid.png` and `grid.txt` (each cell's prompt) at
//! the end.

use super::eval::{Comparison, Curve, EvalSettings};
use super::files::{write_atomic, write_grid_index, write_json, DirLock, JsonlWriter};
use super::open::{model_path, open, Opened};
use super::progress::Progress;
use super::stop::{self, shell_quote, Interrupted};
use crate::check::Checked;
use crate::data::{load_imagefolder, PreferenceSet};
use crate::device::Backend;
use crate::device::{DeviceKind, OnDevice};
use crate::eval::GridConfig;
use crate::ir::{lower, Bound};
use crate::model::{save_checkpoint, CheckpointMeta, ObjectiveMeta};
use crate::syntax;
use crate::trainer::{StepReport, TrainConfig, Trainer, TrainerParts};
use crate::world::WorldKind;
use anyhow::{bail, Context};
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
    /// Preference data: a Parquet file in the Pick-a-Pic schema (ties dropped), a folder in the imagefolder
    /// convention, or `synthetic` for the world's clean-render pairs (default: `preferences.parquet` beside the
    /// base model when it exists, else `synthetic`).
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
    /// does for classifier-free guidance; 0 keeps every caption).
    #[arg(long, default_value_t = 0.0)]
    #[serde(default)]
    pub caption_dropout: f64,
    /// Held-out prompts judged at the end, spread evenly over the held-out list (default: all of them; 0 skips
    /// the evaluation).
    #[arg(long)]
    pub eval_prompts: Option<usize>,
    /// Samples of each held-out prompt judged at the end, each with its own noise.
    #[arg(long, default_value_t = 2)]
    #[serde(default = "one")]
    pub eval_samples: usize,
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

/// Runs saved before `eval_samples` existed judged one sample per prompt.
fn one() -> usize {
    1
}

/// An f32 as the f64 of its shortest decimal form: `2e-5`, not `0.000019999999494757503`.
pub fn f32_value(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(f64::from(x))
}

fn short_f32<S: serde::Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f32_value(*x))
}

fn short_f32_opt<S: serde::Serializer>(x: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => s.serialize_some(&f32_value(*x)),
        None => s.serialize_none(),
    }
}

impl RunSettings {
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
        Ok(())
    }
}

/// The objective file and the `--set` values of the run in `dir`, for a resume given no objective file:
/// `DIR/objective.obj` and the parameters recorded in `DIR/run.json`.
pub fn saved_objective(dir: &Path) -> anyhow::Result<(PathBuf, Vec<(String, String)>)> {
    let saved = read_run_json(dir)?;
    let file = dir.join("objective.obj");
    if !file.exists() {
        bail!("cannot resume `{}`: `{}` is missing", dir.display(), file.display());
    }
    Ok((file, saved_params(&saved)))
}

/// The parameter values of a `run.json` as `--set` pairs (shortest decimal form, which parses back exactly).
pub fn saved_params(saved: &Value) -> Vec<(String, String)> {
    let params = saved["params"].as_object().cloned().unwrap_or_default();
    params.into_iter().map(|(k, v)| (k, v.as_f64().map_or_else(|| v.to_string(), |x| format!("{x}")))).collect()
}

/// Reads `DIR/run.json`.
fn read_run_json(dir: &Path) -> anyhow::Result<Value> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot resume `{}`: no `run.json` there (is it a `seppoc run` output directory?)", dir.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))
}

/// Whether `dir` holds a saved training state to resume from.
fn has_state(dir: &Path) -> bool {
    dir.join("state/state.json").exists() || dir.join("state.old/state.json").exists()
}

/// The files a run writes; a directory holding any of them without a matching `run.json` is another run's.
const RUN_OUTPUTS: [&str; 8] = [
    "run.json",
    "objective.obj",
    "metrics.jsonl",
    "curve.jsonl",
    "checkpoint.safetensors",
    "model.safetensors",
    "report.json",
    "state",
];

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
    data_source: String,
    device: DeviceKind,
    command: String,
    /// Progress of the training loop (hidden for a library caller that wants none).
    pub progress: Progress,
    /// Held while the run writes its directory.
    #[allow(dead_code)]
    lock: DirLock,
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
    let same_objective = |saved: &Value| {
        saved["objective_sha256"].as_str() == Some(objective.sha256.as_str())
            && saved["params"] == Value::Object(objective.params_json())
    };
    let (out, settings, steps, resume) = match start {
        Start::Resume(out) => {
            let saved = read_run_json(&out)?;
            if !same_objective(&saved) {
                bail!(
                    "cannot resume `{}`: it was started with a different objective or parameters (see `{}`)",
                    out.display(),
                    out.join("run.json").display()
                );
            }
            let settings: RunSettings = serde_json::from_value(saved["settings"].clone())
                .with_context(|| format!("`{}`: bad `settings`", out.join("run.json").display()))?;
            if !has_state(&out) {
                bail!(
                    "cannot resume `{}`: the run stopped before it saved any training state (the first is saved \
                     at step {} or when the run ends); start it again without --resume",
                    out.display(),
                    settings.checkpoint_every
                );
            }
            let steps = steps.or(saved["steps"].as_u64().map(|s| s as usize)).unwrap_or(DEFAULT_STEPS);
            (out, settings, steps, true)
        }
        Start::Fresh { out, settings } => {
            settings.validate()?;
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("runs/{}-seed{}", objective.obj.name, settings.seed)));
            let steps = steps.unwrap_or(DEFAULT_STEPS);
            match read_run_json(&out).ok() {
                // The same command again: continue the run (or start it over when it saved nothing yet).
                Some(saved)
                    if same_objective(&saved)
                        && serde_json::to_value(&settings).ok().as_ref() == Some(&saved["settings"]) =>
                {
                    let resume = has_state(&out);
                    (out, settings, steps, resume)
                }
                Some(saved) => bail!(
                    "`{}` holds another run (objective `{}`, with other parameters or settings; see `{}`): pass \
                     another --out, or continue that run with `seppoc run --resume {}`",
                    out.display(),
                    saved["objective"].as_str().unwrap_or("?"),
                    out.join("run.json").display(),
                    shell_quote(&out.display().to_string())
                ),
                None => {
                    if let Some(f) = RUN_OUTPUTS.iter().find(|f| out.join(f).exists()) {
                        bail!(
                            "`{}` already holds `{f}` of a run that cannot be identified (no readable `run.json`); \
                             pass another --out or remove it",
                            out.display()
                        );
                    }
                    (out, settings, steps, false)
                }
            }
        }
    };
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let base_path = model_path(settings.model.as_deref(), settings.world);
    let base = open(&base_path, settings.world)?;
    let (data, data_source) = load_data(&settings, &base)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let lock = DirLock::acquire(&out)?;
    let progress = Progress::hidden();
    Ok(Training {
        objective,
        out,
        settings,
        steps,
        resume,
        base_path,
        base,
        data,
        data_source,
        device,
        command,
        progress,
        lock,
    })
}

/// The file of preference data that belongs to a base model, if any: `preferences.parquet` beside it.
pub fn default_data(base_model: &Path) -> Option<PathBuf> {
    let p = base_model.parent()?.join("preferences.parquet");
    p.exists().then_some(p)
}

/// The preference data a run trains on (see [`RunSettings::data`]) and where it came from (`synthetic` or the
/// path).
pub fn load_data(settings: &RunSettings, base: &Opened) -> anyhow::Result<(PreferenceSet, String)> {
    let chosen = settings.data.clone().map(PathBuf::from).or_else(|| default_data(&base.path));
    let side = base.model.config().image_size;
    let file = match chosen {
        Some(p) if p.as_os_str() != "synthetic" => p,
        _ => {
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x5eed_da7a);
            return Ok((base.world.preference_set(settings.data_size, &mut rng), "synthetic".into()));
        }
    };
    if base.world.frames() != 1 {
        bail!("--data files are for image models only");
    }
    let set = if file.is_dir() {
        load_imagefolder(&file, side).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        crate::data::parquet::read(&file, side)?.pairs
    };
    Ok((set, file.display().to_string()))
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
        write_atomic(&self.out.join("objective.obj"), o.canonical.as_bytes())?;
        write_json(
            &self.out.join("run.json"),
            &json!({
                "command": self.command, "objective": o.obj.name, "objective_sha256": o.sha256,
                "params": o.params_json(), "base_model": self.base_path.display().to_string(), "data": self.data_source,
                "settings": self.settings, "device": self.device, "steps": self.steps, "plan": plan,
                "schema": 1, "command": self.command, "objective": o.obj.name, "objective_sha256": o.sha256,
                "params": o.params_json(), "base_model": self.base_path.display().to_string(),
                "settings": self.settings, "device": self.device, "steps": self.steps,
                "plan": plan.trim().lines().collect::<Vec<_>>(),
            }),
        )
    }

    /// The command that resumes this run.
    fn resume_command(&self) -> String {
        let mut c =
            format!("seppoc run --resume {} --steps {}", shell_quote(&self.out.display().to_string()), self.steps);
        if self.device != DeviceKind::Cpu {
            c.push_str(&format!(" --device {}", format!("{:?}", self.device).to_lowercase()));
        }
        c
    }
}

impl OnDevice for Training {
    type Output = anyhow::Result<RunOutcome>;

    fn run<D: Backend>(mut self, dev: D) -> anyhow::Result<RunOutcome> {
        let data = std::mem::replace(&mut self.data, PreferenceSet { items: Vec::new() });
        let s = &self.settings;
        let cfg = s.train_config();
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
        let out = &self.out.clone();
        let resumed_at = if self.resume {
            trainer.restore_state(out)?;
            if trainer.step > self.steps {
                bail!(
                    "--steps {} is below the saved state's step {} in `{}`; pass --steps {} or more",
                    self.steps,
                    trainer.step,
                    out.display(),
                    trainer.step
                );
            }
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
        let mut progress = std::mem::replace(&mut self.progress, Progress::hidden());
        progress.set_range(trainer.step as u64, self.steps as u64);
        let started = Instant::now();
        let checkpoint = out.join("checkpoint.safetensors");
        let mut saved_at = resumed_at;
        // Saves the resumable state first, then the checkpoint, both atomically.
        let save = |trainer: &Trainer<D>, step: usize| -> anyhow::Result<()> {
            trainer.save_state(out, &self.objective.sha256)?;
            save_checkpoint(&checkpoint, trainer.output_model(), &self.meta(step))?;
            Ok(())
        };
        while trainer.step < self.steps {
            if stop::requested() {
                progress.finish();
                let kept = if trainer.step == 0 {
                    "before its first update; nothing to resume: run the same command again".to_string()
                } else {
                    if saved_at != Some(trainer.step) {
                        save(&trainer, trainer.step)?;
                    }
                    format!(
                        "at step {} of {}; its state is saved in `{}`. Resume with:\n  {}",
                        trainer.step,
                        self.steps,
                        out.join("state").display(),
                        self.resume_command()
                    )
                };
                return Err(
                    Interrupted { message: format!("interrupted: run `{}` stopped {kept}", out.display()) }.into()
                );
            }
            let report = match trainer.step() {
                Ok(r) => r,
                Err(e) => {
                    progress.finish();
                    let kept = if saved_at.is_some() {
                        format!(
                            "the last good checkpoint is `{}` (resume with `{}`)",
                            checkpoint.display(),
                            self.resume_command()
                        )
                    } else {
                        "no checkpoint had been written yet".to_string()
                    };
                    bail!("training stopped: {e}; {kept}");
                }
            };
            metrics.write(&step_json(&report))?;
            progress.step(report.loss);
            if s.checkpoint_every > 0 && report.step % s.checkpoint_every == 0 {
                save(&trainer, report.step)?;
                saved_at = Some(report.step);
            }
            if curve.due(report.step) {
                progress.suspend(|| curve.point(report.step, trainer.output_model()))?;
            }
        }
        curve.finish(trainer.step, trainer.output_model())?;
        progress.finish();
        // A finished run keeps its final state, so `--resume DIR --steps MORE` can continue it.
        if saved_at != Some(trainer.step) {
            save(&trainer, trainer.step)?;
        }
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
        if s.eval_prompts == Some(0) {
            return Ok(outcome);
        }
        let settings =
            EvalSettings { n_prompts: s.eval_prompts, samples: s.eval_samples.max(1), ..EvalSettings::standard() };
        let cmp = Comparison::new(&initial, trainer.output_model(), schedule, world, &settings)?;
        let (report_path, grid_path) = (out.join("report.json"), out.join("grid.png"));
        write_json(
            &report_path,
            &json!({
                "schema": 1, "world": world.kind().name(), "prompts": settings.split.name(), "n_prompts": cmp.base.prompts.len(),
                "eval": settings, "base": cmp.base.summary().json, "trained": cmp.trained.summary().json,
                "win_rate": cmp.win_rate(), "train_seconds": train_s, "delta": delta_json(&cmp),
            }),
        )?;
        let n = cmp.base.samples.len().min(8);
        let grid: Vec<_> = cmp.base.samples[..n].iter().chain(&cmp.trained.samples[..n]).cloned().collect();
        let layout = GridConfig { cols: n.max(1), spacing: 2, scale: 4, background: [128, 128, 128] };
        world.write_samples(&grid, &layout, &grid_path)?;
        let cells: Vec<(&str, &str)> = (cmp.base.prompts[..n].iter().map(|p| ("base", p.as_str())))
            .chain(cmp.trained.prompts[..n].iter().map(|p| ("trained", p.as_str())))
            .collect();
        write_grid_index(&out.join("grid.txt"), layout.cols, &cells)?;
        outcome.comparison = Some(cmp);
        outcome.report = Some((report_path, grid_path));
        outcome.grid_samples = n;
        Ok(outcome)
    }
}

/// The judge-score difference with its bootstrap interval, as stored in `report.json`.
fn delta_json(cmp: &Comparison) -> Value {
    let (mean, lo, hi) = cmp.delta_interval(DELTA_RESAMPLES, 0);
    json!({ "mean": mean, "ci95": [lo, hi], "resamples": DELTA_RESAMPLES, "over": "prompts" })
}

/// Bootstrap resamples of the final table's interval.
pub const DELTA_RESAMPLES: usize = 2000;

/// One metrics line. Wall time is left out on purpose: the same seed must give bitwise the same file.
fn step_json(r: &StepReport) -> Value {
    let logs: Map<String, Value> = r.logs.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let leaves: Map<String, Value> = r.leaf_means.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let refs: Map<String, Value> = r.references.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    json!({ "step": r.step, "loss": r.loss, "logs": logs, "e": leaves, "grad_norm": r.grad_norm, "lr": f32_value(r.lr),
            "nfe": r.nfe, "ref": refs, "snapshot": r.snapshot })
}
