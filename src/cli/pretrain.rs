//! `seppoc pretrain`: trains the DiT from scratch on a world's noisy "web" distribution (see
//! [`crate::engine::pretrain`]) and writes `model.safetensors`, `metrics.jsonl` and `recipe.json`.

use super::engine::{command_line, progress, DeviceArgs};
use crate::device::with_device;
use crate::engine::{PretrainSettings, Pretraining};
use crate::world::{WorldKind, WorldOptions};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc pretrain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory (created if missing; default `runs/pretrain-<world>-seed<S>`). The shipped base models
    /// (`assets/base`, `assets/base_video`) are replaced only when named here.
    #[arg(long)]
    out: Option<String>,
    /// Which world to pretrain on: still images or short clips in motion.
    #[arg(long, value_enum, default_value_t = WorldKind::Image)]
    world: WorldKind,
    /// Frames per clip with `--world video` (2..=16; default 4).
    #[arg(long)]
    frames: Option<usize>,
    /// Image side in pixels (world and model).
    #[arg(long, default_value_t = 16)]
    image_size: usize,
    /// Probability that a web example's image is degraded (noise, blur, colour shift; default: the world's 0.3).
    /// Stored with the world config, so the preference data of later runs is unchanged by it.
    #[arg(long)]
    web_degrade: Option<f64>,
    #[command(flatten)]
    settings: PretrainSettings,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs `seppoc pretrain`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(args.device.kind())?;
    args.settings.validate()?;
    if let Some(p) = args.web_degrade.filter(|p| !(0.0..=1.0).contains(p)) {
        bail!("--web-degrade must be in [0, 1], found {p}");
    }
    let opts = WorldOptions { image_size: Some(args.image_size), frames: args.frames, web_degrade: args.web_degrade };
    let world = args.world.build(&opts)?;
    args.settings.model_config(world.as_ref())?;
    let default_out = format!("runs/pretrain-{}-seed{}", args.world.name(), args.settings.seed);
    let out = PathBuf::from(args.out.as_deref().unwrap_or(&default_out));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let s = &args.settings;
    errln!(
        "pretraining a {} {} DiT for {} steps of {} web examples into `{}`",
        format!("{:?}", s.size).to_lowercase(),
        args.world.name(),
        s.steps,
        s.batch,
        out.display()
    );
    let progress = progress("pretrain");
    let job =
        Pretraining { world: world.as_ref(), settings: args.settings.clone(), out, command: command_line(), progress };
    let done = with_device(args.device.kind(), job)??;
    outln!(
        "wrote `{}` ({} parameters) after {} steps in {:.1} s; final loss {:.5}",
        done.checkpoint.display(),
        done.n_params,
        args.settings.steps,
        done.wall_s,
        done.final_loss
    );
    Ok(ExitCode::SUCCESS)
}
