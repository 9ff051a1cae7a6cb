//! The whole training state on disk — policy, AdamW moments, EMAs, checkpoint pool, step and the RNG position —
//! so `seppoc run --resume` continues bitwise as if never stopped. Written to `state.tmp/` and swapped in by
//! renames, so a crash at any moment leaves a complete `state/` (or `state.old/`) behind.

use super::Trainer;
use crate::device::Backend;
use crate::model::{load_checkpoint, load_tensors, save_checkpoint, save_tensors, CheckpointMeta, Dit, DitConfig, Ema};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Why a state could not be saved or restored (the message names the file).
#[derive(Debug)]
pub struct StateError(pub String);

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StateError {}

fn err(path: &Path, what: impl std::fmt::Display) -> StateError {
    StateError(format!("`{}`: {what}", path.display()))
}

fn meta(step: usize) -> CheckpointMeta {
    // The state's weight files are read back only by `restore_state`; world and schedule live in the run.
    let none = CheckpointMeta::new("", String::new(), crate::model::ScheduleSpec::default_linear());
    CheckpointMeta { step: step as u64, ..none }
}

impl<D: Backend> Trainer<D> {
    /// Saves the complete state into `dir/state/` (atomically, see the module docs); on failure (a full disk)
    /// nothing is left of the attempt and the previous state stays.
    pub fn save_state(&self, dir: &Path, tag: &str) -> Result<(), StateError> {
        write_state_dir(dir, |tmp| self.write_state(tmp, tag))
    }

    fn write_state(&self, tmp: &Path, tag: &str) -> Result<(), StateError> {
        let save = |name: &str, model: &Dit<D>| {
            let path = tmp.join(name);
            save_checkpoint(&path, model, &meta(self.step)).map_err(|e| StateError(e.to_string()))
        };
        save("policy.safetensors", &self.policy)?;
        // AdamW's moments: plain tensors named like the policy's parameters, in the checkpoint format.
        let (adam_step, m, v) = self.opt.state();
        let save_moments = |name: &str, values: &[Vec<f32>]| {
            save_tensors(&tmp.join(name), self.policy.config(), values, &meta(self.step))
                .map_err(|e| StateError(e.to_string()))
        };
        save_moments("adam_m.safetensors", &m)?;
        save_moments("adam_v.safetensors", &v)?;
        if let Some(ema) = &self.ema {
            save("ema.safetensors", ema.model())?;
        }
        for (r, ema) in self.ref_emas.iter().enumerate() {
            if let Some(ema) = ema {
                save(&format!("ref_ema_{r}.safetensors"), ema.model())?;
            }
        }
        for (k, entry) in self.pool.entries.iter().enumerate() {
            save(&format!("pool_{k}.safetensors"), entry)?;
        }
        let mut state = json!({ "tag": tag, "step": self.step, "adam_step": adam_step, "pool_steps": self.pool.steps });
        if let (Some(state), Value::Object(rng)) = (state.as_object_mut(), rng_json(&self.rng)) {
            state.extend(rng);
        }
        let path = tmp.join("state.json");
        std::fs::write(&path, state.to_string()).map_err(|e| err(&path, e))
    }

