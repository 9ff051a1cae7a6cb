//! Loading a checkpoint for the engine commands: the default model paths, the world a checkpoint belongs to,
//! its world config and noise schedule, each error naming the file.

use crate::data::{VideoWorld, VideoWorldConfig, World, WorldConfig};
use crate::device::{cpu, CpuDevice};
use crate::model::{load_checkpoint, CheckpointMeta, Dit, NoiseSchedule, ScheduleKind};
use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the shipped base model lives, relative to the repository root.
pub(crate) const DEFAULT_MODEL: &str = "assets/base/model.safetensors";

/// Where the shipped base video model lives, relative to the repository root.
pub(crate) const DEFAULT_VIDEO_MODEL: &str = "assets/base_video/model.safetensors";

/// The metadata key naming a checkpoint's world: `video` for clip models; absent (or `image`) for images.
pub(crate) const WORLD_KEY: &str = "world";

/// Which synthetic world a model belongs to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorldFlag {
    /// The shapes world of still images.
    Image,
    /// The video world of short clips in motion.
    Video,
}

impl WorldFlag {
    /// The name stored under [`WORLD_KEY`].
    pub fn name(self) -> &'static str {
        match self {
            WorldFlag::Image => "image",
            WorldFlag::Video => "video",
        }
    }

    /// The world a checkpoint's metadata names; unknown names are an error naming the file.
    pub fn of_checkpoint(path: &Path, meta: &CheckpointMeta) -> anyhow::Result<WorldFlag> {
        match meta.extra.get(WORLD_KEY).map(String::as_str) {
            None | Some("image") => Ok(WorldFlag::Image),
            Some("video") => Ok(WorldFlag::Video),
            Some(other) => bail!("checkpoint `{}`: unknown world `{other}` in metadata `{WORLD_KEY}`", path.display()),
        }
    }
}

/// The metadata key under which `pretrain` stores the noise schedule (JSON of [`ScheduleSpec`]).
pub(crate) const SCHEDULE_KEY: &str = "schedule";

/// The noise schedule a model was trained with, as stored in checkpoint metadata.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub(crate) struct ScheduleSpec {
    /// Beta layout.
    pub kind: ScheduleKind,
    /// Number of training timesteps `T`.
    pub n_steps: usize,
}

impl ScheduleSpec {
    /// Linear betas over 1000 steps, what `pretrain` uses.
    pub fn default_linear() -> Self {
        ScheduleSpec { kind: ScheduleKind::Linear, n_steps: 1000 }
    }

    /// Builds the schedule.
    pub fn build(&self) -> NoiseSchedule {
        NoiseSchedule::new(self.kind, self.n_steps)
    }
}

/// A video model loaded for sampling: the clip network, its run metadata, its video world and its schedule.
pub(crate) struct LoadedVideoModel {
    /// The clip denoiser on the CPU.
    pub model: Dit<CpuDevice>,
    /// The checkpoint's run metadata.
    pub meta: CheckpointMeta,
    /// The video world the model was trained on (from the metadata).
    pub world: VideoWorld,
    /// The noise schedule the model was trained with.
    pub schedule: NoiseSchedule,
}

/// A checkpoint of either world.
pub(crate) enum Loaded {
    /// An image model.
    Image(LoadedModel),
    /// A clip model.
    Video(LoadedVideoModel),
}

impl Loaded {
    /// The denoiser.
    pub fn model(&self) -> &Dit<CpuDevice> {
        match self {
            Loaded::Image(m) => &m.model,
            Loaded::Video(m) => &m.model,
        }
    }

    /// The checkpoint's run metadata.
    pub fn meta(&self) -> &CheckpointMeta {
        match self {
            Loaded::Image(m) => &m.meta,
            Loaded::Video(m) => &m.meta,
        }
    }

    /// The noise schedule the model was trained with.
    pub fn schedule(&self) -> &NoiseSchedule {
        match self {
            Loaded::Image(m) => &m.schedule,
            Loaded::Video(m) => &m.schedule,
        }
    }

    /// The world's tokenizer vocabulary.
    pub fn vocab(&self) -> &crate::data::Vocab {
        match self {
            Loaded::Image(m) => &m.world.vocab,
            Loaded::Video(m) => &m.world.vocab,
        }
    }

    /// The world's synthetic preference set of `n` items (clips for a video model).
    pub fn preference_set(&self, n: usize, rng: &mut impl rand::Rng) -> crate::data::PreferenceSet {
        use crate::data::SyntheticWorld;
        match self {
            Loaded::Image(m) => m.world.preference_set(n, rng),
            Loaded::Video(m) => m.world.preference_set(n, rng),
        }
    }
}

