//! A training run: an objective trains a base model on preference data, saving checkpoints, resumable state,
//! `metrics.jsonl` and the score curve as it goes, then base and trained model are judged side by side.
//!
//! Output directory: `objective.obj` (canonical text), `run.json` (objective hash, parameters, settings: what a
//! resume reads back), `metrics.jsonl`, `curve.jsonl`, `checkpoint.safetensors` and the saved state every
//! `checkpoint_every` updates, `model.safetensors`, `report.json`, `grid.png` and `grid.txt` (each cell's prompt) at
//! the end.

mod data;
mod inputs;
mod records;
mod settings;

pub use data::{field_needs, keeps_ties, load_data, shape};
pub use inputs::ObjectiveRun;
use inputs::{another_run, has_state, read_run_json, sample_scorer_for, RUN_OUTPUTS};
pub use inputs::{default_data, saved_objective, saved_params};
use records::{delta_json, step_json};
pub use records::{RunOutcome, DELTA_RESAMPLES};
pub use settings::{f32_value, RunSettings};

use crate::data::PreferenceSet;
use crate::device::Backend;
use crate::device::{DeviceKind, OnDevice};
use crate::engine::eval::{Comparison, Curve, EvalSettings};
use crate::engine::files::{write_atomic, write_grid_index, write_json, DirLock, JsonlWriter};
use crate::engine::open::{model_path, open, Opened};
use crate::engine::progress::Progress;
use crate::engine::stop::{self, shell_quote, Interrupted};
use crate::eval::{Captions, GridConfig, GridLabels};
use crate::model::{save_checkpoint, CheckpointMeta, ObjectiveMeta};
use crate::trainer::{SampleScorer, Trainer, TrainerParts};
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Default number of updates of a fresh run.
pub const DEFAULT_STEPS: usize = 200;

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
    /// What scores generated samples (`--reward`), for an objective that reads their reward.
    scorer: Option<Box<dyn SampleScorer>>,
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
            let out = out.unwrap_or_else(|| settings.default_out(&objective.obj.name, &[]));
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
                Some(saved) => bail!("{}", another_run(&out, &saved, &objective, &settings)),
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
    let base_path = model_path(settings.model.as_deref(), settings.world)?;
    let base = open(&base_path, settings.world)?;
    let (data, data_source) = load_data(&settings, &base, &objective.obj)?;
    if let Some(m) = crate::trainer::partial_groups(settings.batch, &objective.obj) {
        bail!("{m}");
    }
    let scorer = sample_scorer_for(&objective, &settings, &base)?;
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
        scorer,
    })
}

impl Training {
    /// What the base model predicts: it decides what `err(M, x)` measures and how samples are drawn.
    pub fn parametrisation(&self) -> crate::model::Parametrisation {
        self.base.schedule.param
    }

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
        trainer.set_total_steps(self.steps);
        if let Some(scorer) = self.scorer.take() {
            trainer.set_scorer(scorer);
        }
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
        let curve_settings = EvalSettings::standard_on(s.curve_prompts.max(1)).for_model(schedule)?;
        // A resumed run whose curve already has a point at its step (a finished run judged again) keeps it.
        let has_point = std::fs::read_to_string(out.join("curve.jsonl")).is_ok_and(|t| {
            t.lines().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| v["step"].as_u64() == Some(trainer.step as u64))
            })
        });
        let mut curve = Curve {
            every: s.eval_every,
            world,
            schedule,
            prompts: curve_settings.prompts(world),
            settings: curve_settings,
            out: JsonlWriter::append_upto_step(&out.join("curve.jsonl"), trainer.step)?,
            last: (trainer.step > 0 && has_point).then_some(trainer.step),
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
        let resume_command = self.resume_command();
        let note = |step: usize| {
            stop::note_saved(format!(
                "run `{}`'s state at step {step} of {} (resume with `{resume_command}`)",
                out.display(),
                self.steps
            ))
        };
        if let Some(step) = resumed_at {
            note(step);
        }
        let save = |trainer: &Trainer<D>, step: usize| -> anyhow::Result<()> {
            trainer.save_state(out, &self.objective.sha256)?;
            save_checkpoint(&checkpoint, trainer.output_model(), &self.meta(step))?;
            note(step);
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
            profile: trainer.profile().clone(),
            comparison: None,
            report: None,
            grid_samples: 0,
        };
        if s.eval_prompts == Some(0) {
            return Ok(outcome);
        }
        let settings =
            EvalSettings { n_prompts: s.eval_prompts, samples: s.eval_samples.max(1), ..EvalSettings::standard() }
                .for_model(schedule)?;
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
        let labels = GridLabels {
            rows: vec!["base".into(), "trained".into()],
            prompts: cmp.base.prompts[..n].iter().chain(&cmp.trained.prompts[..n]).cloned().collect(),
            captions: Captions::LastRow,
        };
        world.write_samples(&grid, &layout, &labels, &grid_path)?;
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
