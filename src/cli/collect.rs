//! `seppoc collect`: builds a preference set the way Pick-a-Pic was built (see [`crate::engine::collect`]) and
//! writes it as Parquet in the Pick-a-Pic schema; prints the annotator's calibration and the data's statistics.

use super::engine::{progress, DeviceArgs};
use crate::device::with_device;
use crate::engine::collect::{prepare, CollectSettings, GeneratorSpec};
use crate::world::WorldKind;
use anyhow::bail;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc collect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Parquet file to write (refused if it exists, unless `--force`).
    #[arg(long)]
    out: String,
    /// Overwrite `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// The base model the data is for: its world gives the prompts and the judge, and its denoising error on the
    /// winners is compared with its error on its own samples (default: the shipped base model of `--world`).
    #[arg(long)]
    model: Option<String>,
    /// The world of the data: still images, or clips (stored as their frames side by side) for a video model
    /// (default: whatever `--model` says; picks the default base model and pool).
    #[arg(long, value_enum)]
    world: Option<WorldKind>,
    /// A generator of the pool, `NAME=PATH[:cfg=W][:steps=N][:sampler=KIND][:eta=E]` (repeat the flag; default:
    /// the world's flow model, `assets/base_flow` for images and `assets/base_video_flow` for clips, Euler with
    /// 20 and 50 steps at guidance 1, 1.5 and 2; see the README).
    #[arg(long = "generator", value_name = "NAME=PATH[:cfg=W][:steps=N][:sampler=KIND][:eta=E]", value_parser = GeneratorSpec::parse)]
    generators: Vec<GeneratorSpec>,
    /// Prompts (comparison chains).
    #[arg(long, default_value_t = 2048)]
    prompts: usize,
    /// Comparisons per prompt: the winner stays, the loser is replaced by a new candidate.
    #[arg(long, default_value_t = 2)]
    comparisons: usize,
    /// Share of decided comparisons in which the simulated annotator agrees with the noiseless judge.
    #[arg(long, default_value_t = 0.70)]
    agreement: f64,
    /// Share of comparisons that are ties.
    #[arg(long, default_value_t = 0.11)]
    ties: f64,
    /// Seed of the prompts, the generator draws, the sampling noise and the annotator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs `seppoc collect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(args.device.kind())?;
    let out = PathBuf::from(&args.out);
    if out.exists() && !args.force {
        bail!("`{}` exists; pass --force to overwrite it, or choose another --out", out.display());
    }
    let settings = CollectSettings {
        prompts: args.prompts,
        comparisons: args.comparisons,
        seed: args.seed,
        agreement: args.agreement,
        tie_share: args.ties,
    };
    let base = super::engine::model_or_shipped(args.model.as_deref(), args.world)?;
    let pool = if args.generators.is_empty() {
        super::engine::note_assets()?;
        None
    } else {
        Some(args.generators)
    };
    let mut job = prepare(&base, args.world, pool, settings, out.clone())?;
    job.bar = progress("collect");
    let r = with_device(args.device.kind(), job)??;
    let c = &r.calibration;
    println!(
        "wrote `{}`: {} comparisons over {} prompts ({} decided, {} ties)",
        out.display(),
        c.decided + c.ties,
        r.settings.prompts,
        c.decided,
        c.ties
    );
    println!(
        "annotator: Bradley-Terry temperature {:.4}, tie band {:.4}; agreement with the noiseless judge {:.3} \
         (target {:.2}), tie share {:.3} (target {:.2})",
        c.temperature, c.tie_band, c.agreement, r.settings.agreement, c.tie_share, r.settings.tie_share
    );
    let w = r.per_generator.iter().map(|g| g.name.chars().count()).max().unwrap_or(0).max("generator".len());
    println!(
        "{:<w$} {:>7} {:>6} {:>6} {:>9} {:>11}",
        "generator", "images", "wins", "losses", "win rate", "mean judge"
    );
    for g in &r.per_generator {
        println!(
            "{:<w$} {:>7} {:>6} {:>6} {:>9.3} {:>11.4}",
            g.name, g.images, g.wins, g.losses, g.win_rate, g.mean_judge
        );
    }
    println!("mean judge score: winners {:.4}, losers {:.4}", r.mean_judge_winners, r.mean_judge_losers);
    let e = &r.error_ratio;
    println!(
        "base model's denoising error: {:.5} on {} winners, {:.5} on its own samples for the same prompts: ratio {:.2}",
        e.winners, e.n, e.own_samples, e.ratio
    );
    Ok(ExitCode::SUCCESS)
}