/// A model loaded for sampling: the network, its run metadata, its world and its schedule.
pub(crate) struct LoadedModel {
    /// The denoiser on the CPU.
    pub model: Dit<CpuDevice>,
    /// The checkpoint's run metadata.
    pub meta: CheckpointMeta,
    /// The world the model was trained on (from the metadata).
    pub world: World,
    /// The noise schedule the model was trained with.
    pub schedule: NoiseSchedule,
}

/// Resolves `--model`: the given path, or the shipped base model of `world`. A relative default that does not
/// exist from the working directory falls back to the copy in the source tree this binary was built from.
pub(crate) fn model_path_for(given: Option<&str>, world: WorldFlag) -> PathBuf {
    if let Some(p) = given {
        return PathBuf::from(p);
    }
    let default = match world {
        WorldFlag::Image => DEFAULT_MODEL,
        WorldFlag::Video => DEFAULT_VIDEO_MODEL,
    };
    let rel = PathBuf::from(default);
    if rel.exists() {
        return rel;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(default);
    if built.exists() {
        built
    } else {
        rel
    }
}

/// Loads a checkpoint of either world with its world config and schedule; with `expect`, a checkpoint of the
/// other world is an error. Every error names the file.
pub(crate) fn load_any(path: &Path, expect: Option<WorldFlag>) -> anyhow::Result<Loaded> {
    if !path.exists() {
        bail!("model file `{}` does not exist (train one with `seppoc pretrain`, or pass --model)", path.display());
    }
    let (model, meta) = load_checkpoint(path, &cpu())?;
    let kind = WorldFlag::of_checkpoint(path, &meta)?;
    if let Some(want) = expect.filter(|w| *w != kind) {
        bail!("checkpoint `{}` holds a {} model but --world {} was given", path.display(), kind.name(), want.name());
    }
    let schedule = schedule_of(path, &meta)?;
    if kind == WorldFlag::Video {
        return load_video(path, model, meta, schedule).map(Loaded::Video);
    }
    if model.config().frames != 1 {
        bail!(
            "checkpoint `{}`: an image-world checkpoint holds a {}-frame model",
            path.display(),
            model.config().frames
        );
    }
    let config: WorldConfig = serde_json::from_str(&meta.world_config)
        .with_context(|| format!("checkpoint `{}`: metadata `world_config` is not a world config", path.display()))?;
    let world = World::new(config).map_err(|e| anyhow!("checkpoint `{}`: world config: {e}", path.display()))?;
    if world.config.image_size != model.config().image_size {
        bail!(
            "checkpoint `{}`: world images are {}px but the model expects {}px",
            path.display(),
            world.config.image_size,
            model.config().image_size
        );
    }
    Ok(Loaded::Image(LoadedModel { model, meta, world, schedule }))
}

/// The video half of [`load_any`]: the video world from the metadata, checked against the model's sizes.
fn load_video(
    path: &Path,
    model: Dit<CpuDevice>,
    meta: CheckpointMeta,
    schedule: NoiseSchedule,
) -> anyhow::Result<LoadedVideoModel> {
    let config: VideoWorldConfig = serde_json::from_str(&meta.world_config).with_context(|| {
        format!("checkpoint `{}`: metadata `world_config` is not a video world config", path.display())
    })?;
    let world = VideoWorld::new(config).map_err(|e| anyhow!("checkpoint `{}`: world config: {e}", path.display()))?;
    let (mc, wc) = (model.config(), &world.config);
    if (wc.image_size, wc.frames) != (mc.image_size, mc.frames) {
        bail!(
            "checkpoint `{}`: world clips are {} frames of {}px but the model expects {} frames of {}px",
            path.display(),
            wc.frames,
            wc.image_size,
            mc.frames,
            mc.image_size
        );
    }
    Ok(LoadedVideoModel { model, meta, world, schedule })
}

/// The noise schedule stored in a checkpoint's metadata (linear when absent).
fn schedule_of(path: &Path, meta: &CheckpointMeta) -> anyhow::Result<NoiseSchedule> {
    let spec = match meta.extra.get(SCHEDULE_KEY) {
        Some(text) => serde_json::from_str::<ScheduleSpec>(text)
            .with_context(|| format!("checkpoint `{}`: metadata `{SCHEDULE_KEY}` does not parse", path.display()))?,
        None => ScheduleSpec::default_linear(),
    };
    Ok(spec.build())
}
