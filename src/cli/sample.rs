//! `seppoc sample`: draws images (or clips, from a video model) for one prompt, writes them as an upscaled PNG
//! grid (clips: an animated GIF, or a PNG frame strip) and prints the judge's score of each.

use super::engine::{parse_prompt, parse_video_prompt, DeviceArgs, SamplerArgs};
use super::load::{load_any, model_path_for, Loaded, WorldFlag};
use crate::data::Image;
use crate::device::{with_device, Backend, CpuDevice, DeviceKind, OnDevice};
use crate::eval::{clip_strip, judge, judge_video, save_clip_gif, save_grid_with, GridConfig};
use crate::model::{Dit, ModelError, NoiseSchedule};
use crate::sampler::{sample, SamplerConfig};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `seppoc sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint (default: the shipped base model of `--world`, `assets/base/model.safetensors` or
    /// `assets/base_video/model.safetensors`).
    #[arg(long)]
    model: Option<String>,
    /// The model's world (default: whatever the checkpoint says; picks the default model).
    #[arg(long, value_enum)]
    world: Option<WorldFlag>,
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
    model: &'a Dit<CpuDevice>,
    schedule: &'a NoiseSchedule,
    cfg: &'a SamplerConfig,
    tokens: &'a [Vec<usize>],
    seed: u64,
}

impl OnDevice for SampleJob<'_> {
    type Output = Result<Vec<Vec<f32>>, ModelError>;

    fn run<D: Backend>(self, dev: D) -> Self::Output {
        let model = self.model.to_device(&dev)?;
        sample(&model, self.schedule, self.cfg, self.tokens, self.seed)
    }
}

/// Runs `seppoc sample`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sampler_cfg = args.sampler.config()?;
    if args.n == 0 || args.n > 1024 {
        bail!("-n must be in 1..=1024, found {}", args.n);
    }
    if args.scale == 0 || args.scale > 64 {
        bail!("--scale must be in 1..=64, found {}", args.scale);
    }
    let path = model_path_for(args.model.as_deref(), args.world.unwrap_or(WorldFlag::Image));
    let draw_args = DrawArgs { cfg: &sampler_cfg, seed: args.seed, device: args.device.kind(), path: &path };
    let grid = GridConfig { cols: args.n.min(8), spacing: 2, scale: args.scale, background: [128, 128, 128] };
    match load_any(&path, args.world)? {
        Loaded::Image(loaded) => {
            let prompt = parse_prompt(&args.prompt)?;
            let tokens = vec![loaded.world.vocab.encode(&prompt.text()); args.n];
            let images = draw(&loaded.model, &loaded.schedule, &tokens, &draw_args)?;
            println!("prompt: {}", prompt.text());
            let judged: Vec<_> = images.iter().map(|img| judge(img, &prompt)).collect();
            for (i, j) in judged.iter().enumerate() {
                println!(
                    "sample {i:>3}: score {:.3}  faithfulness {:.3}  quality {:.3}  objects {}",
                    j.score, j.faithfulness, j.quality, j.n_detected
                );
            }
            print_mean(judged.iter().map(|j| j.score));
            let out = PathBuf::from(args.out.as_deref().unwrap_or("samples.png"));
            save_grid_with(&images, &grid, &out).with_context(|| format!("cannot write `{}`", out.display()))?;
            println!("wrote `{}`", out.display());
        }
        Loaded::Video(loaded) => {
            let prompt = parse_video_prompt(&args.prompt)?;
            let tokens = vec![loaded.world.vocab.encode(&prompt.text()); args.n];
            let clips = draw(&loaded.model, &loaded.schedule, &tokens, &draw_args)?;
            println!("prompt: {}  ({} frames per clip)", prompt.text(), loaded.model.config().frames);
            let judged: Vec<_> = clips.iter().map(|clip| judge_video(clip, &prompt)).collect();
            for (i, j) in judged.iter().enumerate() {
                println!(
                    "sample {i:>3}: score {:.3}  faithfulness {:.3}  motion {}  smoothness {:.3}  consistency {:.3}  \
                     quality {:.3}",
                    j.score,
                    j.faithfulness,
                    j.motion.map_or("none", |m| m.phrase()),
                    j.smoothness,
                    j.consistency,
                    j.quality
                );
            }
            print_mean(judged.iter().map(|j| j.score));
            let out = PathBuf::from(args.out.as_deref().unwrap_or("samples.gif"));
            write_clips(&clips, &grid, &out)?;
            println!("wrote `{}`", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The sampling settings of either world.
struct DrawArgs<'a> {
    cfg: &'a SamplerConfig,
    seed: u64,
    device: DeviceKind,
    path: &'a Path,
}

/// Draws one sample per caption on `--device` and wraps each as an image of the model's `frames · channels`
/// channels.
fn draw(
    model: &Dit<CpuDevice>,
    schedule: &NoiseSchedule,
    tokens: &[Vec<usize>],
    a: &DrawArgs<'_>,
) -> anyhow::Result<Vec<Image>> {
    let job = SampleJob { model, schedule, cfg: a.cfg, tokens, seed: a.seed };
    let drawn = with_device(a.device, job)?.with_context(|| format!("sampling from `{}`", a.path.display()))?;
    let (c, s) = (model.config().sample_channels(), model.config().image_size);
    Ok(drawn.into_iter().map(|data| Image { channels: c, height: s, width: s, data }).collect())
}

/// Prints the mean of the judge's scores.
fn print_mean(scores: impl ExactSizeIterator<Item = f32>) {
    let n = scores.len();
    println!("mean score {:.4} over {n} samples", scores.sum::<f32>() / n.max(1) as f32);
}

/// Writes clips as an animated GIF (a `.gif` path) or a PNG frame strip (any other path).
pub(crate) fn write_clips(clips: &[Image], grid: &GridConfig, out: &Path) -> anyhow::Result<()> {
    let gif = out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gif"));
    let written = if gif {
        save_clip_gif(clips, grid, 250, out)
    } else {
        clip_strip(clips, grid).save_with_format(out, image::ImageFormat::Png)
    };
    written.with_context(|| format!("cannot write `{}`", out.display()))
}
