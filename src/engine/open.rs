//! Opening a checkpoint with everything it implies: the model, its metadata, its world and its noise schedule.

use super::assets::Assets;
use crate::device::{cpu, CpuDevice};
use crate::model::{load_checkpoint, CheckpointMeta, Dit, NoiseSchedule};
use crate::world::{Testbed, WorldKind};
use anyhow::{anyhow, bail};
use std::path::{Path, PathBuf};

/// A checkpoint opened for sampling, evaluation or training.
pub struct Opened {
    /// The file it was read from.
    pub path: PathBuf,
    /// The denoiser on the CPU (move it with [`Dit::to_device`]).
    pub model: Dit<CpuDevice>,
    /// What the checkpoint records about the run that wrote it.
    pub meta: CheckpointMeta,
    /// The world the model was trained on, rebuilt from the metadata.
    pub world: Box<dyn Testbed>,
    /// The noise schedule the model was trained with.
    pub schedule: NoiseSchedule,
}

/// The file of the shipped base model of `world`, relative to the assets folder ([`Assets`]).
pub fn default_model(world: WorldKind) -> String {
    format!("{}/model.safetensors", world.base_dir())
}

/// Resolves a model path: the given one, or the shipped base model of `world` (default: the image world) in the
/// assets folder ([`Assets::locate`]: `SEPPOC_ASSETS`, else the source tree this binary was built from; never
/// the working directory on its own). A missing assets folder or base model is an error naming it.
pub fn model_path(given: Option<&str>, world: Option<WorldKind>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(PathBuf::from(p)),
        None => Assets::locate()?.file(&default_model(world.unwrap_or_default())),
    }
}

/// Opens a checkpoint of any world; with `expect`, a checkpoint of another world is an error. Every error names
/// the file.
pub fn open(path: &Path, expect: Option<WorldKind>) -> anyhow::Result<Opened> {
    if !path.exists() {
        bail!("model file `{}` does not exist (train one with `seppoc pretrain`, or pass --model)", path.display());
    }
    let (model, meta) = load_checkpoint(path, &cpu())?;
    if meta.world.is_empty() {
        bail!(
            "`{}` is not a seppoc model checkpoint but part of a run's saved training state (`state/`); pass a \
             `model.safetensors` or `checkpoint.safetensors`",
            path.display()
        );
    }
    if meta.kind.as_deref() == Some(crate::model::REWARD_KIND) {
        bail!(
            "`{}` is a reward model (`seppoc reward train`), not a denoiser; score with it through `seppoc reward \
             eval --reward`",
            path.display()
        );
    }
    let file = || format!("checkpoint `{}`", path.display());
    let kind = WorldKind::from_name(&meta.world)
        .ok_or_else(|| anyhow!("{}: unknown world `{}` in metadata `world`", file(), meta.world))?;
    if let Some(want) = expect.filter(|w| *w != kind) {
        bail!("{} holds a {} model but --world {} was given", file(), kind.name(), want.name());
    }
    let world = kind.from_config(&meta.world_config).map_err(|e| anyhow!("{}: {e:#}", file()))?;
    world.check_model(model.config()).map_err(|e| anyhow!("{}: {e}", file()))?;
    let schedule = meta.schedule.build();
    Ok(Opened { path: path.to_path_buf(), model, meta, world, schedule })
}
