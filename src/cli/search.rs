//! `seppoc search`: evolve objectives of one data kind, judged on validation prompts (see [`crate::search`]).

use crate::engine::files::DirLock;
use crate::engine::RunSettings;
use crate::search::{self, Budget, Funnel, Search, SearchSettings, Stage, Stopped};
use anyhow::{bail, Context};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc search`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seed objective files (default: the shipped objectives of `--data-kind` that need no reward or weight
    /// columns). Each is a baseline, tuned over the grid of its main parameter.
    files: Vec<String>,
    /// The data kind searched: `winners` or `pairs` (or `labelled`).
    #[arg(long, default_value = "winners")]
    data_kind: String,
    /// Output directory (default `runs/search-<kind>-seed<S>`). The same command on the same directory resumes.
    #[arg(long)]
    out: Option<String>,
    /// Seed of the proposals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many evaluations in total (one candidate at one stage, all its seeds).
    #[arg(long, value_name = "N")]
    budget_evals: Option<usize>,
    /// Stop after this many minutes of this sitting (at the next safe point).
    #[arg(long, value_name = "M")]
    minutes: Option<f64>,
    /// Evaluations run at the same time, in one process.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Candidates that pass the checker per generation.
    #[arg(long, default_value_t = 12)]
    population: usize,
    /// Random well-typed trees in the first generation.
    #[arg(long, default_value_t = 8)]
    random: usize,
    /// Promotion rate: the top 1/ETA of each stage's results go on to the next.
    #[arg(long, default_value_t = 3)]
    eta: usize,
    /// The funnel's stages, `STEPS:SEEDS:PROMPTS:SAMPLES` separated by commas, shortest first.
    #[arg(long, default_value = "60:1:32:1,180:2:64:1,400:3:128:2")]
    stages: String,
    /// Validation prompts, drawn from the world's training prompts (never the held-out ones).
    #[arg(long, default_value_t = 128)]
    validation: usize,
    /// Base model (default: the shipped one).
    #[arg(long)]
    model: Option<String>,
    /// Preference data, as `seppoc run --data` takes it (default: the base model's `preferences.parquet`).
    #[arg(long)]
    data: Option<String>,
    /// Prompts per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-5)]
    lr: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f32,
}

/// Parses `STEPS:SEEDS:PROMPTS:SAMPLES,...`.
pub fn parse_stages(text: &str) -> anyhow::Result<Vec<Stage>> {
    text.split(',')
        .map(|part| {
            let n: Vec<usize> = part
                .split(':')
                .map(|x| x.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("--stages: `{part}` is not STEPS:SEEDS:PROMPTS:SAMPLES"))?;
            match n[..] {
                [steps, seeds, prompts, samples] if steps > 0 && seeds > 0 && prompts > 0 && samples > 0 => {
                    Ok(Stage { steps, seeds, prompts, samples })
                }
                _ => bail!("--stages: `{part}` must be four positive integers STEPS:SEEDS:PROMPTS:SAMPLES"),
            }
        })
        .collect()
}

/// Runs `seppoc search`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = search::data_kind(&args.data_kind)?;
    let stages = parse_stages(&args.stages)?;
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if args.budget_evals.is_none() && args.minutes.is_none() {
        bail!("give a budget: --budget-evals N, --minutes M, or both");
    }
    if args.minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
        bail!("--minutes must be a positive number");
    }
    let files: Vec<PathBuf> = if args.files.is_empty() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("objectives");
        search::shipped_seeds(&dir, kind)?
    } else {
        args.files.iter().map(PathBuf::from).collect()
    };
    let seeds = search::read_seeds(&files)?;
    let mut run = RunSettings::defaults();
    (run.model, run.data, run.batch, run.lr, run.warmup, run.max_grad_norm) =
        (args.model.clone(), args.data.clone(), args.batch, args.lr, args.warmup, args.max_grad_norm);
    run.validate()?;
    let training = search::default_training(&run);
    let settings = SearchSettings {
        data_kind: kind.word().to_string(),
        seeds: seeds
            .iter()
            .map(|(n, c)| {
                use sha2::{Digest, Sha256};
                (n.clone(), format!("{:x}", Sha256::digest(crate::syntax::format(&c.file).as_bytes())))
            })
            .collect(),
        seed: args.seed,
        population: args.population,
        random: args.random,
        eta: args.eta,
        stages,
        validation: args.validation,
        training,
        model: args.model,
        data: args.data,
    };
    let out = PathBuf::from(args.out.unwrap_or_else(|| format!("runs/search-{}-seed{}", kind.word(), args.seed)));
    let previous = search::open_out(&out, &settings)?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let _lock = DirLock::acquire(&out)?;
    if settings.model.is_none() {
        super::engine::note_assets()?;
    }
    let funnel = Funnel::new(run, settings.training.clone(), settings.validation)?;
    let resumed = previous.iter().filter(|r| !r.stages.is_empty()).count();
    let log_path = out.join("search.log");
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open `{}`", log_path.display()))?;
    let log = Box::new(move |line: &str| {
        errln!("{line}");
        let _ = writeln!(log_file, "{line}");
    });
    errln!(
        "search `{}`: data {}, {} seed objectives, {} validation prompts (training prompts, none held out){}",
        out.display(),
        kind.word(),
        seeds.len(),
        funnel.validation().len(),
        if resumed > 0 { format!("; resuming: {resumed} trained candidates in the archive") } else { String::new() }
    );
    let mut search = Search::new(settings, seeds, &out, &funnel, previous, log)?;
    let budget = Budget { evaluations: args.budget_evals, minutes: args.minutes };
    let stopped = search.run(budget, args.jobs, &crate::engine::stop::requested)?;
    let why = match stopped {
        Stopped::Evaluations => "the evaluation budget is spent",
        Stopped::Minutes => "the minutes of this sitting are spent",
    };
    outln!(
        "search `{}` stopped: {why} ({} evaluations, {} of them in this sitting; {} candidates). Run the same command \
         with a larger budget to continue.",
        out.display(),
        search.spent,
        search.fresh(),
        search.records.len()
    );
    for (i, r) in search::output::ranked(&search.records).iter().take(5).enumerate() {
        outln!(
            "{:>2}. {:<22} stage {}  validation delta {:+.4}  ({})",
            i + 1,
            r.name,
            r.stage(),
            r.score().unwrap_or(f64::NAN),
            r.origin
        );
    }
    outln!(
        "leaderboard: {}  archive: {}  plot: {}  top candidates: {}",
        out.join("leaderboard.md").display(),
        out.join("archive.jsonl").display(),
        out.join("progress.png").display(),
        out.join("top").display()
    );
    Ok(ExitCode::SUCCESS)
}
