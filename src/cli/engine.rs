//! Shared pieces of the engine commands (`pretrain`, `sample`, `eval`): the default model path, loading a
//! checkpoint with its world and schedule, the sampler and device flags, a progress bar and a JSONL metrics writer.

use crate::data::{Prompt, PromptError, World, WorldConfig};
use crate::model::{cpu, load_checkpoint, CheckpointMeta, CpuDevice, DeviceKind, Dit, NoiseSchedule, ScheduleKind};
use crate::sampler::{SamplerConfig, SamplerKind};
use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Where the shipped base model lives, relative to the repository root.
pub(crate) const DEFAULT_MODEL: &str = "assets/base/model.safetensors";

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

/// Resolves `--model`: the given path, or the shipped base model. A relative default that does not exist from
/// the working directory falls back to the copy in the source tree this binary was built from.
pub(crate) fn model_path(given: Option<&str>) -> PathBuf {
    if let Some(p) = given {
        return PathBuf::from(p);
    }
    let rel = PathBuf::from(DEFAULT_MODEL);
    if rel.exists() {
        return rel;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL);
    if built.exists() {
        built
    } else {
        rel
    }
}

/// Loads a checkpoint with its world config and schedule; every error names the file.
pub(crate) fn load_model(path: &Path) -> anyhow::Result<LoadedModel> {
    if !path.exists() {
        bail!("model file `{}` does not exist (train one with `seppoc pretrain`, or pass --model)", path.display());
    }
    let (model, meta) = load_checkpoint(path, &cpu())?;
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
    let spec = match meta.extra.get(SCHEDULE_KEY) {
        Some(text) => serde_json::from_str::<ScheduleSpec>(text)
            .with_context(|| format!("checkpoint `{}`: metadata `{SCHEDULE_KEY}` does not parse", path.display()))?,
        None => ScheduleSpec::default_linear(),
    };
    Ok(LoadedModel { model, meta, world, schedule: spec.build() })
}

/// `--device`, shared by `run`, `sample` and `eval`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct DeviceArgs {
    /// Where the model runs: `cpu`, or `cuda` (GPU 0; needs a binary built with `--features cuda`).
    #[arg(long, value_enum, default_value_t = DeviceFlag::Cpu)]
    pub device: DeviceFlag,
}

/// The values of `--device`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceFlag {
    /// dfdx's CPU backend.
    Cpu,
    /// dfdx's CUDA backend on GPU 0.
    Cuda,
}

impl DeviceArgs {
    /// The device kind, for [`crate::model::with_device`].
    pub fn kind(&self) -> DeviceKind {
        match self.device {
            DeviceFlag::Cpu => DeviceKind::Cpu,
            DeviceFlag::Cuda => DeviceKind::Cuda,
        }
    }
}

/// Which reverse process `--sampler` selects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SamplerFlag {
    /// DDIM (deterministic at `--eta 0`).
    Ddim,
    /// DDPM ancestral sampling.
    Ddpm,
}

/// The sampler flags shared by `sample` and `eval`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SamplerArgs {
    /// Number of denoising steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Classifier-free guidance weight (1 = no guidance).
    #[arg(long = "cfg", default_value_t = 5.0)]
    pub cfg_scale: f32,
    /// Reverse process.
    #[arg(long, value_enum, default_value_t = SamplerFlag::Ddim)]
    pub sampler: SamplerFlag,
    /// DDIM noise level (0 = deterministic; ignored by DDPM).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f32,
}

impl SamplerArgs {
    /// Validates the flags and converts them to a [`SamplerConfig`].
    pub fn config(&self) -> anyhow::Result<SamplerConfig> {
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        if !self.cfg_scale.is_finite() {
            bail!("--cfg must be a finite number, found {}", self.cfg_scale);
        }
        if !(self.eta.is_finite() && self.eta >= 0.0) {
            bail!("--eta must be a finite number ≥ 0, found {}", self.eta);
        }
        let kind = match self.sampler {
            SamplerFlag::Ddim => SamplerKind::Ddim,
            SamplerFlag::Ddpm => SamplerKind::Ddpm,
        };
        Ok(SamplerConfig { kind, steps: self.steps, cfg_scale: self.cfg_scale, eta: self.eta })
    }
}

/// Parses a user prompt; an error quotes the prompt and lists the words the world knows.
pub(crate) fn parse_prompt(text: &str) -> anyhow::Result<Prompt> {
    Prompt::parse(text).map_err(|e: PromptError| anyhow!("prompt `{text}`: {e}\n{}", vocabulary_help()))
}

/// The prompt grammar and vocabulary, for error messages.
fn vocabulary_help() -> String {
    use crate::data::{Colour, Position, Shape};
    let colours: Vec<&str> = Colour::ALL.iter().map(|c| c.word()).collect();
    let shapes: Vec<&str> = Shape::ALL.iter().map(|s| s.word()).collect();
    let positions: Vec<&str> = Position::ALL.iter().map(|p| p.phrase()).collect();
    format!(
        "  = note: a prompt is `a COLOUR SHAPE [POSITION]`, optionally `and` a second object\n  \
         = note: colours: {}; shapes: {}; positions: {}\n  \
         = help: e.g. `a red circle on the left and a blue square on the right`",
        colours.join(", "),
        shapes.join(", "),
        positions.join(", ")
    )
}

/// A progress bar on stderr, hidden when stderr is not a terminal (tests, pipes, `nohup`).
pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

/// Appends one JSON object per line to a file, flushing each line so a running job can be followed.
pub(crate) struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
}

impl JsonlWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
        Ok(JsonlWriter { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    /// Opens an existing file keeping only its first `keep` lines (a resumed run drops the lines written after
    /// its last saved state), then appends; creates the file when `keep` is 0.
    pub fn append(path: &Path, keep: usize) -> anyhow::Result<Self> {
        if keep == 0 {
            return Self::create(path);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let kept: Vec<&str> = text.lines().take(keep).collect();
        if kept.len() < keep {
            bail!("`{}` has {} lines but the saved state is at step {keep}", path.display(), kept.len());
        }
        let mut out = Self::create(path)?;
        for line in kept {
            writeln!(out.out, "{line}").with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(out)
    }

    /// Opens an existing file keeping only the lines whose `step` is at most `step` (a resumed run drops what
    /// it wrote after its last saved state), then appends; creates the file when `step` is 0 or it does not exist.
    pub fn append_upto_step(path: &Path, step: usize) -> anyhow::Result<Self> {
        if step == 0 || !path.exists() {
            return Self::create(path);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let mut kept = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("`{}` line {}: not valid JSON", path.display(), i + 1))?;
            match v["step"].as_u64() {
                Some(s) if s as usize <= step => kept.push(line),
                Some(_) => {}
                None => bail!("`{}` line {}: no `step`", path.display(), i + 1),
            }
        }
        let mut out = Self::create(path)?;
        for line in kept {
            writeln!(out.out, "{line}").with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(out)
    }

    /// Writes one record as a line.
    pub fn write(&mut self, record: &serde_json::Value) -> anyhow::Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .with_context(|| format!("cannot write `{}`", self.path.display()))
    }
}

/// Writes a JSON value pretty-printed, via a temporary file and a rename so readers never see half a file.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(&tmp, text).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// The command line this process was started with, shell-quoted where needed.
pub(crate) fn command_line() -> String {
    let quote = |a: String| {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
        if plain {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    std::env::args().map(quote).collect::<Vec<_>>().join(" ")
}
