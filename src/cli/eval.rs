//! `seppoc eval`: samples one image per held-out (or training) prompt, judges each, prints the per-attribute
//! table and writes `report.json` and `grid.png`.

use super::engine::{
    command_line, load_model, model_path, progress_bar, write_json, DeviceArgs, LoadedModel, SamplerArgs,
};
use crate::data::Prompt;
use crate::eval::model_eval::ModelEval;
use crate::eval::{evaluate_model, save_grid_with, EvalConfig, GridConfig};
use crate::kernels::KernelDevice;
use crate::model::{with_device, ModelError, OnDevice};
use anyhow::{bail, Context};
use serde_json::json;
use std::path::PathBuf;
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
    /// Model checkpoint (default: the shipped base model, `assets/base/model.safetensors`).
    #[arg(long)]
    model: Option<String>,
    /// Prompt list.
    #[arg(long, value_enum, default_value_t = PromptSet::Heldout)]
    prompts: PromptSet,
    /// Evaluate N prompts spread evenly over the list instead of all of them.
    #[arg(long)]
    n_prompts: Option<usize>,
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
pub(crate) fn pick_prompts(all: &[Prompt], n: Option<usize>) -> Vec<Prompt> {
    match n {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n].clone()).collect(),
        _ => all.to_vec(),
    }
}

/// Samples and judges on the chosen device.
struct EvalJob<'a> {
    loaded: &'a LoadedModel,
    prompts: &'a [Prompt],
    cfg: &'a EvalConfig,
    bar: &'a indicatif::ProgressBar,
}

impl OnDevice for EvalJob<'_> {
    type Output = Result<ModelEval, ModelError>;

    fn run<D: KernelDevice>(self, dev: D) -> Self::Output {
        let model = self.loaded.model.to_device(&dev)?;
        let (schedule, vocab) = (&self.loaded.schedule, &self.loaded.world.vocab);
        evaluate_model(&model, schedule, vocab, self.prompts, self.cfg, |done, _| self.bar.set_position(done as u64))
    }
}

/// Runs `seppoc eval`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sampler = args.sampler.config()?;
    if args.n_prompts == Some(0) {
        bail!("--n-prompts must be at least 1");
    }
    let path = model_path(args.model.as_deref());
    let loaded = load_model(&path)?;
    let list = match args.prompts {
        PromptSet::Heldout => &loaded.world.heldout,
        PromptSet::Train => &loaded.world.train,
    };
    let prompts = pick_prompts(list, args.n_prompts);
    let cfg = EvalConfig::new(sampler, args.seed);
    let bar = progress_bar(prompts.len() as u64, "eval");
    let job = EvalJob { loaded: &loaded, prompts: &prompts, cfg: &cfg, bar: &bar };
    let result = with_device(args.device.kind(), job)?.with_context(|| format!("evaluating `{}`", path.display()))?;
    bar.finish_and_clear();

    let set = format!("{:?}", args.prompts).to_lowercase();
    println!("model `{}` on {} {set} prompts", path.display(), prompts.len());
    print!("{}", result.report);
    println!("mean score {:.4}", result.report.mean_score);

    let out = PathBuf::from(&args.out);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let per_prompt: Vec<_> = prompts
        .iter()
        .zip(&result.judgements)
        .map(|(p, j)| {
            json!({ "prompt": p.text(), "score": j.score, "faithfulness": j.faithfulness, "quality": j.quality,
                    "n_detected": j.n_detected })
        })
        .collect();
    let report = json!({
        "command": command_line(), "model": path.display().to_string(), "model_step": loaded.meta.step,
        "model_seed": loaded.meta.seed, "prompts": set, "n_prompts": prompts.len(), "eval": cfg,
        "report": result.report, "mean_score": result.report.mean_score, "per_prompt": per_prompt,
    });
    write_json(&out.join("report.json"), &report)?;
    let grid_path = out.join("grid.png");
    let grid = GridConfig { cols: 16.min(prompts.len()), spacing: 2, scale: 4, background: [128, 128, 128] };
    save_grid_with(&result.images, &grid, &grid_path)
        .with_context(|| format!("cannot write `{}`", grid_path.display()))?;
    println!("wrote `{}` and `{}`", out.join("report.json").display(), grid_path.display());
    Ok(ExitCode::SUCCESS)
}
