//! `seppoc eval`: samples held-out (or training) prompts, judges each sample, prints the report and writes
//! `report.json`, `grid.png` (clips: a frame strip, plus `grid.gif`) and `grid.txt` (each cell's prompt).

use super::engine::{command_line, progress, DeviceArgs, SamplerArgs};
use crate::device::Backend;
use crate::device::{with_device, OnDevice};
use crate::engine::{evaluate, open, write_grid_index, write_json, EvalSettings, Evaluation, Opened};
use crate::eval::{Captions, GridConfig, GridLabels};
use crate::world::{Split, WorldKind};
use anyhow::{bail, Context};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc eval`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model checkpoint (default: the shipped base model of `--world`).
    #[arg(long)]
    model: Option<String>,
    /// The model's world (default: whatever the checkpoint says; picks the default model).
    #[arg(long, value_enum)]
    world: Option<WorldKind>,
    /// Prompt list.
    #[arg(long, value_enum, default_value_t = Split::Heldout)]
    prompts: Split,
    /// Evaluate N prompts spread evenly over the list instead of all of them (as `run --eval-prompts`; the
    /// old spelling `--n-prompts` is still accepted).
    #[arg(long = "eval-prompts", alias = "n-prompts", value_name = "N")]
    n_prompts: Option<usize>,
    /// Samples per prompt, each with its own noise (as `run --eval-samples`, the same default); the report
    /// averages over all of them and `per_prompt` lists every sample (prompt list repeated, sample k of every
    /// prompt after sample k−1 of all). The old spelling `--samples` is still accepted.
    #[arg(long = "eval-samples", alias = "samples", value_name = "K", default_value_t = crate::engine::DEFAULT_EVAL_SAMPLES)]
    samples: usize,
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = EvalSettings::standard().seed)]
    seed: u64,
    /// Output directory for `report.json`, `grid.png` and `grid.txt` (created if missing).
    #[arg(long, default_value = "eval-out")]
    out: String,
}

/// Samples and judges on the chosen device.
struct EvalJob<'a> {
    opened: &'a Opened,
    prompts: &'a [String],
    settings: &'a EvalSettings,
    progress: &'a mut crate::engine::Progress,
}

impl OnDevice for EvalJob<'_> {
    type Output = anyhow::Result<Evaluation>;

    fn run<D: Backend>(self, dev: D) -> Self::Output {
        let o = self.opened;
        let model = o.model.to_device(&dev)?;
        let mut shown = 0;
        let noun = format!("{}s", o.world.sample_noun());
        evaluate(&model, &o.schedule, o.world.as_ref(), self.prompts, self.settings, |done, _| {
            self.progress.advance((done - shown) as u64, &noun);
            shown = done;
        })
    }
}

/// Runs `seppoc eval`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sampler = args.sampler.config()?; // the flags are checked before the model is loaded
    if args.n_prompts == Some(0) {
        bail!("--eval-prompts must be at least 1");
    }
    if args.samples == 0 {
        bail!("--eval-samples must be at least 1");
    }
    let settings = EvalSettings {
        sampler,
        seed: args.seed,
        split: args.prompts,
        n_prompts: args.n_prompts,
        samples: args.samples,
        ..EvalSettings::standard()
    };
    let out = PathBuf::from(&args.out);
    crate::engine::ensure_writable(&out)?; // before hours of sampling, not after
    let path = super::engine::model_or_shipped(args.model.as_deref(), args.world)?;
    let opened = open(&path, args.world)?;
    let settings = settings.for_model(&opened.schedule).with_context(|| format!("sampling `{}`", path.display()))?;
    let world = opened.world.as_ref();
    let prompts = settings.prompts(world);
    let mut bar = progress("eval");
    bar.set_range(0, prompts.len() as u64);
    let job = EvalJob { opened: &opened, prompts: &prompts, settings: &settings, progress: &mut bar };
    let result = with_device(args.device.kind(), job)?.with_context(|| format!("evaluating `{}`", path.display()))?;
    bar.finish();

    let summary = result.summary();
    outln!("{} model `{}` on {}", world.kind().name(), path.display(), settings.describe(prompts.len()));
    // The same names as `seppoc run`'s table and `seppoc compare`'s columns, the judge score once (last).
    outln!("{:<24} {:>8}", format!("{}s judged", world.sample_noun()), prompts.len());
    for m in &summary.metrics {
        outln!("{:<24} {:>8.4}", m.label, m.value);
    }

    let per_prompt: Vec<_> = result.judged.verdicts.iter().map(|v| v.row.clone()).collect();
    let report = json!({
        "schema": 1, "command": command_line(), "model": path.display().to_string(), "model_step": opened.meta.step,
        "model_seed": opened.meta.seed, "world": world.kind().name(), "prompts": settings.split.name(),
        "n_prompts": prompts.len() / settings.samples, "samples": settings.samples, "eval": settings,
        "report": summary.json, "score": crate::engine::run::f32_value(summary.mean_score), "per_prompt": per_prompt,
    });
    let report_path = out.join("report.json");
    write_json(&report_path, &report)?;
    let layout = GridConfig { cols: world.grid_cols().min(prompts.len()), spacing: 2, scale: 4, background: [128; 3] };
    let mut written = vec![report_path, out.join("grid.png")];
    if world.animated() {
        written.push(out.join("grid.gif"));
    }
    let model = crate::engine::model_label(&path);
    let rows = prompts.len().div_ceil(layout.cols.max(1));
    let labels =
        GridLabels { rows: vec![model.clone(); rows], prompts: result.prompts.clone(), captions: Captions::Every };
    for grid in &written[1..] {
        world.write_samples(&result.samples, &layout, &labels, grid)?;
    }
    // Each cell's prompt, in grid order (`grid.png`'s layout for images; `grid.gif`'s for clips, whose
    // `grid.png` strip has one clip per row, in the same order).
    let index = out.join("grid.txt");
    let cells: Vec<(&str, &str)> = result.prompts.iter().map(|p| (model.as_str(), p.as_str())).collect();
    write_grid_index(&index, layout.cols, &cells)?;
    written.push(index);
    let names: Vec<String> = written.iter().map(|p| format!("`{}`", p.display())).collect();
    outln!("wrote {}", names.join(", "));
    Ok(ExitCode::SUCCESS)
}
