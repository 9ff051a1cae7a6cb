//! Pretraining a base denoiser from scratch (ε-, v- or flow-velocity MSE, as `--param` says) on a world's noisy "web" distribution: the loop, its
//! learning-rate schedule, EMA warm-up, periodic checkpoints, `metrics.jsonl` and `recipe.json`.

mod settings;

pub use settings::{LrSchedule, ModelSize, PretrainSettings};

use crate::device::Backend;
use crate::device::OnDevice;
use crate::engine::files::{write_json, JsonlWriter};
use crate::model::{
    blank_caption, save_checkpoint, train_step_mse, AdamW, AdamWConfig, CheckpointMeta, Dit, Ema, MseBatch,
    ScheduleSpec,
};
use crate::model::{load_checkpoint, load_tensors, save_tensors};
use crate::trainer::state::{rng_from_json, rng_json, state_source, write_state_dir, StateError};
use crate::world::Testbed;
use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A pretraining job: run it on a device with [`crate::model::with_device`].
pub struct Pretraining<'a> {
    /// The world whose web distribution is learned.
    pub world: &'a dyn Testbed,
    /// The settings.
    pub settings: PretrainSettings,
    /// Where `model.safetensors`, `metrics.jsonl` and `recipe.json` go (must exist).
    pub out: PathBuf,
    /// The command line recorded in the checkpoint and the recipe.
    pub command: String,
    /// Progress (hidden for a library caller that wants none).
    pub progress: super::Progress,
    /// Continue from the state in `out/state/` (saved every `save_every` steps and when stopped) instead of
    /// starting over; the settings must be the ones the state was saved with.
    pub resume: bool,
}

/// What a finished pretraining run wrote.
#[derive(Clone, Debug)]
pub struct Pretrained {
    /// The checkpoint.
    pub checkpoint: PathBuf,
    /// Parameters of the model.
    pub n_params: usize,
    /// Wall time of the loop in seconds.
    pub wall_s: f64,
    /// Mean loss over the last (up to) 50 steps.
    pub final_loss: f32,
    /// The step a resumed pretraining continued from.
    pub resumed_at: Option<usize>,
}

/// One batch of web examples; captions are blanked with probability `caption_dropout`.
fn web_batch(world: &dyn Testbed, n: usize, caption_dropout: f64, rng: &mut ChaCha8Rng) -> MseBatch {
    let mut x0 = Vec::new();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (image, caption) = world.web_example(rng);
        x0.extend_from_slice(&image.data);
        let mut ids = world.vocab().encode(&caption);
        if rng.gen_bool(caption_dropout) {
            blank_caption(&mut ids);
        }
        tokens.push(ids);
    }
    MseBatch { x0, tokens }
}

