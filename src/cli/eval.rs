//! `seppoc eval`: samples one image (or clip) per held-out (or training) prompt, judges each, prints the
//! per-attribute table and writes `report.json` and `grid.png` (clips: a frame strip, plus `grid.gif`).

use super::engine::{command_line, progress_bar, write_json, DeviceArgs, SamplerArgs};
use super::load::{load_any, model_path_for, Loaded, LoadedVideoModel, WorldFlag};
use super::sample::write_clips;
use crate::data::{Prompt, VideoPrompt, Vocab};
use crate::device::{with_device, Backend, CpuDevice, OnDevice};
use crate::eval::{
    evaluate_model, evaluate_video_model, save_grid_with, EvalConfig, GridConfig, ModelEval, VideoModelEval,
};
use crate::model::{CheckpointMeta, Dit, ModelError, NoiseSchedule};
use anyhow::{bail, Context};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which prompt list to evaluate on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptSet {
    /// The world's held-out prompts (unseen colour×shape pairs and unseen compositions).
    Heldout,
    /// The world's training prompts.
    Train,
}

/// Arguments of `seppoc eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint (default: the shipped base model of `--world`).
    #[arg(long)]
    model: Option<String>,
    /// The model's world (default: whatever the checkpoint says; picks the default model).
    #[arg(long, value_enum)]
    world: Option<WorldFlag>,
    /// Prompt list.
    #[arg(long, value_enum, default_value_t = PromptSet::Heldout)]
    prompts: PromptSet,
    /// Evaluate N prompts spread evenly over the list instead of all of them.
    #[arg(long)]
    n_prompts: Option<usize>,
    /// Samples per prompt, each with its own noise; the report averages over all of them and `per_prompt` lists
    /// every sample (prompt list repeated, sample k of every prompt after sample k−1 of all).
    #[arg(long, default_value_t = 1)]
    samples: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory for `report.json` and `grid.png` (created if missing).
    #[arg(long, default_value = "eval-out")]
    out: String,
}

/// Picks `n` prompts spread evenly over `all` (all of them when `n` is `None` or at least `all.len()`).
pub(crate) fn pick_prompts<P: Clone>(all: &[P], n: Option<usize>) -> Vec<P> {
    match n {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n].clone()).collect(),
        _ => all.to_vec(),
    }
}

/// Samples and judges on the chosen device; `P` is the world's prompt type.
struct EvalJob<'a, P> {
    model: &'a Dit<CpuDevice>,
    schedule: &'a NoiseSchedule,
    vocab: &'a Vocab,
    prompts: &'a [P],
    cfg: &'a EvalConfig,
    bar: &'a indicatif::ProgressBar,
}

impl OnDevice for EvalJob<'_, Prompt> {
    type Output = Result<ModelEval, ModelError>;

    fn run<D: Backend>(self, dev: D) -> Self::Output {
        let model = self.model.to_device(&dev)?;
        evaluate_model(&model, self.schedule, self.vocab, self.prompts, self.cfg, |done, _| {
            self.bar.set_position(done as u64)
        })
    }
}

impl OnDevice for EvalJob<'_, VideoPrompt> {
    type Output = Result<VideoModelEval, ModelError>;

    fn run<D: Backend>(self, dev: D) -> Self::Output {
        let model = self.model.to_device(&dev)?;
        evaluate_video_model(&model, self.schedule, self.vocab, self.prompts, self.cfg, |done, _| {
            self.bar.set_position(done as u64)
        })
    }
}

/// Picks the prompts of `--prompts` from `lists` (held-out, train), samples and judges them on `--device`.
fn judge_on_device<P: Clone, R>(
    args: &Args,
    model: &Dit<CpuDevice>,
    schedule: &NoiseSchedule,
    vocab: &Vocab,
    lists: [&[P]; 2],
    path: &Path,
) -> anyhow::Result<(Vec<P>, EvalConfig, R)>
where
    for<'b> EvalJob<'b, P>: OnDevice<Output = Result<R, ModelError>>,
{
    let list = match args.prompts {
        PromptSet::Heldout => lists[0],
        PromptSet::Train => lists[1],
    };
    let picked = pick_prompts(list, args.n_prompts);
    let prompts: Vec<P> = (0..args.samples).flat_map(|_| picked.iter().cloned()).collect();
    let cfg = EvalConfig::new(args.sampler.config()?, args.seed);
    let bar = progress_bar(prompts.len() as u64, "eval");
    let job = EvalJob { model, schedule, vocab, prompts: &prompts, cfg: &cfg, bar: &bar };
    let result = with_device(args.device.kind(), job)?.with_context(|| format!("evaluating `{}`", path.display()))?;
    bar.finish_and_clear();
    Ok((prompts, cfg, result))
}

/// "N heldout prompts" or "N heldout prompts × K samples" for `total` judged samples.
fn counted(set: &str, total: usize, samples: usize) -> String {
    match samples {
        1 => format!("{total} {set} prompts"),
        k => format!("{} {set} prompts × {k} samples", total / k),
    }
}

