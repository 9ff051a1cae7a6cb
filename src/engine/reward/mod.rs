//! A learned reward model for a world: a small text–image scorer trained with the Bradley–Terry loss on a
//! Pick-a-Pic-like preference set, as PickScore was trained on Pick-a-Pic (Kirstain et al., arXiv 2305.01569),
//! and its evaluation against the annotator's labels and the exact judge (`eval`). The scorer and the loss are
//! in `model`, the data and its prompt split in `data`. Method and measurements: `docs/reward.md`.
//!
//! A training folder holds `run.json` (the settings, the data's SHA-256 and, when finished, the results),
//! `metrics.jsonl`, `model.safetensors` (a DiT checkpoint whose metadata `kind` is `reward`) and, while
//! unfinished, `state/` (weights, AdamW moments, the data stream's position), from which the same command
//! continues bitwise. A folder made with other settings or data is refused.

mod data;
pub mod eval;
mod model;
mod open;
mod scorer;
mod settings;

pub use data::{file_sha256, pairs_of, read_split, Part, RewardPair, Split, SplitData, Ties};
pub use eval::{pearson, spearman, RewardEval, RewardEvalReport, RewardEvalSettings};
pub use model::{agreement, bt_gradients, bt_loss, rewards, score, BtStep};
pub use open::{open_reward, OpenedReward};
pub use scorer::{sample_scorer, JUDGE};
pub use settings::RewardSettings;

use super::files::{write_json, JsonlWriter};
use super::open::Opened;
use crate::data::Image;
use crate::device::{Backend, OnDevice};
use crate::model::{
    load_checkpoint, load_tensors, save_checkpoint, save_tensors, AdamW, AdamWConfig, CheckpointMeta, Dit, ScheduleSpec,
};
use crate::trainer::state::{rng_from_json, rng_json, state_source, write_state_dir, StateError};
use crate::world::Testbed;
use anyhow::{anyhow, bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::model::REWARD_KIND;

/// A reward-model training job: run it on a device with [`crate::device::with_device`].
pub struct RewardTraining {
    /// The base model whose world (vocabulary, image size, judge) the scorer is for.
    pub base: Opened,
    /// The preference file.
    pub data: PathBuf,
    /// The training folder (created if missing).
    pub out: PathBuf,
    /// The settings.
    pub settings: RewardSettings,
    /// The command line recorded in `run.json` and the checkpoint.
    pub command: String,
    /// Progress over the updates.
    pub progress: super::Progress,
    /// Stop after this many updates have been done in total, saving the state as a signal would (for tests of
    /// resuming; `None` trains to the end).
    pub halt_after: Option<usize>,
}

/// What a training call did.
#[derive(Clone, Debug, PartialEq)]
pub struct RewardTrained {
    /// The checkpoint (`OUT/model.safetensors`), written when the training finished.
    pub checkpoint: PathBuf,
    /// Parameters of the scorer.
    pub n_params: usize,
    /// Comparisons trained on / in validation / held out; captions held out.
    pub counts: SplitCounts,
    /// Updates done when this call returned.
    pub step: usize,
    /// The update a resumed training continued from.
    pub resumed_at: Option<usize>,
    /// Whether the call stopped early at [`RewardTraining::halt_after`].
    pub halted: bool,
    /// Mean training loss over the last (up to) 50 updates.
    pub final_loss: f64,
    /// Pair accuracy on the validation comparisons' decided pairs at the end (`None` without any).
    pub val_acc: Option<f64>,
    /// Wall time of this call's loop, seconds.
    pub wall_s: f64,
}

/// The sizes of the split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SplitCounts {
    /// Comparisons trained on (after `--ties skip`).
    pub train: usize,
    /// Validation comparisons.
    pub val: usize,
    /// Held-out comparisons.
    pub heldout: usize,
    /// Distinct captions trained on.
    pub train_captions: usize,
    /// Distinct held-out captions.
    pub heldout_captions: usize,
}

/// Everything the loop changes: what the resumable state holds.
struct Resumable<D: Backend> {
    model: Dit<D>,
    opt: AdamW<D>,
    rng: ChaCha8Rng,
    step: usize,
    losses: Vec<f64>,
}