impl Pretraining<'_> {
    /// The checkpoint metadata at `step`.
    fn meta(&self, schedule: ScheduleSpec, train: &serde_json::Value, step: usize) -> CheckpointMeta {
        CheckpointMeta {
            seed: self.settings.seed,
            step: step as u64,
            kind: Some("pretrain".into()),
            command: Some(self.command.clone()),
            train: Some(train.clone()),
            ..CheckpointMeta::new(self.world.kind().name(), self.world.config_json(), schedule)
        }
    }

    fn save<D: Backend>(&self, path: &Path, model: &Dit<D>, meta: CheckpointMeta) -> anyhow::Result<()> {
        Ok(save_checkpoint(path, model, &meta)?)
    }

    /// Saves the resumable state into `out/state/` (atomically, see [`write_state_dir`]).
    fn save_state<D: Backend>(&self, now: &Resumable<D>, fingerprint: &serde_json::Value) -> anyhow::Result<()> {
        let meta = CheckpointMeta {
            step: now.step as u64,
            ..self.meta(ScheduleSpec::default_linear(), &json!(null), now.step)
        };
        let fail = |e: &dyn std::fmt::Display| StateError(e.to_string());
        write_state_dir(&self.out, |tmp| {
            save_checkpoint(&tmp.join("model.safetensors"), &now.model, &meta).map_err(|e| fail(&e))?;
            if let Some(ema) = now.ema.as_ref() {
                save_checkpoint(&tmp.join("ema.safetensors"), ema.model(), &meta).map_err(|e| fail(&e))?;
            }
            let (adam_step, m, v) = now.opt.state();
            for (name, values) in [("adam_m.safetensors", &m), ("adam_v.safetensors", &v)] {
                save_tensors(&tmp.join(name), now.model.config(), values, &meta).map_err(|e| fail(&e))?;
            }
            let state = json!({
                "kind": "pretrain", "step": now.step, "adam_step": adam_step, "settings": fingerprint,
                "data_rng": rng_json(&now.data_rng), "noise_rng": rng_json(&now.noise_rng), "losses": now.losses,
                "saved_step": now.saved_step,
            });
            let path = tmp.join("state.json");
            std::fs::write(&path, state.to_string()).map_err(|e| StateError(format!("`{}`: {e}", path.display())))
        })?;
        super::stop::note_saved(format!(
            "pretraining `{}`'s state at step {} (resume with `seppoc pretrain --resume {}`)",
            self.out.display(),
            now.step,
            super::stop::shell_quote(&self.out.to_string_lossy())
        ));
        Ok(())
    }

    /// Restores the state saved by [`Self::save_state`] into `now`, checking that it belongs to these settings.
    fn restore_state<D: Backend>(&self, now: &mut Resumable<D>, fingerprint: &serde_json::Value) -> anyhow::Result<()> {
        let src = state_source(&self.out);
        let path = src.join("state.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("`{}` holds no saved pretraining state to resume (nothing was saved yet?)", self.out.display())
        })?;
        let state: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))?;
        if state["kind"] != "pretrain" {
            bail!("`{}` is not a pretraining state", path.display());
        }
        if &state["settings"] != fingerprint {
            bail!(
                "`{}` was saved by pretraining with other settings ({}); resume with the same settings or start over \
                 in another --out",
                self.out.display(),
                state["settings"]
            );
        }
        let get =
            |k: &str| state[k].as_u64().map(|v| v as usize).with_context(|| format!("`{}`: bad `{k}`", path.display()));
        let dev = now.model.device().clone();
        let load = |name: &str| -> anyhow::Result<Dit<D>> {
            let (model, _) = load_checkpoint(&src.join(name), &dev)?;
            if model.config() != now.model.config() {
                bail!("`{}`: the model configuration differs from these settings'", src.join(name).display());
            }
            Ok(model)
        };
        let model = load("model.safetensors")?;
        let moments = |name: &str| -> anyhow::Result<Vec<Vec<f32>>> { Ok(load_tensors(&src.join(name))?.1) };
        let (m, v) = (moments("adam_m.safetensors")?, moments("adam_v.safetensors")?);
        now.opt.restore(get("adam_step")?, m, v).map_err(|e| anyhow::anyhow!("`{}`: {e}", src.display()))?;
        if now.ema.is_some() {
            now.ema = Some(Ema::new(&load("ema.safetensors")?));
        }
        now.data_rng = rng_from_json(&state["data_rng"], &path)?;
        now.noise_rng = rng_from_json(&state["noise_rng"], &path)?;
        now.model = model;
        now.step = get("step")?;
        now.saved_step = state["saved_step"].as_u64().map(|v| v as usize);
        now.losses = serde_json::from_value(state["losses"].clone())
            .with_context(|| format!("`{}`: bad `losses`", path.display()))?;
        Ok(())
    }
}

/// Everything a pretraining loop changes: what its resumable state holds.
struct Resumable<D: Backend> {
    model: Dit<D>,
    opt: AdamW<D>,
    ema: Option<Ema<D>>,
    data_rng: ChaCha8Rng,
    noise_rng: ChaCha8Rng,
    /// Updates done.
    step: usize,
    /// The last `--save-every` checkpoint's step.
    saved_step: Option<usize>,
    /// Every loss so far (for the final mean).
    losses: Vec<f32>,
}

