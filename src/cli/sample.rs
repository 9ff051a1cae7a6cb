//! `seppoc sample`: draws images for one prompt, writes them as an upscaled PNG grid and prints the judge's
//! score of each.

use super::engine::{load_model, model_path, parse_prompt, DeviceArgs, LoadedModel, SamplerArgs};
use crate::data::Image;
use crate::eval::{judge, save_grid_with, GridConfig};
use crate::kernels::KernelDevice;
use crate::model::{with_device, ModelError, OnDevice};
use crate::sampler::{sample, SamplerConfig};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint (default: the shipped base model, `assets/base/model.safetensors`).
    #[arg(long)]
    model: Option<String>,
    /// The prompt, in the world's words, e.g. "a red circle on the left".
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
    /// Output PNG grid.
    #[arg(long, default_value = "samples.png")]
    out: String,
    /// Nearest-neighbour upscaling of each image in the grid.
    #[arg(long, default_value_t = 4)]
    scale: u32,
}

/// Draws the images on the chosen device.
struct SampleJob<'a> {
    loaded: &'a LoadedModel,
    cfg: &'a SamplerConfig,
    tokens: &'a [Vec<usize>],
    seed: u64,
}

impl OnDevice for SampleJob<'_> {
    type Output = Result<Vec<Vec<f32>>, ModelError>;

    fn run<D: KernelDevice>(self, dev: D) -> Self::Output {
        let model = self.loaded.model.to_device(&dev)?;
        sample(&model, &self.loaded.schedule, self.cfg, self.tokens, self.seed)
    }
}

/// Runs `seppoc sample`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let prompt = parse_prompt(&args.prompt)?;
    let sampler_cfg = args.sampler.config()?;
    if args.n == 0 || args.n > 1024 {
        bail!("-n must be in 1..=1024, found {}", args.n);
    }
    if args.scale == 0 || args.scale > 64 {
        bail!("--scale must be in 1..=64, found {}", args.scale);
    }
    let path = model_path(args.model.as_deref());
    let loaded = load_model(&path)?;
    let tokens = vec![loaded.world.vocab.encode(&prompt.text()); args.n];
    let job = SampleJob { loaded: &loaded, cfg: &sampler_cfg, tokens: &tokens, seed: args.seed };
    let drawn = with_device(args.device.kind(), job)?.with_context(|| format!("sampling from `{}`", path.display()))?;
    let (c, s) = (loaded.model.config().channels, loaded.model.config().image_size);
    let images: Vec<Image> = drawn.into_iter().map(|data| Image { channels: c, height: s, width: s, data }).collect();

    println!("prompt: {}", prompt.text());
    let mut total = 0.0;
    for (i, img) in images.iter().enumerate() {
        let j = judge(img, &prompt);
        total += j.score;
        println!(
            "sample {i:>3}: score {:.3}  faithfulness {:.3}  quality {:.3}  objects {}",
            j.score, j.faithfulness, j.quality, j.n_detected
        );
    }
    println!("mean score {:.4} over {} samples", total / images.len() as f32, images.len());

    let out = PathBuf::from(&args.out);
    let grid = GridConfig { cols: args.n.min(8), spacing: 2, scale: args.scale, background: [128, 128, 128] };
    save_grid_with(&images, &grid, &out).with_context(|| format!("cannot write `{}`", out.display()))?;
    println!("wrote `{}`", out.display());
    Ok(ExitCode::SUCCESS)
}
