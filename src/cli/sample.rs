//! `seppoc sample`: draws images (or clips, from a video model) for one prompt, writes them (a PNG grid; clips
//! as an animated GIF or a PNG frame strip) and prints the judge's verdict on each.

use super::engine::{DeviceArgs, SamplerArgs};
use crate::data::Image;
use crate::device::Backend;
use crate::device::{with_device, OnDevice};
use crate::engine::{open, Opened};
use crate::eval::{Captions, GridConfig, GridLabels};
use crate::model::ModelError;
use crate::sampler::{sample, SamplerConfig};
use crate::world::WorldKind;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint (default: the shipped base model of `--world`, `base/model.safetensors` or
    /// `base_video_flow/model.safetensors` in the assets folder: `SEPPOC_ASSETS`, else the `assets/` of the source tree
    /// seppoc was built from).
    #[arg(long)]
    model: Option<String>,
    /// The model's world (default: whatever the checkpoint says; picks the default model).
    #[arg(long, value_enum)]
    world: Option<WorldKind>,
    /// The prompt, in the world's words, e.g. "a red circle on the left" or "a red circle moving right".
    #[arg(long)]
    prompt: String,
    /// Number of images.
    #[arg(short = 'n', long = "n-samples", default_value_t = 8)]
    n: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file: a PNG grid; for clips an animated GIF when it ends in `.gif`, else a PNG frame strip (one
    /// row per clip). Default `samples.png`, or `samples.gif` for clips.
    #[arg(long)]
    out: Option<String>,
    /// Nearest-neighbour upscaling of each image in the grid.
    #[arg(long, default_value_t = 4)]
    scale: u32,
}

/// Draws the samples on the chosen device.
struct SampleJob<'a> {
    opened: &'a Opened,
    cfg: &'a SamplerConfig,
    tokens: &'a [Vec<usize>],
    seed: u64,
}

impl OnDevice for SampleJob<'_> {
    type Output = Result<Vec<Vec<f32>>, ModelError>;

    fn run<D: Backend>(self, dev: D) -> Self::Output {
        let model = self.opened.model.to_device(&dev)?;
        sample(&model, &self.opened.schedule, self.cfg, self.tokens, self.seed)
    }
}

/// Runs `seppoc sample`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = args.sampler.config()?;
    if args.n == 0 || args.n > 1024 {
        bail!("-n must be in 1..=1024, found {}", args.n);
    }
    if args.scale == 0 || args.scale > 64 {
        bail!("--scale must be in 1..=64, found {}", args.scale);
    }
    let path = super::engine::model_or_shipped(args.model.as_deref(), args.world)?;
    let opened = open(&path, args.world)?;
    let world = opened.world.as_ref();
    let prompt = world.parse_prompt(&args.prompt)?;
    let default_out = if world.animated() { "samples.gif" } else { "samples.png" };
    let out = PathBuf::from(args.out.as_deref().unwrap_or(default_out));
    crate::engine::ensure_writable(out.parent().unwrap_or(std::path::Path::new("")))?; // before sampling
    let tokens = vec![world.vocab().encode(&prompt); args.n];
    let job = SampleJob { opened: &opened, cfg: &cfg, tokens: &tokens, seed: args.seed };
    let drawn = with_device(args.device.kind(), job)?.with_context(|| format!("sampling from `{}`", path.display()))?;
    let mc = opened.model.config();
    let (c, s) = (mc.sample_channels(), mc.image_size);
    let samples: Vec<Image> = drawn.into_iter().map(|data| Image { channels: c, height: s, width: s, data }).collect();

    match world.frames() {
        1 => outln!("prompt: {prompt}"),
        f => outln!("prompt: {prompt}  ({f} frames per {})", world.sample_noun()),
    }
    let judged = world.judge(&vec![prompt.clone(); args.n], &samples)?;
    for (i, v) in judged.verdicts.iter().enumerate() {
        outln!("sample {i:>3}: {}", v.line);
    }
    outln!("judge score {:.4} (mean over {} samples)", judged.summary.mean_score, args.n);
    let grid = GridConfig { cols: args.n.min(8), spacing: 2, scale: args.scale, background: [128, 128, 128] };
    let rows = args.n.div_ceil(grid.cols);
    let labels = GridLabels {
        rows: vec![crate::engine::model_label(&path); rows],
        prompts: vec![prompt.clone(); args.n],
        captions: Captions::LastRow,
    };
    world.write_samples(&samples, &grid, &labels, &out)?;
    outln!("wrote `{}`", out.display());
    Ok(ExitCode::SUCCESS)
}
