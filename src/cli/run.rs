//! `seppoc run FILE`: train the base model with an objective, then judge base vs trained on held-out prompts
//! (see [`crate::engine::run`]).

use super::engine::{command_line, progress, DeviceArgs};
use super::{checked_or_exit, parse_set};
use crate::device::with_device;
use crate::engine::run::saved_objective;
use crate::engine::{prepare, ObjectiveRun, RunSettings, Start};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file (with `--resume`, optional: the run's own `DIR/objective.obj`; if given, it must be
    /// the same objective).
    #[arg(required_unless_present = "resume")]
    file: Option<String>,
    /// Override a parameter (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Output directory (default `runs/<objective>-seed<S>`, then every training setting that is not its
    /// default and every `--set`, e.g. `runs/sft-seed0-lr0.0001`, so the runs of a sweep do not collide).
    #[arg(long)]
    out: Option<String>,
    /// Continue the run in DIR from its last saved state (settings come from DIR/run.json; `--steps` may grow).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<String>,
    /// Optimizer updates (in total, counting those before a resume).
    #[arg(long)]
    steps: Option<usize>,
    /// Print where the training steps spent their time, phase by phase, and write it to `DIR/profile.json`.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    settings: RunSettings,
}

/// The parameter names a file declares (none when it does not load or check; its diagnostics come later).
fn declared_params(path: &str) -> Vec<String> {
    let Ok((file, None)) = super::load_source(path) else { return Vec::new() };
    match crate::frontend::frontend_with(&file, &[]) {
        Ok((checked, _)) => checked.params.iter().map(|p| p.name.clone()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs `seppoc run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(args.device.kind())?;
    // A resume takes the run's recorded parameter values unless `--set` gives them again (then they must match).
    let (file, sets) = match (&args.resume, args.file) {
        (Some(dir), file) => {
            let (own, mut saved) = saved_objective(std::path::Path::new(dir))?;
            saved.retain(|(k, _)| !args.sets.iter().any(|(name, _)| name == k));
            if let Some(f) = &file {
                // Another file may not declare the saved parameters: the engine then reports the mismatch.
                let declared = declared_params(f);
                saved.retain(|(k, _)| declared.contains(k));
            }
            saved.extend(args.sets.iter().cloned());
            (file.unwrap_or_else(|| own.display().to_string()), saved)
        }
        (None, Some(file)) => (file, args.sets.clone()),
        (None, None) => anyhow::bail!("an objective FILE is needed (or --resume DIR)"),
    };
    let shown_file = crate::engine::stop::shell_quote(&file);
    let (checked, params) = match checked_or_exit(&file, &sets)? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    let start = match args.resume {
        Some(dir) => Start::Resume(PathBuf::from(dir)),
        None => {
            let out = args.out.map(PathBuf::from);
            let out = out.unwrap_or_else(|| args.settings.default_out(&checked.name, &args.sets));
            Start::Fresh { out: Some(out), settings: args.settings }
        }
    };
    let objective = ObjectiveRun::new(&checked, &params)?;
    let name = objective.obj.name.clone();
    let mut training = prepare(objective, start, args.steps, args.device.kind(), command_line())?;
    if training.settings.model.is_none() {
        super::engine::note_assets()?; // the base model (and its preference set) came from the assets folder
    }
    if let Some(note) = crate::model::err_weighting_note(training.parametrisation()) {
        errln!("note: {note}");
    }
    training.progress = progress(&name);
    let done = with_device(args.device.kind(), training)??;
    match done.resumed_at {
        // Nothing left to train: say so rather than "trained 200 steps in 0 s".
        Some(step) if step == done.steps => outln!(
            "`{}` had already finished: `{}` trained for {} steps -> {}; judging it again",
            done.model_path.parent().unwrap_or(std::path::Path::new(".")).display(),
            done.objective,
            done.steps,
            done.model_path.display()
        ),
        resumed => {
            if let Some(step) = resumed {
                outln!("resumed at step {step}");
            }
            outln!(
                "trained `{}` for {} steps in {:.0} s -> {}",
                done.objective,
                done.steps,
                done.train_s,
                done.model_path.display()
            );
        }
    }
    if args.profile {
        print_profile(&done.profile, &done.model_path.with_file_name("profile.json"))?;
    }
    if let (Some(cmp), Some((report, grid))) = (&done.comparison, &done.report) {
        out!("{}", cmp.table("judge"));
        let wins = cmp.wins();
        let (mean, lo, hi) = cmp.delta_interval(crate::engine::run::DELTA_RESAMPLES, 0);
        outln!("judge score delta {mean:+.4}, 95% bootstrap interval over prompts [{lo:+.4}, {hi:+.4}]");
        outln!(
            "  (the interval covers the prompts for this one training seed, not the spread over seeds: `seppoc \
             compare {shown_file} --seeds 3` trains 3 seeds)"
        );
        outln!(
            "win rate vs base: {:.3} ({} better, {} equal, {} worse of {} samples; a tie counts 1/2)",
            wins.rate(),
            wins.better,
            wins.equal,
            wins.worse,
            wins.total()
        );
        let k = done.grid_samples;
        outln!(
            "report: {}  (grid: {k} base samples, then the same {k} prompts trained: {}; prompts in {})",
            report.display(),
            grid.display(),
            grid.with_file_name("grid.txt").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--profile` table: each phase's mean milliseconds per step and share; the same as JSON in `path`.
fn print_profile(p: &crate::trainer::Profile, path: &std::path::Path) -> anyhow::Result<()> {
    let phases = p.per_step();
    outln!("time per training step, mean of {} steps: {:.1} ms", p.steps, p.step_ms());
    for (name, ms, share) in &phases {
        outln!("  {name:<28} {ms:>9.2} ms  {:>5.1}%", 100.0 * share);
    }
    let phases: Vec<_> =
        phases.into_iter().map(|(n, ms, f)| serde_json::json!({"phase": n, "ms_per_step": ms, "share": f})).collect();
    crate::engine::files::write_json(
        path,
        &serde_json::json!({"steps": p.steps, "step_ms": p.step_ms(), "phases": phases}),
    )?;
    outln!("profile: {}", path.display());
    Ok(())
}
