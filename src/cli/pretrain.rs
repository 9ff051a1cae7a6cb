//! `seppoc pretrain`: trains the DiT from scratch on a world's noisy "web" distribution (see
//! [`crate::engine::pretrain`]) and writes `model.safetensors`, `metrics.jsonl`,
//! `recipe.json`, `pretrain.json` (its arguments, for `--resume`) and, while unfinished, `state/`.

use super::engine::{command_line, progress, DeviceArgs};
use crate::device::with_device;
use crate::engine::{write_json, PretrainSettings, Pretraining};
use crate::world::{WorldKind, WorldOptions};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc pretrain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output directory (created if missing; default `runs/pretrain-<world>-seed<S>`). The shipped base models
    /// (`assets/base`, `assets/base_video_flow`, ...) are replaced only when named here.
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
    /// Continue the stopped pretraining in DIR bitwise from its saved state (`DIR/state/`, saved every
    /// `--save-every` steps and when stopped), with the settings it was started with (`DIR/pretrain.json`).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<String>,
}

/// Parses a stored `seppoc pretrain` argument list.
#[derive(clap::Parser, Debug)]
#[command(name = "pretrain")]
struct Stored {
    #[command(flatten)]
    args: Args,
}

/// The settings that shape a pretraining run (all but the device, the output folder and `--resume`).
fn settings_key(a: &Args) -> String {
    format!("{:?}", (a.world, a.frames, a.image_size, a.web_degrade, &a.settings))
}

/// `--resume DIR`: the arguments DIR was started with, keeping this command's device; other settings given now
/// must be the stored ones.
fn resumed_args(args: Args, dir: &str) -> anyhow::Result<Args> {
    let path = PathBuf::from(dir).join("pretrain.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("`{dir}` is not a pretraining folder to resume: cannot read `{}`", path.display()))?;
    let stored: Vec<String> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v["args"].clone()).ok())
        .with_context(|| format!("`{}` holds no argument list `args`", path.display()))?;
    let parse = |argv: Vec<String>| {
        <Stored as clap::Parser>::try_parse_from(std::iter::once("pretrain".to_string()).chain(argv)).map(|s| s.args)
    };
    let mut resumed =
        parse(stored).with_context(|| format!("`{}`: the stored arguments no longer parse", path.display()))?;
    let defaults = parse(Vec::new()).context("the default pretraining arguments")?;
    let given = settings_key(&args);
    if given != settings_key(&defaults) && given != settings_key(&resumed) {
        bail!(
            "--resume {dir} continues with the settings stored in `{}`; give no other settings (only --device)",
            path.display()
        );
    }
    resumed.device = args.device;
    resumed.out = Some(dir.to_string());
    resumed.resume = Some(dir.to_string());
    Ok(resumed)
}

/// Runs `seppoc pretrain`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let args = match args.resume.clone() {
        Some(dir) => resumed_args(args, &dir)?,
        None => args,
    };
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
    if args.resume.is_none() {
        // The arguments, so that `--resume` can continue with the same settings.
        let argv: Vec<String> = std::env::args().skip_while(|a| a != "pretrain").skip(1).collect();
        write_json(&out.join("pretrain.json"), &serde_json::json!({ "schema": 1, "args": argv }))?;
    }
    let s = &args.settings;
    let spec = s.schedule_spec();
    errln!(
        "{} a {} {} DiT ({}, {:?} timesteps) for {} steps of {} web examples into `{}`",
        if args.resume.is_some() { "resuming pretraining of" } else { "pretraining" },
        format!("{:?}", s.size).to_lowercase(),
        args.world.name(),
        spec.param.describe(),
        spec.time,
        s.steps,
        s.batch,
        out.display()
    );
    let progress = progress("pretrain");
    let job = Pretraining {
        world: world.as_ref(),
        settings: args.settings.clone(),
        out,
        command: command_line(),
        progress,
        resume: args.resume.is_some(),
    };
    let done = with_device(args.device.kind(), job)??;
    if let Some(step) = done.resumed_at {
        outln!("resumed at step {step}");
    }
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
