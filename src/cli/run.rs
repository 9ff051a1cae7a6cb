//! `seppoc run FILE`: train the base model with an objective, then judge base vs trained on held-out prompts.

use super::engine::{command_line, progress_bar, write_json, DeviceArgs, JsonlWriter};
use super::load::{load_any, model_path_for, Loaded, WorldFlag, SCHEDULE_KEY, WORLD_KEY};
use super::eval::pick_prompts;
use super::run_eval::{evaluate, Curve, CurvePrompts, EvalInputs};
use super::{checked_or_exit, parse_set};
use crate::data::load_imagefolder;
use crate::device::{with_device, Backend, OnDevice};
use crate::ir::lower;
use crate::model::{save_checkpoint, CheckpointMeta};
use crate::syntax;
use crate::trainer::{StepReport, TrainConfig, Trainer};
use anyhow::{bail, Context};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `seppoc run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file.
    file: String,
    /// Override a parameter (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Output directory (default `runs/<objective>-seed<S>`).
    #[arg(long)]
    out: Option<String>,
    /// Continue the run in DIR from its last saved state (settings come from DIR/run.json; `--steps` may grow).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<String>,
    /// Optimizer updates (in total, counting those before a resume).
    #[arg(long)]
    steps: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    settings: Settings,
}

/// Everything that determines a run besides the objective: saved in `run.json`, reused by `--resume`.
#[derive(clap::Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Seed of every random draw (data order, t, eps, reference choice, sampler).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Base model (default: the shipped `assets/base/model.safetensors`, or `assets/base_video/...` for video).
    #[arg(long)]
    model: Option<String>,
    /// The base model's world: `video` trains a clip model on the video world's preference clips (default: what
    /// the checkpoint says; picks the default base model).
    #[arg(long, value_enum)]
    #[serde(default)]
    world: Option<WorldFlag>,
    /// Preference data in the imagefolder convention (default: the base model's synthetic world).
    #[arg(long)]
    data: Option<String>,
    /// Size of the synthetic preference set.
    #[arg(long, default_value_t = 2048)]
    data_size: usize,
    /// Prompts per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-5)]
    lr: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f32,
    /// Keep an EMA of the policy with this decay and evaluate/save it.
    #[arg(long)]
    ema: Option<f32>,
    /// Save `checkpoint.safetensors` and the resumable state every N updates (atomically).
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
    /// Held-out prompts judged at the end (0 skips the evaluation).
    #[arg(long, default_value_t = 64)]
    eval_prompts: usize,
    /// Judge the policy every N updates (and at steps 0 and last) on `--curve-prompts` held-out prompts,
    /// appending to `curve.jsonl` (0 = never).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    eval_every: usize,
    /// Held-out prompts (spread evenly over the list) judged for each `--eval-every` point.
    #[arg(long, default_value_t = 32)]
    #[serde(default = "default_curve_prompts")]
    curve_prompts: usize,
}

fn default_curve_prompts() -> usize {
    32
}

/// Default number of updates of a fresh run.
const DEFAULT_STEPS: usize = 200;

/// Runs `seppoc run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(args.device.kind())?;
    let (checked, params) = match checked_or_exit(&args.file, &args.sets)? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    let obj = lower(&checked);
    let canonical = syntax::format(&checked.file);
    let hash = format!("{:x}", Sha256::digest(canonical.as_bytes()));
    let param_json: Map<String, Value> = params.iter().map(|(n, v)| (n.clone(), json!(v))).collect();

    // A resumed run takes every setting from its run.json; only the number of steps may change.
    let (out, settings, steps) = match &args.resume {
        Some(dir) => {
            let out = PathBuf::from(dir);
            let path = out.join("run.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot resume: cannot read `{}`", path.display()))?;
            let saved: Value =
                serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))?;
            if saved["objective_sha256"].as_str() != Some(hash.as_str())
                || saved["params"] != Value::Object(param_json.clone())
            {
                bail!(
                    "cannot resume `{}`: it was started with a different objective or parameters (see `{}`)",
                    out.display(),
                    path.display()
                );
            }
            let settings: Settings = serde_json::from_value(saved["settings"].clone())
                .with_context(|| format!("`{}`: bad `settings`", path.display()))?;
            let steps = args.steps.or(saved["steps"].as_u64().map(|s| s as usize)).unwrap_or(DEFAULT_STEPS);
            (out, settings, steps)
        }
        None => {
            let s = args.settings.clone();
            let out = PathBuf::from(args.out.clone().unwrap_or_else(|| format!("runs/{}-seed{}", obj.name, s.seed)));
            (out, s, args.steps.unwrap_or(DEFAULT_STEPS))
        }
    };
    let base_path = model_path_for(settings.model.as_deref(), settings.world.unwrap_or(WorldFlag::Image));
    let base = load_any(&base_path, settings.world)?;
    let data = match &settings.data {
        Some(_) if matches!(base, Loaded::Video(_)) => bail!("--data (imagefolder) is for image models only"),
        Some(dir) => {
            load_imagefolder(Path::new(dir), base.model().config().image_size).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => base.preference_set(settings.data_size, &mut ChaCha8Rng::seed_from_u64(settings.seed ^ 0x5eed_da7a)),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let job = RunJob { obj, params, canonical, hash, param_json, out, settings, steps, base_path, base, data, args };
    with_device(job.args.device.kind(), job)?
}

/// Everything `run` resolved before choosing the device; [`OnDevice::run`] trains and evaluates on it.
struct RunJob {
    obj: crate::ir::Objective,
    params: Vec<(String, f64)>,
    canonical: String,
    hash: String,
    param_json: Map<String, Value>,
    out: PathBuf,
    settings: Settings,
    steps: usize,
    base_path: PathBuf,
    base: Loaded,
    data: crate::data::PreferenceSet,
    args: Args,
}

impl OnDevice for RunJob {
    type Output = anyhow::Result<ExitCode>;

    fn run<D: Backend>(self, dev: D) -> anyhow::Result<ExitCode> {
        let RunJob { obj, params, canonical, hash, param_json, out, settings, steps, base_path, base, data, args } =
            self;
        let cfg = TrainConfig {
            batch: settings.batch,
            lr: settings.lr,
            warmup: settings.warmup,
            max_grad_norm: settings.max_grad_norm,
            ema_decay: settings.ema,
            seed: settings.seed,
        };
        let values = params.iter().map(|(_, v)| *v).collect();
        let initial = base.model().to_device(&dev)?;
        let mut trainer =
            Trainer::new(obj, values, initial.clone(), base.schedule().clone(), data, base.vocab().clone(), cfg)?;
        if args.resume.is_some() {
            trainer.restore_state(&out)?;
            println!("resumed `{}` at step {}", out.display(), trainer.step);
        } else {
            std::fs::write(out.join("objective.obj"), &canonical)
                .with_context(|| format!("cannot write into `{}`", out.display()))?;
            write_json(
                &out.join("run.json"),
                &json!({
                    "command": command_line(), "objective": trainer.obj.name, "objective_sha256": hash, "params": param_json,
                    "base_model": base_path.display().to_string(), "settings": settings, "device": args.device.kind(),
                    "steps": steps, "plan": trainer.obj.plan_text(),
                }),
            )?;
        }
        let meta = |step: usize| {
            let mut extra = std::collections::BTreeMap::new();
            extra.insert("objective".to_string(), canonical.clone());
            extra.insert("objective_sha256".to_string(), hash.clone());
            extra.insert("params".to_string(), Value::Object(param_json.clone()).to_string());
            extra.insert("command".to_string(), command_line());
            for key in [SCHEDULE_KEY, WORLD_KEY] {
                if let Some(s) = base.meta().extra.get(key) {
                    extra.insert(key.to_string(), s.clone());
                }
            }
            CheckpointMeta {
                world_config: base.meta().world_config.clone(),
                seed: settings.seed,
                step: step as u64,
                extra,
            }
        };
        let metrics_path = out.join("metrics.jsonl");
        let mut metrics = JsonlWriter::append(&metrics_path, trainer.step)?;
        let n_curve = Some(settings.curve_prompts.max(1));
        let curve_prompts = match &base {
            Loaded::Image(b) => CurvePrompts::Image(pick_prompts(&b.world.heldout, n_curve)),
            Loaded::Video(b) => CurvePrompts::Video(pick_prompts(&b.world.heldout, n_curve)),
        };
        let mut curve = Curve {
            every: settings.eval_every,
            prompts: curve_prompts,
            vocab: base.vocab(),
            schedule: base.schedule(),
            out: JsonlWriter::append_upto_step(&out.join("curve.jsonl"), trainer.step)?,
            last: None,
        };
        if trainer.step == 0 {
            curve.point(0, trainer.output_model())?;
        }
        let bar = progress_bar(steps.saturating_sub(trainer.step) as u64, &trainer.obj.name);
        let started = Instant::now();
        let checkpoint = out.join("checkpoint.safetensors");
        while trainer.step < steps {
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
            if settings.checkpoint_every > 0 && report.step % settings.checkpoint_every == 0 {
                save_checkpoint(&checkpoint, trainer.output_model(), &meta(report.step))?;
                trainer.save_state(&out, &hash)?;
            }
            if curve.due(report.step) {
                bar.suspend(|| curve.point(report.step, trainer.output_model()))?;
            }
        }
        curve.finish(trainer.step, trainer.output_model())?;
        bar.finish_and_clear();
        let train_s = started.elapsed().as_secs_f64();
        let final_path = out.join("model.safetensors");
        save_checkpoint(&final_path, trainer.output_model(), &meta(trainer.step))?;
        println!(
            "trained `{}` for {} steps in {:.0} s -> {}",
            trainer.obj.name,
            trainer.step,
            train_s,
            final_path.display()
        );
        match &base {
            _ if settings.eval_prompts == 0 => {}
            Loaded::Image(b) => {
                let eval = EvalInputs {
                    heldout: &b.world.heldout,
                    vocab: &b.world.vocab,
                    schedule: &b.schedule,
                    n_prompts: settings.eval_prompts,
                };
                evaluate(&eval, &initial, trainer.output_model(), &out, train_s)?;
            }
            Loaded::Video(b) => {
                super::run_video::evaluate(b, settings.eval_prompts, &initial, trainer.output_model(), &out, train_s)?
            }
        }
        Ok(ExitCode::SUCCESS)
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