/// The mean Bradley–Terry loss and the decided-pair accuracy of `model` on `pairs` (no gradients).
pub fn measure<D: Backend>(model: &Dit<D>, world: &dyn Testbed, pairs: &[RewardPair]) -> anyhow::Result<(f64, f64)> {
    let images: Vec<&Image> = pairs.iter().flat_map(|p| [&p.images[0], &p.images[1]]).collect();
    let tokens: Vec<Vec<usize>> =
        pairs.iter().flat_map(|p| [world.vocab().encode(&p.caption), world.vocab().encode(&p.caption)]).collect();
    let r = score(model, &images, &tokens)?;
    let (mut loss, mut right, mut decided) = (0.0, 0.0, 0usize);
    for (k, p) in pairs.iter().enumerate() {
        let d = f64::from(r[2 * k]) - f64::from(r[2 * k + 1]);
        loss += bt_loss(d, p.p0);
        if p.decided() {
            right += agreement(d, p.p0);
            decided += 1;
        }
    }
    Ok((loss / pairs.len().max(1) as f64, right / decided.max(1) as f64))
}

impl RewardTraining {
    fn meta(&self, cfg_train: &serde_json::Value, step: usize) -> CheckpointMeta {
        CheckpointMeta {
            seed: self.settings.seed,
            step: step as u64,
            kind: Some(REWARD_KIND.into()),
            command: Some(self.command.clone()),
            train: Some(cfg_train.clone()),
            ..CheckpointMeta::new(
                self.base.world.kind().name(),
                self.base.world.config_json(),
                ScheduleSpec::default_linear(),
            )
        }
    }

    fn save_state<D: Backend>(&self, now: &Resumable<D>, fingerprint: &serde_json::Value) -> anyhow::Result<()> {
        let meta = self.meta(&json!(null), now.step);
        let fail = |e: &dyn std::fmt::Display| StateError(e.to_string());
        write_state_dir(&self.out, |tmp| {
            save_checkpoint(&tmp.join("model.safetensors"), &now.model, &meta).map_err(|e| fail(&e))?;
            let (adam_step, m, v) = now.opt.state();
            for (name, values) in [("adam_m.safetensors", &m), ("adam_v.safetensors", &v)] {
                save_tensors(&tmp.join(name), now.model.config(), values, &meta).map_err(|e| fail(&e))?;
            }
            let state = json!({
                "kind": REWARD_KIND, "step": now.step, "adam_step": adam_step, "settings": fingerprint,
                "rng": rng_json(&now.rng), "losses": now.losses,
            });
            let path = tmp.join("state.json");
            std::fs::write(&path, state.to_string()).map_err(|e| StateError(format!("`{}`: {e}", path.display())))
        })?;
        super::stop::note_saved(format!(
            "reward training `{}`'s state at update {} (the same command continues it)",
            self.out.display(),
            now.step
        ));
        Ok(())
    }

    fn restore_state<D: Backend>(&self, now: &mut Resumable<D>, fingerprint: &serde_json::Value) -> anyhow::Result<()> {
        let src = state_source(&self.out);
        let path = src.join("state.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))?;
        if state["kind"] != REWARD_KIND || &state["settings"] != fingerprint {
            bail!("`{}` was saved by another training (other settings or data)", path.display());
        }
        let get =
            |k: &str| state[k].as_u64().map(|v| v as usize).with_context(|| format!("`{}`: bad `{k}`", path.display()));
        let (model, _) = load_checkpoint(&src.join("model.safetensors"), now.model.device())?;
        if model.config() != now.model.config() {
            bail!("`{}`: the scorer's configuration differs from these settings'", src.display());
        }
        let moments = |name: &str| -> anyhow::Result<Vec<Vec<f32>>> { Ok(load_tensors(&src.join(name))?.1) };
        let (m, v) = (moments("adam_m.safetensors")?, moments("adam_v.safetensors")?);
        now.opt.restore(get("adam_step")?, m, v).map_err(|e| anyhow!("`{}`: {e}", src.display()))?;
        now.model = model;
        now.rng = rng_from_json(&state["rng"], &path)?;
        now.step = get("step")?;
        now.losses = serde_json::from_value(state["losses"].clone())
            .with_context(|| format!("`{}`: bad `losses`", path.display()))?;
        Ok(())
    }

    /// Refuses an output folder made by something else or with other settings; says whether it holds a state of
    /// these settings to continue from.
    fn check_out(&self, fingerprint: &serde_json::Value) -> anyhow::Result<bool> {
        let run = self.out.join("run.json");
        if !run.exists() {
            let foreign = ["model.safetensors", "metrics.jsonl", "state"].iter().find(|f| self.out.join(f).exists());
            if let Some(f) = foreign {
                bail!(
                    "`{}` holds `{f}` but no `run.json` of a reward training; choose another --out",
                    self.out.display()
                );
            }
            return Ok(false);
        }
        let text = std::fs::read_to_string(&run).with_context(|| format!("cannot read `{}`", run.display()))?;
        let stored: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", run.display()))?;
        if stored["kind"] != REWARD_KIND {
            bail!("`{}` is not a reward training's record; choose another --out", run.display());
        }
        if &stored["fingerprint"] != fingerprint {
            let differ: Vec<String> =
                ["settings", "data_sha256", "world", "world_config", "model_config", "init_sha256"]
                    .iter()
                    .filter(|k| stored["fingerprint"][**k] != fingerprint[**k])
                    .map(|k| k.to_string())
                    .collect();
            bail!(
                "`{}` was made by a reward training with other {} (see `{}`); use the same settings and data to \
                 continue it, or another --out",
                self.out.display(),
                if differ.is_empty() { "settings".to_string() } else { differ.join(", ") },
                run.display()
            );
        }
        Ok(state_source(&self.out).join("state.json").exists())
    }
}

impl OnDevice for RewardTraining {
    type Output = anyhow::Result<RewardTrained>;

