//! Shared pieces of the engine commands (`pretrain`, `sample`, `eval`, `run`): the sampler and device flags,
//! prompt parsing, a progress bar, a JSONL metrics writer and atomic JSON reports. Loading checkpoints is in
//! [`super::load`].

use crate::data::{Prompt, PromptError, VideoPrompt};
use crate::device::DeviceKind;
use crate::sampler::{SamplerConfig, SamplerKind};
use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

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
    /// The device kind, for [`crate::device::with_device`].
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

/// Parses a user video prompt; an error quotes the prompt and lists the words the video world knows.
pub(crate) fn parse_video_prompt(text: &str) -> anyhow::Result<VideoPrompt> {
    VideoPrompt::parse(text).map_err(|e: PromptError| {
        let motions: Vec<&str> = crate::data::Motion::ALL.iter().map(|m| m.phrase()).collect();
        anyhow!(
            "prompt `{text}`: {e}\n  = note: a video prompt is `a COLOUR SHAPE [MOTION]`\n  \
             = note: motions: {}\n  = help: e.g. `a red circle moving right`",
            motions.join(", ")
        )
    })
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
