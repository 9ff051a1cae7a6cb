//! `seppoc run FILE`: train the base model with an objective, then judge base vs trained on held-out prompts
//! (see [`crate::engine::run`]).

use super::engine::{command_line, progress_bar, DeviceArgs};
use super::{checked_or_exit, parse_set};
use crate::engine::{prepare, ObjectiveRun, RunSettings, Start};
use crate::device::with_device;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file.
    file: String,
    /// Override a parameter (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Output directory (default `runs/<objective>-seed<S>`).
    #[arg(long)]
    out: Option<String>,
    /// Continue the run in DIR from its last saved state (settings come from DIR/run.json; `--steps` may grow).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<String>,
    /// Optimizer updates (in total, counting those before a resume).
    #[arg(long)]
    steps: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    settings: RunSettings,
}

/// Runs `seppoc run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(args.device.kind())?;
    let (checked, params) = match checked_or_exit(&args.file, &args.sets)? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    let start = match args.resume {
        Some(dir) => Start::Resume(PathBuf::from(dir)),
        None => Start::Fresh { out: args.out.map(PathBuf::from), settings: args.settings },
    };
    let objective = ObjectiveRun::new(&checked, &params)?;
    let name = objective.obj.name.clone();
    let mut training = prepare(objective, start, args.steps, args.device.kind(), command_line())?;
    training.bar = progress_bar(0, &name);
    let done = with_device(args.device.kind(), training)??;
    if let Some(step) = done.resumed_at {
        println!("resumed at step {step}");
    }
    println!(
        "trained `{}` for {} steps in {:.0} s -> {}",
        done.objective,
        done.steps,
        done.train_s,
        done.model_path.display()
    );
    if let (Some(cmp), Some((report, grid))) = (&done.comparison, &done.report) {
        print!("{}", cmp.table("judge"));
        let (better, equal, n) = cmp.wins();
        let (mean, lo, hi) = cmp.delta_interval(crate::engine::run::DELTA_RESAMPLES, 0);
        println!("judge score delta {mean:+.4}, 95% bootstrap interval over prompts [{lo:+.4}, {hi:+.4}]");
        println!("win rate vs base: {:.3} ({better} better, {equal} equal of {n} samples)", cmp.win_rate());
        let k = done.grid_samples;
        println!(
            "report: {}  (grid: {k} base samples, then the same {k} prompts trained: {})",
            report.display(),
            grid.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
