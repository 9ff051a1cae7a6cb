//! Shared pieces of the engine commands (`pretrain`, `sample`, `eval`, `run`, `compare`): the sampler and
//! device flags, a progress bar and the command line as recorded in outputs.

use crate::device::DeviceKind;
use crate::engine::stop::shell_quote;
use crate::engine::{EvalSettings, Progress};
use crate::sampler::{SamplerConfig, SamplerKind};
use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// `--device`, shared by `run`, `sample`, `eval`, `pretrain` and `compare`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct DeviceArgs {
    /// Where the model runs: `cpu`, or `cuda` (GPU 0; needs a binary built with `--features cuda`).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

impl DeviceArgs {
    /// The device kind, for [`crate::device::with_device`].
    pub fn kind(&self) -> DeviceKind {
        self.device
    }
}

/// The sampler flags shared by `sample` and `eval`; the defaults are the standard evaluation's
/// ([`EvalSettings::standard`]).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SamplerArgs {
    /// Number of denoising steps.
    #[arg(long, default_value_t = EvalSettings::standard().sampler.steps)]
    pub steps: usize,
    /// Classifier-free guidance weight (1 = no guidance).
    #[arg(long = "cfg", default_value_t = EvalSettings::standard().sampler.cfg_scale)]
    pub cfg_scale: f32,
    /// Reverse process: `ddim` or `ddpm` for ε- and v-prediction models, `euler` or `heun` for rectified flows
    /// (on which `ddim`, the default, runs as `euler`).
    #[arg(long, value_enum, default_value_t = EvalSettings::standard().sampler.kind)]
    pub sampler: SamplerKind,
    /// DDIM noise level (0 = deterministic; ignored by DDPM).
    #[arg(long, default_value_t = EvalSettings::standard().sampler.eta)]
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
        Ok(SamplerConfig { kind: self.sampler, steps: self.steps, cfg_scale: self.cfg_scale, eta: self.eta })
    }
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

/// Progress of a loop: the bar on a terminal; otherwise a plain line on stderr every `SEPPOC_PROGRESS_SECS`
/// seconds (default 10), so CI logs, `nohup` and log files show step, loss, rate and ETA.
pub(crate) fn progress(what: &str) -> Progress {
    if std::io::stderr().is_terminal() {
        return Progress::bar(progress_bar(0, what));
    }
    let secs = std::env::var("SEPPOC_PROGRESS_SECS").ok().and_then(|v| v.parse::<f64>().ok());
    let every = Duration::from_secs_f64(secs.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(10.0));
    Progress::lines(what, every, Box::new(|line| super::errln(format_args!("{line}"))))
}

/// The command line this process was started with, shell-quoted where needed.
pub(crate) fn command_line() -> String {
    std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
}

/// Says once per process, on stderr, which assets folder the shipped files a command loads came from.
pub(crate) fn note_assets() -> anyhow::Result<()> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let assets = crate::engine::Assets::locate()?;
    SAID.call_once(|| errln!("{}", assets.note()));
    Ok(())
}

/// The model a command loads: `--model`, or the shipped base model of `world` from the assets folder, which is
/// then named once on stderr ([`note_assets`]).
pub(crate) fn model_or_shipped(
    given: Option<&str>,
    world: Option<crate::world::WorldKind>,
) -> anyhow::Result<std::path::PathBuf> {
    let path = crate::engine::model_path(given, world)?;
    if given.is_none() {
        note_assets()?;
    }
    Ok(path)
}