    fn run<D: Backend>(mut self, dev: D) -> anyhow::Result<RewardTrained> {
        let s = self.settings.clone();
        s.validate()?;
        let world = self.base.world.as_ref();
        let (cfg, init) = match &s.init {
            None => (s.model_config(world, self.base.model.config().channels)?, None),
            Some(path) => {
                let path = Path::new(path);
                let (model, _) = load_checkpoint(path, &dev)?;
                let mc = model.config();
                if mc.vocab_size != world.vocab().len()
                    || mc.image_size != world.image_size()
                    || mc.frames != world.frames()
                {
                    bail!(
                        "--init `{}` was trained on another world than base model `{}` (vocabulary, image size or \
                         frames differ)",
                        path.display(),
                        self.base.path.display()
                    );
                }
                (mc.clone(), Some((model, file_sha256(path)?)))
            }
        };
        let data_sha = file_sha256(&self.data)?;
        let split = read_split(&self.data, world.image_size(), &s.split())?;
        let train: Vec<RewardPair> =
            split.train.iter().filter(|p| s.ties == Ties::Soft || p.decided()).cloned().collect();
        if train.is_empty() {
            bail!(
                "`{}`: no comparison has a training prompt ({} rows, {} comparisons held out, {} in validation); \
                 lower --heldout or --val",
                self.data.display(),
                split.rows,
                split.heldout.len(),
                split.val.len()
            );
        }
        let counts = SplitCounts {
            train: train.len(),
            val: split.val.len(),
            heldout: split.heldout.len(),
            train_captions: split.captions(Part::Train),
            heldout_captions: split.captions(Part::Heldout),
        };
        let mut fingerprint_settings = serde_json::to_value(&s)?;
        if let Some(o) = fingerprint_settings.as_object_mut() {
            o.remove("save_every");
        }
        let fingerprint = json!({
            "settings": fingerprint_settings, "data_sha256": data_sha, "world": world.kind().name(),
            "world_config": world.config_json(), "model_config": cfg,
            "init_sha256": init.as_ref().map(|(_, sha)| sha.clone()),
        });
        std::fs::create_dir_all(&self.out).with_context(|| format!("cannot create `{}`", self.out.display()))?;
        let _lock = super::DirLock::acquire(&self.out)?;
        let resume = self.check_out(&fingerprint)?;
        let record = |status: &str, results: serde_json::Value| {
            json!({
                "schema": 1, "kind": REWARD_KIND, "status": status, "command": self.command,
                "data": self.data.display().to_string(), "base": self.base.path.display().to_string(),
                "fingerprint": fingerprint, "split": s.split(), "counts": counts, "results": results,
            })
        };
        write_json(&self.out.join("run.json"), &record("training", json!(null)))?;

        let model = match init {
            Some((model, _)) => model,
            None => Dit::new(&cfg, &dev, s.seed)?,
        };
        let opt_cfg =
            AdamWConfig { warmup_steps: s.warmup, weight_decay: s.weight_decay, ..AdamWConfig::with_lr(s.lr) };
        let opt = AdamW::new(&model, opt_cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
        rng.set_stream(1);
        let mut now = Resumable { model, opt, rng, step: 0, losses: Vec::new() };
        let resumed_at = if resume {
            self.restore_state(&mut now, &fingerprint)?;
            Some(now.step)
        } else {
            None
        };
        let train_json = json!({ "settings": s, "data": self.data.display().to_string(), "data_sha256": data_sha, "split": s.split(), "counts": counts });
        let tokens: Vec<Vec<usize>> = train.iter().map(|p| world.vocab().encode(&p.caption)).collect();
        let mut metrics = JsonlWriter::append_upto_step(&self.out.join("metrics.jsonl"), now.step)?;
        let mut progress = std::mem::replace(&mut self.progress, super::Progress::hidden());
        progress.set_range(now.step as u64, s.steps as u64);
        let start = Instant::now();
        let mut val_acc = None;
        while now.step < s.steps {
            let halt = self.halt_after.is_some_and(|h| now.step >= h);
            if super::stop::requested() || halt {
                progress.finish();
                self.save_state(&now, &fingerprint)?;
                if halt {
                    return Ok(RewardTrained {
                        checkpoint: self.out.join("model.safetensors"),
                        n_params: now.model.n_params(),
                        counts,
                        step: now.step,
                        resumed_at,
                        halted: true,
                        final_loss: tail_mean(&now.losses),
                        val_acc,
                        wall_s: start.elapsed().as_secs_f64(),
                    });
                }
                let message = format!(
                    "interrupted: reward training stopped at update {} of {}; its state is saved in `{}`. The same \
                     command continues it.",
                    now.step,
                    s.steps,
                    self.out.join("state").display()
                );
                return Err(super::Interrupted { message }.into());
            }
            now.opt.cfg.lr = s.lr_at(now.step);
            let lr = now.opt.current_lr();
            let picks: Vec<usize> = (0..s.batch).map(|_| now.rng.gen_range(0..train.len())).collect();
            let train = &train;
            let images: Vec<&Image> =
                [0, 1].iter().flat_map(|&k| picks.iter().map(move |&i| &train[i].images[k])).collect();
            let toks: Vec<Vec<usize>> = [0, 1].iter().flat_map(|_| picks.iter().map(|&i| tokens[i].clone())).collect();
            let p0: Vec<f64> = picks.iter().map(|&i| train[i].p0).collect();
            let (st, mut grads) = bt_gradients(&now.model, crate::data::image::stack(&images), &toks, &p0)?;
            if !st.loss.is_finite() {
                bail!("the loss became {} at update {}; try a lower --lr", st.loss, now.step + 1);
            }
            let grad_norm = grads.clip_global_norm(s.max_grad_norm);
            now.opt.update(&mut now.model, &grads);
            now.losses.push(st.loss);
            now.step += 1;
            let mut line = json!({
                "step": now.step, "loss": st.loss, "acc": st.acc, "grad_norm": grad_norm,
                "lr": super::files::f32_value(lr), "elapsed_s": start.elapsed().as_secs_f64(),
            });
            let due = (s.eval_every > 0 && now.step % s.eval_every == 0) || now.step == s.steps;
            if due && !split.val.is_empty() {
                let (loss, acc) = measure(&now.model, world, &split.val)?;
                line["val_loss"] = json!(loss);
                line["val_acc"] = json!(acc);
                val_acc = Some(acc);
            }
            metrics.write(&line)?;
            progress.step(st.loss);
            if s.save_every > 0 && now.step % s.save_every == 0 && now.step < s.steps {
                save_checkpoint(&self.out.join("model.safetensors"), &now.model, &self.meta(&train_json, now.step))?;
                self.save_state(&now, &fingerprint)?;
            }
        }
        progress.finish();
        let wall_s = start.elapsed().as_secs_f64();
        let checkpoint = self.out.join("model.safetensors");
        save_checkpoint(&checkpoint, &now.model, &self.meta(&train_json, now.step))?;
        let final_loss = tail_mean(&now.losses);
        let results = json!({
            "final_loss": final_loss, "final_loss_note": "mean Bradley-Terry loss over the last 50 updates",
            "val_acc": val_acc, "n_params": now.model.n_params(), "wall_time_s": wall_s, "steps": now.step,
        });
        write_json(&self.out.join("run.json"), &record("done", results))?;
        // The training is complete: nothing is left to resume.
        let _ = std::fs::remove_dir_all(self.out.join("state"));
        Ok(RewardTrained {
            checkpoint,
            n_params: now.model.n_params(),
            counts,
            step: now.step,
            resumed_at,
            halted: false,
            final_loss,
            val_acc,
            wall_s,
        })
    }
}

fn tail_mean(xs: &[f64]) -> f64 {
    let tail = xs.len().min(50);
    xs[xs.len() - tail..].iter().sum::<f64>() / tail.max(1) as f64
}
