//! Opening a trained reward model for scoring (`--reward PATH`, `seppoc reward eval`).

use super::{RewardSettings, REWARD_KIND};
use crate::model::{load_checkpoint, Dit};
use crate::world::{Testbed, WorldKind};
use anyhow::{anyhow, bail};
use std::path::{Path, PathBuf};

/// A reward model opened for scoring: the scorer, its world, and its training record.
pub struct OpenedReward {
    /// The file.
    pub path: PathBuf,
    /// The scorer on the CPU.
    pub model: Dit<crate::device::CpuDevice>,
    /// The world it scores for.
    pub world: Box<dyn Testbed>,
    /// The training settings stored in the checkpoint.
    pub settings: RewardSettings,
}

/// Opens a reward checkpoint (a file, or a training folder holding `model.safetensors`); a denoiser or any
/// other file is refused, naming it.
pub fn open_reward(path: &Path) -> anyhow::Result<OpenedReward> {
    let path = if path.is_dir() { path.join("model.safetensors") } else { path.to_path_buf() };
    if !path.exists() {
        bail!("reward model `{}` does not exist (train one with `seppoc reward train`)", path.display());
    }
    let (model, meta) = load_checkpoint(&path, &crate::device::cpu())?;
    if meta.kind.as_deref() != Some(REWARD_KIND) {
        bail!(
            "`{}` is not a reward model (its checkpoint kind is `{}`; `seppoc reward train` writes one)",
            path.display(),
            meta.kind.as_deref().unwrap_or("none")
        );
    }
    let file = || format!("reward model `{}`", path.display());
    let kind = WorldKind::from_name(&meta.world)
        .ok_or_else(|| anyhow!("{}: unknown world `{}` in metadata `world`", file(), meta.world))?;
    let world = kind.from_config(&meta.world_config).map_err(|e| anyhow!("{}: {e:#}", file()))?;
    let settings: RewardSettings = meta
        .train
        .as_ref()
        .and_then(|t| serde_json::from_value(t["settings"].clone()).ok())
        .ok_or_else(|| anyhow!("{}: metadata `train` holds no reward training settings", file()))?;
    Ok(OpenedReward { path, model, world, settings })
}