impl OnDevice for Pretraining<'_> {
    type Output = anyhow::Result<Pretrained>;

    fn run<D: Backend>(mut self, dev: D) -> anyhow::Result<Pretrained> {
        let s = &self.settings;
        s.validate()?;
        let model_cfg = s.model_config(self.world)?;
        let ckpt = self.out.join("model.safetensors");
        let model = Dit::new(&model_cfg, &dev, s.seed)?;
        let opt_cfg = AdamWConfig { warmup_steps: s.warmup, ..AdamWConfig::with_lr(s.lr) };
        let opt = AdamW::new(&model, opt_cfg.clone());
        let ema = (s.ema > 0.0).then(|| Ema::new(&model));
        let schedule_spec = s.schedule_spec();
        let schedule = schedule_spec.build();
        // Separate streams of one seed: the data does not shift when the noise draws change, and vice versa.
        let mut data_rng = ChaCha8Rng::seed_from_u64(s.seed);
        data_rng.set_stream(1);
        let mut noise_rng = ChaCha8Rng::seed_from_u64(s.seed);
        noise_rng.set_stream(2);
        let train_json = json!({
            "steps": s.steps, "batch": s.batch, "lr": super::run::f32_value(s.lr), "warmup": s.warmup, "lr_schedule": s.lr_schedule,
            "optimizer": opt_cfg, "caption_dropout": s.caption_dropout, "ema": s.ema,
            "max_grad_norm": s.max_grad_norm, "size": s.size, "schedule": schedule_spec,
        });
        // What a saved state must match to be resumed: everything that shapes the trajectory.
        let fingerprint = json!({
            "train": train_json, "seed": s.seed, "model_config": model_cfg, "world": self.world.kind().name(),
            "world_config": self.world.config_json(),
        });
        let mut now = Resumable { model, opt, ema, data_rng, noise_rng, step: 0, saved_step: None, losses: Vec::new() };
        // `--resume`, or the same command again over a stopped run of the same settings, continues it.
        let same_settings = || {
            let text = std::fs::read_to_string(state_source(&self.out).join("state.json")).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v["settings"] == fingerprint)
        };
        let resumed_at = if self.resume || same_settings() {
            self.restore_state(&mut now, &fingerprint)?;
            Some(now.step)
        } else {
            None
        };

        let mut metrics = JsonlWriter::append_upto_step(&self.out.join("metrics.jsonl"), now.step)?;
        let mut progress = std::mem::replace(&mut self.progress, super::Progress::hidden());
        progress.set_range(now.step as u64, s.steps as u64);
        let start = Instant::now();
        for step_idx in now.step..s.steps {
            if super::stop::requested() {
                progress.finish();
                let saved = self.save_state(&now, &fingerprint);
                let kept = match now.saved_step {
                    Some(k) => format!("; `{}` holds the model after step {k} (`--save-every`)", ckpt.display()),
                    None => String::new(),
                };
                let resume =
                    format!("seppoc pretrain --resume {}", super::stop::shell_quote(&self.out.to_string_lossy()));
                let message = match saved {
                    Ok(()) => format!(
                        "interrupted: pretraining stopped at step {step_idx} of {}; its state is saved in `{}`{kept}. \
                         Resume with:\n  {resume}",
                        s.steps,
                        self.out.join("state").display()
                    ),
                    Err(e) => format!(
                        "interrupted: pretraining stopped at step {step_idx} of {}{kept}; the state could not be \
                         saved ({e:#})",
                        s.steps
                    ),
                };
                return Err(super::Interrupted { message }.into());
            }
            now.opt.cfg.lr = s.lr_at(step_idx);
            let lr = now.opt.current_lr();
            let batch = web_batch(self.world, s.batch, s.caption_dropout, &mut now.data_rng);
            let stats =
                train_step_mse(&mut now.model, &mut now.opt, &schedule, &batch, s.max_grad_norm, &mut now.noise_rng)?;
            if !stats.loss.is_finite() {
                bail!("the loss became {} at step {}; try a lower --lr", stats.loss, step_idx + 1);
            }
            if let Some(ema) = &mut now.ema {
                ema.update(&now.model, s.ema_at(step_idx));
            }
            now.losses.push(stats.loss);
            now.step = step_idx + 1;
            let elapsed = start.elapsed().as_secs_f64();
            metrics.write(&json!({
                "step": step_idx + 1, "loss": stats.loss, "grad_norm": stats.grad_norm, "lr": super::run::f32_value(lr), "elapsed_s": elapsed,
            }))?;
            progress.step(f64::from(stats.loss));
            let step = step_idx + 1;
            if s.save_every > 0 && step % s.save_every == 0 && step < s.steps {
                let saved = now.ema.as_ref().map_or(&now.model, Ema::model);
                self.save(&ckpt, saved, self.meta(schedule_spec, &train_json, step))?;
                now.saved_step = Some(step);
                self.save_state(&now, &fingerprint)?;
            }
        }
        progress.finish();
        let wall_s = start.elapsed().as_secs_f64();
        let Resumable { model, ema, losses, .. } = now;
        self.save(&ckpt, ema.as_ref().map_or(&model, Ema::model), self.meta(schedule_spec, &train_json, s.steps))?;
        // The run is complete: its final model is the result, and nothing is left to resume.
        let _ = std::fs::remove_dir_all(self.out.join("state"));

        let tail = losses.len().min(50);
        let final_loss = losses[losses.len() - tail..].iter().sum::<f32>() / tail as f32;
        let bytes = std::fs::read(&ckpt).with_context(|| format!("cannot read back `{}`", ckpt.display()))?;
        let sha = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let world_config: serde_json::Value = serde_json::from_str(&self.world.config_json())?;
        let recipe = json!({
            "command": self.command, "seed": s.seed, "steps": s.steps, "wall_time_s": wall_s,
            "final_loss": final_loss,
            "final_loss_note": format!("mean {} MSE over the last {tail} steps", schedule_spec.param.describe()),
            "last_loss": losses.last(), "n_params": model.n_params(), "model_config": model_cfg,
            "world": self.world.kind().name(), "world_config": world_config, "train": train_json,
            "saved_weights": if ema.is_some() { "ema" } else { "raw" },
            "checkpoint": "model.safetensors", "checkpoint_sha256": sha, "checkpoint_bytes": bytes.len(),
        });
        write_json(&self.out.join("recipe.json"), &recipe)?;
        Ok(Pretrained { checkpoint: ckpt, n_params: model.n_params(), wall_s, final_loss, resumed_at })
    }
}