/// One world's judgements, ready for [`write_report`].
struct Judged<'a, R> {
    /// The per-attribute report (printed as a table, stored in JSON).
    report: &'a R,
    /// Its mean judge score.
    mean_score: f32,
    /// Samples judged (prompts × `--samples`).
    n: usize,
    /// One JSON row per sample.
    per_prompt: Vec<serde_json::Value>,
}

/// Prints the report of either world and writes `report.json` into `--out` (created if missing); returns `--out`.
/// `world` is `Some("video")` for clip models (stored in the JSON), `None` for images.
fn write_report<R: std::fmt::Display + serde::Serialize>(
    args: &Args,
    path: &Path,
    meta: &CheckpointMeta,
    world: Option<&str>,
    cfg: &EvalConfig,
    judged: Judged<'_, R>,
) -> anyhow::Result<PathBuf> {
    let set = format!("{:?}", args.prompts).to_lowercase();
    let what = if world.is_some() { "video model" } else { "model" };
    println!("{what} `{}` on {}", path.display(), counted(&set, judged.n, args.samples));
    print!("{}", judged.report);
    println!("mean score {:.4}", judged.mean_score);

    let out = PathBuf::from(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let mut report = json!({
        "command": command_line(), "model": path.display().to_string(), "model_step": meta.step,
        "model_seed": meta.seed, "prompts": set, "n_prompts": judged.n / args.samples, "samples": args.samples,
        "eval": cfg, "report": judged.report, "mean_score": judged.mean_score, "per_prompt": judged.per_prompt,
    });
    if let Some(w) = world {
        report["world"] = json!(w);
    }
    write_json(&out.join("report.json"), &report)?;
    Ok(out)
}

/// Runs `seppoc eval`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.sampler.config()?; // the flags are checked before the model is loaded
    if args.n_prompts == Some(0) {
        bail!("--n-prompts must be at least 1");
    }
    if args.samples == 0 {
        bail!("--samples must be at least 1");
    }
    let path = model_path_for(args.model.as_deref(), args.world.unwrap_or(WorldFlag::Image));
    let loaded = match load_any(&path, args.world)? {
        Loaded::Image(loaded) => loaded,
        Loaded::Video(loaded) => return eval_video(&args, &loaded, &path),
    };
    let (world, model) = (&loaded.world, &loaded.model);
    let lists = [&world.heldout[..], &world.train[..]];
    let (prompts, cfg, result) = judge_on_device(&args, model, &loaded.schedule, &world.vocab, lists, &path)?;

    let per_prompt: Vec<_> = prompts
        .iter()
        .zip(&result.judgements)
        .map(|(p, j)| {
            json!({ "prompt": p.text(), "score": j.score, "faithfulness": j.faithfulness, "quality": j.quality,
                    "n_detected": j.n_detected })
        })
        .collect();
    let judged = Judged { report: &result.report, mean_score: result.report.mean_score, n: prompts.len(), per_prompt };
    let out = write_report(&args, &path, &loaded.meta, None, &cfg, judged)?;
    let grid_path = out.join("grid.png");
    let grid = GridConfig { cols: 16.min(prompts.len()), spacing: 2, scale: 4, background: [128, 128, 128] };
    save_grid_with(&result.images, &grid, &grid_path)
        .with_context(|| format!("cannot write `{}`", grid_path.display()))?;
    println!("wrote `{}` and `{}`", out.join("report.json").display(), grid_path.display());
    Ok(ExitCode::SUCCESS)
}

/// The video half of `eval`: video prompts, the video judge, a frame strip and a GIF.
fn eval_video(args: &Args, loaded: &LoadedVideoModel, path: &Path) -> anyhow::Result<ExitCode> {
    let (world, model) = (&loaded.world, &loaded.model);
    let lists = [&world.heldout[..], &world.train[..]];
    let (prompts, cfg, result) = judge_on_device(args, model, &loaded.schedule, &world.vocab, lists, path)?;

    let per_prompt: Vec<_> = prompts
        .iter()
        .zip(&result.judgements)
        .map(|(p, j)| {
            json!({ "prompt": p.text(), "score": j.score, "faithfulness": j.faithfulness, "quality": j.quality,
                    "motion": j.motion.map(|m| m.phrase()), "smoothness": j.smoothness, "consistency": j.consistency })
        })
        .collect();
    let judged = Judged { report: &result.report, mean_score: result.report.mean_score, n: prompts.len(), per_prompt };
    let out = write_report(args, path, &loaded.meta, Some("video"), &cfg, judged)?;
    let grid = GridConfig { cols: 8.min(prompts.len()), spacing: 2, scale: 4, background: [128, 128, 128] };
    write_clips(&result.clips, &grid, &out.join("grid.png"))?;
    write_clips(&result.clips, &grid, &out.join("grid.gif"))?;
    println!(
        "wrote `{}`, `{}` and `{}`",
        out.join("report.json").display(),
        out.join("grid.png").display(),
        out.join("grid.gif").display()
    );
    Ok(ExitCode::SUCCESS)
}
