//! `seppoc reward train` and `seppoc reward eval`: a learned text–image reward model for a world
//! ([`crate::engine::reward`]).

use super::engine::{command_line, note_assets, progress, DeviceArgs};
use crate::device::with_device;
use crate::engine::reward::{open_reward, RewardEval, RewardEvalSettings, RewardSettings, RewardTraining};
use crate::engine::{open, write_json};
use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The shipped base model the reward commands use by default: the rectified flow whose samples fill the
/// shipped preference set.
const DEFAULT_BASE: &str = "base_flow/model.safetensors";

/// `seppoc reward ...`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Train a reward model with the Bradley–Terry loss on a Pick-a-Pic Parquet file's comparisons; writes
    /// `model.safetensors`, `metrics.jsonl` and `run.json` into --out (the same command continues a stopped one).
    Train(TrainArgs),
    /// Measure a reward model on its held-out prompts: pair accuracy against the annotator's labels and the exact
    /// judge, and its correlation with the judge on a base model's samples.
    Eval(EvalArgs),
}

/// Arguments of `seppoc reward train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The preference data (Pick-a-Pic Parquet schema, e.g. `seppoc collect`'s output).
    #[arg(long)]
    data: String,
    /// The training folder (created if missing; one made with other settings or data is refused).
    #[arg(long)]
    out: String,
    /// The base model whose world (vocabulary, image size) the reward model is for (default: the shipped flow
    /// base, `assets/base_flow`).
    #[arg(long)]
    base: Option<String>,
    #[command(flatten)]
    settings: RewardSettings,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Arguments of `seppoc reward eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The reward model: a `seppoc reward train` folder or its `model.safetensors`.
    #[arg(long)]
    reward: String,
    /// The preference data whose held-out comparisons are measured (default: the file it was trained on).
    #[arg(long)]
    data: Option<String>,
    /// The base model sampled on the held-out captions (default: the shipped flow base).
    #[arg(long)]
    model: Option<String>,
    /// Samples of each held-out caption from the base model (0: no model samples).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Sample at most N held-out captions, spread evenly over them (default: all).
    #[arg(long, value_name = "N")]
    prompts: Option<usize>,
    /// Seed of the base model's sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the report as JSON (default: `eval.json` beside the reward model).
    #[arg(long)]
    out: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Runs `seppoc reward ...`.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
    }
}

/// The base model: the given path, or the shipped flow base (named once on stderr).
fn base_path(given: Option<&str>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(PathBuf::from(p)),
        None => {
            note_assets()?;
            crate::engine::Assets::locate()?.file(DEFAULT_BASE)
        }
    }
}

fn train(a: TrainArgs) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(a.device.kind())?;
    a.settings.validate()?;
    let data = PathBuf::from(&a.data);
    if !data.exists() {
        bail!("preference file `{}` does not exist", data.display());
    }
    let base = open(&base_path(a.base.as_deref())?, None)?;
    a.settings.model_config(base.world.as_ref(), base.model.config().channels)?;
    let s = &a.settings;
    errln!(
        "training a reward model (width {}, {} blocks, patch {}) for {} updates of {} comparisons on `{}` into `{}`",
        s.width,
        s.depth,
        s.patch,
        s.steps,
        s.batch,
        data.display(),
        a.out
    );
    let job = RewardTraining {
        base,
        data,
        out: PathBuf::from(&a.out),
        settings: a.settings.clone(),
        command: command_line(),
        progress: progress("reward"),
        halt_after: None,
    };
    let done = with_device(a.device.kind(), job)??;
    if let Some(step) = done.resumed_at {
        outln!("resumed at update {step}");
    }
    let c = done.counts;
    outln!(
        "split: {} training comparisons ({} captions), {} validation, {} held out ({} captions)",
        c.train,
        c.train_captions,
        c.val,
        c.heldout,
        c.heldout_captions
    );
    let val = done.val_acc.map_or("-".to_string(), |v| format!("{v:.4}"));
    outln!(
        "wrote `{}` ({} parameters) after {} updates in {:.1} s; final loss {:.4}, validation pair accuracy {val}",
        done.checkpoint.display(),
        done.n_params,
        done.step,
        done.wall_s,
        done.final_loss
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(a: EvalArgs) -> anyhow::Result<ExitCode> {
    crate::device::ensure_built(a.device.kind())?;
    let reward = open_reward(Path::new(&a.reward))?;
    let data = match &a.data {
        Some(d) => PathBuf::from(d),
        None => {
            let meta = crate::model::read_checkpoint_meta(&reward.path)?.1;
            match meta.train.as_ref().and_then(|t| t["data"].as_str().map(PathBuf::from)) {
                Some(p) => p,
                None => bail!("`{}` does not record its data file; pass --data", reward.path.display()),
            }
        }
    };
    if !data.exists() {
        bail!("preference file `{}` does not exist (pass --data)", data.display());
    }
    let base = open(&base_path(a.model.as_deref())?, None)?;
    let out = match &a.out {
        Some(o) => PathBuf::from(o),
        None => reward.path.with_file_name("eval.json"),
    };
    let settings = RewardEvalSettings { samples: a.samples, prompts: a.prompts, seed: a.seed };
    let job = RewardEval { reward, base, data, settings };
    let report = with_device(a.device.kind(), job)??;
    out!("{}", report.table());
    write_json(&out, &serde_json::to_value(&report)?)?;
    outln!("wrote `{}`", out.display());
    Ok(ExitCode::SUCCESS)
}
