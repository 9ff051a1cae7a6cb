//! `seppoc compare FILE...`: trains every objective from the same base model on the same data with the same
//! seeds, judges each trained model on the same held-out prompts, and writes the comparison (table as Markdown
//! and JSON, plots of the judge score over training and of the gate flip rate).
//!
//! Each training is a `seppoc run` child process and each evaluation a `seppoc eval` child process of this same
//! binary, so a comparison is exactly what the single commands would produce, runs can go in parallel
//! (`--jobs`; one training uses one core), and an interrupted comparison picks up where it stopped: finished
//! runs are reused and unfinished ones resumed from their last saved state.

mod jobs;

use super::engine::{command_line, DeviceArgs};
use super::{load_source, parse_set, print_diags};
use crate::compare::output::{draw_plots, markdown};
use crate::compare::read::{curve_prompt_count, read_baseline, read_run, report_sampler};
use crate::compare::{markdown_table, summarize, Baseline, RunRecord};
use crate::device::DeviceKind;
use crate::engine::write_json;
use crate::world::WorldKind;
use anyhow::{bail, Context};
use jobs::{finished_seconds, read_signature, run_jobs, Job};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `seppoc compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective files (distinct objective names).
    #[arg(required = true)]
    files: Vec<String>,
    /// Seeds per objective (0, 1, ..., N-1).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Optimizer updates per run.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Runs trained at the same time (each uses one core).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Output directory.
    #[arg(long, default_value = "runs/compare")]
    out: String,
    /// Override a parameter in every file that declares it (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Held-out prompts in the final evaluation, spread evenly over the list (default: all of them).
    #[arg(long, value_name = "N")]
    eval_prompts: Option<usize>,
    /// Samples per held-out prompt in the final evaluations (`seppoc eval --eval-samples`, the same default as
    /// `seppoc run` and `seppoc eval`): more samples, less noise from the sampler's seed when the prompt list is
    /// short (the video world has 13 held-out prompts).
    #[arg(long, value_name = "K", default_value_t = crate::engine::DEFAULT_EVAL_SAMPLES)]
    eval_samples: usize,
    /// Judge each policy every N updates for the score-vs-step plot (default: steps / 5).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Held-out prompts judged at each `--eval-every` point.
    #[arg(long, default_value_t = 32)]
    curve_prompts: usize,
    /// Base model (default: the shipped `base/model.safetensors`, or `base_video_flow/...` for video, in the assets
    /// folder: `SEPPOC_ASSETS`, else the `assets/` of the source tree seppoc was built from).
    #[arg(long)]
    model: Option<String>,
    /// The base model's world (default: what the checkpoint says; picks the default model). Passed to every
    /// `seppoc run` and `seppoc eval`.
    #[arg(long, value_enum)]
    world: Option<WorldKind>,
    /// Passed to `seppoc run`: prompts per batch.
    #[arg(long)]
    batch: Option<usize>,
    /// Passed to `seppoc run`: peak learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Passed to `seppoc run`: linear warmup steps.
    #[arg(long)]
    warmup: Option<usize>,
    /// Passed to `seppoc run`: the preference data (a Pick-a-Pic Parquet file, an imagefolder, or `synthetic`;
    /// default: `preferences.parquet` beside the base model when it exists).
    #[arg(long)]
    data: Option<String>,
    /// Passed to `seppoc run`: size of the synthetic preference set.
    #[arg(long)]
    data_size: Option<usize>,
    /// Passed to `seppoc run` for the objectives that read the reward of their generated samples (online
    /// objectives, `reward(x)` of a `sample(...)`): a reward model from `seppoc reward train`, or `judge`.
    #[arg(long, value_name = "PATH|judge")]
    reward: Option<String>,
    /// Passed to every `seppoc run` and `seppoc eval`: where the models run (`cuda` needs a binary built with
    /// `--features cuda`; checked before any job starts).
    #[command(flatten)]
    device: DeviceArgs,
    /// Train and evaluate nothing: build the table and plots from the jobs that already finished with these
    /// settings (the others are listed as not run).
    #[arg(long)]
    report_only: bool,
}

/// One objective file to compare.
struct Entry {
    file: String,
    name: String,
    /// The `--set` overrides that this file declares.
    sets: Vec<(String, String)>,
    /// Whether it reads the reward of its generated samples (and so gets `--reward`).
    online: bool,
}

/// Runs `seppoc compare`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.seeds == 0 || args.steps == 0 || args.jobs == 0 || args.curve_prompts == 0 || args.eval_samples == 0 {
        bail!("--seeds, --steps, --jobs, --curve-prompts and --eval-samples must each be at least 1");
    }
    if args.eval_prompts == Some(0) {
        bail!("--eval-prompts must be at least 1");
    }
    crate::device::ensure_built(args.device.kind())?;
    let Some(entries) = check_files(&args)? else { return Ok(ExitCode::from(1)) };
    let out = PathBuf::from(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let base = super::engine::model_or_shipped(args.model.as_deref(), args.world)?.display().to_string();
    let eval_every = args.eval_every.unwrap_or((args.steps / 5).max(1));

    // The evaluation's flags as job signatures record them: the spellings and the "one sample unless said"
    // convention of the folders earlier versions wrote (`seppoc eval` still takes both spellings), so those
    // comparisons stay resumable; `eval_command` adds the count where it is 1.
    let mut eval_args = vec!["--seed".to_string(), "0".to_string()];
    if let Some(w) = args.world {
        eval_args.extend(["--world".to_string(), w.name().to_string()]);
    }
    eval_args.extend(device_flag(&args.device));
    if args.eval_samples > 1 {
        eval_args.extend(["--samples".to_string(), args.eval_samples.to_string()]);
    }
    if let Some(n) = args.eval_prompts {
        eval_args.extend(["--n-prompts".to_string(), n.to_string()]);
    }
    let base_dir = out.join("base");
    let mut jobs = vec![Job {
        label: "base model".to_string(),
        dir: base_dir.clone(),
        commands: vec![eval_command(&base, &base_dir, &eval_args, args.eval_samples)],
        signature: json!({ "model": base, "eval": eval_args }),
        objective: None,
    }];
    for e in &entries {
        for seed in 0..args.seeds {
            jobs.push(run_job(&args, e, seed, &out, &base, eval_every, &eval_args)?);
        }
    }

    // Never mix two comparisons in one folder: a job folder written with other settings stops everything.
    if let Some(job) = jobs.iter().find(|j| read_signature(&j.dir).is_some_and(|s| s != j.signature)) {
        bail!(
            "`{}` holds a comparison made with other settings (`{}` differs: files, --steps, --seeds, --set or \
             run flags); pass another --out, or repeat the earlier command to resume or report it",
            out.display(),
            job.dir.join("job.json").display()
        );
    }

    let started = Instant::now();
    outln!(
        "comparing {} objectives × {} seeds, {} updates each ({} jobs, {} at a time) -> {}",
        entries.len(),
        args.seeds,
        args.steps,
        jobs.len(),
        args.jobs,
        out.display()
    );
    let outcomes =
        if args.report_only { jobs.iter().map(finished_seconds).collect() } else { run_jobs(&jobs, args.jobs) };
    let wall = started.elapsed().as_secs_f64();
    if crate::engine::stop::requested() {
        let kept = outcomes.iter().filter(|o| o.is_ok()).count();
        let waiting = outcomes.iter().filter(|o| o.as_ref().is_err_and(|e| e.is::<jobs::NotStarted>())).count();
        return Err(crate::engine::Interrupted {
            message: format!(
                "interrupted: {kept} of {} jobs had finished and {waiting} had not started; the runs that had \
                 started saved their state. Resume with the same command:\n  {}",
                jobs.len(),
                command_line()
            ),
        }
        .into());
    }

    let mut failed = Vec::new();
    let mut records: Vec<RunRecord> = Vec::new();
    let mut baseline: Option<Baseline> = None;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let result = outcome.and_then(|seconds| match &job.objective {
            None => read_baseline(&job.dir.join("report.json")).map(|b| baseline = Some(b)),
            Some((name, seed)) => read_run(&job.dir, name, *seed, seconds).map(|r| records.push(r)),
        });
        if let Err(e) = result {
            failed.push(format!("{}: {e:#}", job.label));
        }
    }
    let Some(baseline) = baseline else {
        bail!("the base model's evaluation failed: {}", failed.join("; "));
    };
    let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let rows = summarize(&names, &baseline, &records);
    let table = markdown_table(&baseline, &rows);
    out!("\n{table}");

    let judged = jobs.iter().filter(|j| j.objective.is_some()).find_map(|j| curve_prompt_count(&j.dir));
    let plots = draw_plots(&out, &names, &records, judged.unwrap_or(args.curve_prompts))?;
    let settings = json!({
        "files": entries.iter().map(|e| &e.file).collect::<Vec<_>>(), "seeds": args.seeds, "steps": args.steps,
        "sets": args.sets, "eval_prompts": baseline.per_prompt.len() / args.eval_samples,
        "eval_samples": args.eval_samples, "eval_every": eval_every,
        "curve_prompts": args.curve_prompts, "base_model": base, "world": args.world.map(WorldKind::name),
        "device": format!("{:?}", args.device.device).to_lowercase(), "batch": args.batch, "lr": args.lr,
        "warmup": args.warmup, "data_size": args.data_size, "data": args.data,
    });
    write_json(
        &out.join("compare.json"),
        &json!({
            "schema": 1, "command": command_line(), "settings": settings, "wall_seconds": wall, "base": baseline.metrics,
            "rows": rows, "failed": failed, "plots": plots,
            "runs": records.iter().map(|r| json!({ "objective": r.objective, "seed": r.seed, "metrics": r.metrics,
                                                    "seconds": r.seconds })).collect::<Vec<_>>(),
        }),
    )?;
    let wall_text = if args.report_only {
        let job_s: f64 = records.iter().map(|r| r.seconds).sum();
        format!("report only; the {} finished runs took {job_s:.0} s of job time", records.len())
    } else {
        format!("{wall:.0} s")
    };
    let sampler = jobs
        .iter()
        .find(|j| j.objective.is_none())
        .and_then(|j| report_sampler(&j.dir.join("report.json")))
        .unwrap_or_else(|| crate::engine::EvalSettings::standard().sampler.describe());
    let md = markdown(&command_line(), &settings, &sampler, &table, &wall_text, &plots, &failed);
    crate::engine::write_atomic(&out.join("compare.md"), md.as_bytes())?;
    outln!("wrote {}/compare.md, compare.json and {} plot(s) in {wall:.0} s", out.display(), plots.len());
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else if args.report_only {
        outln!("{} of {} jobs have not finished; the table holds those that have", failed.len(), jobs.len());
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failed {
            errln!("error: {f}");
        }
        bail!("{} of {} jobs failed; the table holds the runs that finished", failed.len(), jobs.len())
    }
}

/// Checks every file (printing diagnostics), finds its objective name and which `--set`s it declares.
fn check_files(args: &Args) -> anyhow::Result<Option<Vec<Entry>>> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut used = vec![false; args.sets.len()];
    let mut ok = true;
    for file in &args.files {
        let (src, load_diag) = load_source(file)?;
        let checked = match load_diag.map_or_else(|| crate::frontend::frontend_with(&src, &[]), |d| Err(vec![d])) {
            Ok((checked, _)) => checked,
            Err(diags) => {
                print_diags(&diags, &src);
                ok = false;
                continue;
            }
        };
        let mut sets = Vec::new();
        for (i, (k, v)) in args.sets.iter().enumerate() {
            if checked.params.iter().any(|p| &p.name == k) {
                used[i] = true;
                sets.push((k.clone(), v.clone()));
            }
        }
        // Values are checked now (domain, integer) so that a bad `--set` fails before any training.
        if let Err(diags) = crate::frontend::frontend_with(&src, &sets) {
            print_diags(&diags, &src);
            ok = false;
            continue;
        }
        if let Some(other) = entries.iter().find(|e| e.name == checked.name) {
            bail!("`{file}` and `{}` both define objective `{}`: names must differ", other.file, checked.name);
        }
        let online = crate::ir::lower(&checked).datums.iter().any(crate::ir::Datum::is_online_reward);
        if online && args.reward.is_none() {
            bail!(
                "`{file}` (objective `{}`) reads the reward of its generated samples: give `--reward PATH` (a \
                 reward model from `seppoc reward train`) or `--reward judge`",
                checked.name
            );
        }
        entries.push(Entry { file: file.clone(), name: checked.name.clone(), sets, online });
    }
    if let Some(i) = used.iter().position(|u| !u) {
        bail!("--set {}: no objective file declares a parameter `{}`", args.sets[i].0, args.sets[i].0);
    }
    Ok(ok.then_some(entries))
}

/// The `seppoc eval` command of a job: `eval_args` as signed, with the sample count when it is 1 (the signature
/// leaves it out; `seppoc eval` would take its default).
fn eval_command(model: &str, out: &Path, eval_args: &[String], samples: usize) -> Vec<String> {
    let mut c = vec!["eval".to_string(), "--model".to_string(), model.to_string()];
    c.extend_from_slice(eval_args);
    if samples == 1 {
        c.extend(["--eval-samples".to_string(), "1".to_string()]);
    }
    c.extend(["--out".to_string(), out.display().to_string()]);
    c
}

/// `--device cuda` for the child commands, nothing for the CPU (so CPU jobs keep the signatures of before the flag
/// existed and stay resumable).
fn device_flag(device: &DeviceArgs) -> Vec<String> {
    match device.device {
        DeviceKind::Cpu => Vec::new(),
        DeviceKind::Cuda => vec!["--device".to_string(), "cuda".to_string()],
    }
}

/// The job training `e` with `seed` and evaluating the result; resumes an unfinished run of the same job.
fn run_job(
    args: &Args,
    e: &Entry,
    seed: u64,
    out: &Path,
    base: &str,
    eval_every: usize,
    eval_args: &[String],
) -> anyhow::Result<Job> {
    let dir = out.join(&e.name).join(format!("seed{seed}"));
    let mut common = vec!["--seed".to_string(), seed.to_string(), "--model".to_string(), base.to_string()];
    if let Some(w) = args.world {
        common.extend(["--world".to_string(), w.name().to_string()]);
    }
    common.extend(device_flag(&args.device));
    for (k, v) in &e.sets {
        common.extend(["--set".to_string(), format!("{k}={v}")]);
    }
    let opt = [
        ("--batch", args.batch.map(|v| v.to_string())),
        ("--lr", args.lr.map(|v| v.to_string())),
        ("--warmup", args.warmup.map(|v| v.to_string())),
        ("--data-size", args.data_size.map(|v| v.to_string())),
        ("--data", args.data.clone()),
        ("--reward", args.reward.clone().filter(|_| e.online)),
    ];
    for (flag, value) in opt {
        if let Some(v) = value {
            common.extend([flag.to_string(), v]);
        }
    }
    common.extend([
        "--eval-prompts".to_string(),
        "0".to_string(),
        "--eval-every".to_string(),
        eval_every.to_string(),
        "--curve-prompts".to_string(),
        args.curve_prompts.to_string(),
    ]);
    let text = std::fs::read_to_string(&e.file).with_context(|| format!("cannot read `{}`", e.file))?;
    let signature = json!({ "objective": text, "args": common, "steps": args.steps, "eval": eval_args });
    let has_state = dir.join("state/state.json").exists() || dir.join("state.old/state.json").exists();
    let resumable = read_signature(&dir).as_ref() == Some(&signature) && has_state;
    let steps = args.steps.to_string();
    let train = if resumable {
        let mut c = vec!["run".to_string(), e.file.clone(), "--resume".to_string(), dir.display().to_string()];
        c.extend(["--steps".to_string(), steps]);
        c.extend(device_flag(&args.device));
        c
    } else {
        let mut c = vec!["run".to_string(), e.file.clone(), "--out".to_string(), dir.display().to_string()];
        c.extend(["--steps".to_string(), steps]);
        c.extend(common);
        c
    };
    let model = dir.join("model.safetensors").display().to_string();
    Ok(Job {
        label: format!("{} seed {seed}", e.name),
        commands: vec![train, eval_command(&model, &dir.join("final"), eval_args, args.eval_samples)],
        dir,
        signature,
        objective: Some((e.name.clone(), seed)),
    })
}