    /// Restores a state saved by [`Trainer::save_state`] into a trainer built with the same objective, data,
    /// base model and settings; returns the saved tag.
    pub fn restore_state(&mut self, dir: &Path) -> Result<String, StateError> {
        let src = state_source(dir);
        let path = src.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| err(&path, format!("no saved training state ({e})")))?;
        let state: Value = serde_json::from_str(&text).map_err(|e| err(&path, e))?;
        let get_u = |k: &str| state[k].as_u64().ok_or_else(|| err(&path, format!("missing `{k}`")));
        let dev = self.policy.device().clone();
        let same_config = |p: &Path, cfg: &DitConfig| match cfg == self.policy.config() {
            true => Ok(()),
            false => Err(err(p, "model configuration differs from the run's base model")),
        };
        let load = |name: &str| -> Result<Dit<D>, StateError> {
            let p = src.join(name);
            let (model, _) = load_checkpoint(&p, &dev).map_err(|e| StateError(e.to_string()))?;
            same_config(&p, model.config())?;
            Ok(model)
        };
        let load_moments = |name: &str| -> Result<Vec<Vec<f32>>, StateError> {
            let p = src.join(name);
            let (cfg, values, _) = load_tensors(&p).map_err(|e| StateError(e.to_string()))?;
            same_config(&p, &cfg)?;
            Ok(values)
        };
        let policy = load("policy.safetensors")?;
        let m = load_moments("adam_m.safetensors")?;
        let v = load_moments("adam_v.safetensors")?;
        self.opt.restore(get_u("adam_step")? as usize, m, v).map_err(|e| err(&src, e))?;
        if self.ema.is_some() {
            self.ema = Some(Ema::new(&load("ema.safetensors")?));
        }
        for r in 0..self.ref_emas.len() {
            if self.ref_emas[r].is_some() {
                self.ref_emas[r] = Some(Ema::new(&load(&format!("ref_ema_{r}.safetensors"))?));
            }
        }
        let steps: Vec<usize> = state["pool_steps"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as usize).collect())
            .unwrap_or_default();
        let mut entries = Vec::new();
        for k in 0..steps.len() {
            entries.push(load(&format!("pool_{k}.safetensors"))?);
        }
        if entries.is_empty() {
            return Err(err(&path, "the checkpoint pool is empty"));
        }
        self.pool.entries = entries;
        self.pool.steps = steps;
        self.rng = rng_from_json(&state, &path)?;
        self.policy = policy;
        self.step = get_u("step")? as usize;
        Ok(state["tag"].as_str().unwrap_or("").to_string())
    }
}

/// Writes a state into `dir/state.tmp/` with `write`, then swaps it in for `dir/state/` by renames (the previous
/// state is `dir/state.old/` for that moment), so a crash at any point leaves a complete state behind; on failure
/// (a full disk) nothing is left of the attempt and the previous state stays.
pub(crate) fn write_state_dir(
    dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let tmp = dir.join("state.tmp");
    let swap = || {
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| err(&tmp, e))?;
        write(&tmp)?;
        let (live, old) = (dir.join("state"), dir.join("state.old"));
        let _ = std::fs::remove_dir_all(&old);
        if live.exists() {
            std::fs::rename(&live, &old).map_err(|e| err(&live, e))?;
        }
        std::fs::rename(&tmp, &live).map_err(|e| err(&tmp, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    };
    let result = swap();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The folder holding the last complete state written by [`write_state_dir`]: `dir/state/`, or `dir/state.old/`
/// when a crash came between the two renames.
pub(crate) fn state_source(dir: &Path) -> PathBuf {
    let live = dir.join("state");
    if live.join("state.json").exists() {
        live
    } else {
        dir.join("state.old")
    }
}

/// A random stream's exact position: `rng_seed` (hex), `rng_stream`, `rng_word_pos` (a decimal string).
pub(crate) fn rng_json(rng: &ChaCha8Rng) -> Value {
    json!({
        "rng_seed": rng.get_seed().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "rng_stream": rng.get_stream(),
        "rng_word_pos": rng.get_word_pos().to_string(),
    })
}

/// The stream saved by [`rng_json`] in `state` (read from `path`, named in errors).
pub(crate) fn rng_from_json(state: &Value, path: &Path) -> Result<ChaCha8Rng, StateError> {
    let seed_hex = state["rng_seed"].as_str().unwrap_or("");
    let mut seed = [0u8; 32];
    for (k, byte) in seed.iter_mut().enumerate() {
        *byte = seed_hex
            .get(2 * k..2 * k + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| err(path, "bad `rng_seed`"))?;
    }
    let word_pos: u128 =
        state["rng_word_pos"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| err(path, "bad `rng_word_pos`"))?;
    let stream = state["rng_stream"].as_u64().ok_or_else(|| err(path, "missing `rng_stream`"))?;
    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(word_pos);
    Ok(rng)
}
