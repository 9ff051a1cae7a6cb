//! `seppoc plot RUN_DIR`: one run's training curves as PNG files: the loss, the gradient norm and every value
//! the objective logs (`log NAME = ...`) against the update, from `metrics.jsonl`, and the judge score from
//! `curve.jsonl` when the run recorded one (`--eval-every`). Works on `seppoc pretrain` folders too (loss and
//! gradient norm).

use crate::compare::plot::{line_plot, Series};
use crate::compare::stats::smooth;
use anyhow::{bail, Context};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `seppoc plot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A run's output folder (`seppoc run` or `seppoc pretrain`), holding `metrics.jsonl`.
    run_dir: String,
    /// Where the PNG files go (default `RUN_DIR/plots`; created if missing).
    #[arg(long)]
    out: Option<String>,
    /// Moving-average window drawn over each noisy per-update curve, in updates (1: none).
    #[arg(long, default_value_t = 9)]
    smooth: usize,
}

/// The per-update curves of a `metrics.jsonl`: name → (step, value), in file order.
fn read_metrics(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<(f64, f64)>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut curves: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("`{}` line {}: not valid JSON", path.display(), i + 1))?;
        let step = v["step"].as_f64().with_context(|| format!("`{}` line {}: no `step`", path.display(), i + 1))?;
        let mut put = |name: String, y: &Value| {
            if let Some(y) = y.as_f64().filter(|y| y.is_finite()) {
                curves.entry(name).or_default().push((step, y));
            }
        };
        put("loss".into(), &v["loss"]);
        put("grad_norm".into(), &v["grad_norm"]);
        if let Some(logs) = v["logs"].as_object() {
            for (name, y) in logs {
                put(format!("log {name}"), y);
            }
        }
    }
    Ok(curves)
}

/// `(step, score)` of a `curve.jsonl`, empty when there is none.
fn read_curve(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("`{}` line {}: not valid JSON", path.display(), i + 1))?;
        if let (Some(step), Some(score)) = (v["step"].as_f64(), v["score"].as_f64()) {
            points.push((step, score));
        }
    }
    Ok(points)
}

/// A file name for a curve: `loss.png`, `grad_norm.png`, `log_flip_rate.png`.
fn file_name(curve: &str) -> String {
    let safe: String = curve.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("{safe}.png")
}

/// Runs `seppoc plot`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.smooth == 0 {
        bail!("--smooth must be at least 1 (1 draws no moving average)");
    }
    let dir = PathBuf::from(&args.run_dir);
    let metrics = dir.join("metrics.jsonl");
    if !metrics.is_file() {
        bail!("`{}` has no `metrics.jsonl`: not the folder of a `seppoc run` or `seppoc pretrain`", dir.display());
    }
    let curves = read_metrics(&metrics)?;
    if curves.is_empty() {
        bail!("`{}` records no update yet", metrics.display());
    }
    let out = args.out.map_or_else(|| dir.join("plots"), PathBuf::from);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let mut written = Vec::new();
    for (name, points) in &curves {
        let mut series = vec![Series { label: name.clone(), colour: 0, points: points.clone() }];
        if args.smooth > 1 && points.len() > args.smooth {
            let label = format!("moving average of {} updates", args.smooth);
            series.push(Series { label, colour: 1, points: smooth(points, args.smooth) });
        }
        let title = format!("{name} per update ({})", dir.display());
        let path = out.join(file_name(name));
        line_plot(&path, &title, "update", name, &series, None)?;
        written.push(path);
    }
    let curve = read_curve(&dir.join("curve.jsonl"))?;
    if !curve.is_empty() {
        let n = read_prompt_count(&dir.join("curve.jsonl"));
        let y = n.map_or("judge score".to_string(), |n| format!("judge score on {n} held-out prompts"));
        let series = [Series { label: "judge score".into(), colour: 2, points: curve }];
        let path = out.join("judge_score.png");
        let title = format!("Judge score during training (update 0 = the base model; {})", dir.display());
        line_plot(&path, &title, "update", &y, &series, None)?;
        written.push(path);
    }
    for path in &written {
        outln!("wrote `{}`", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `n_prompts` of a curve's first line.
fn read_prompt_count(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let first: Value = serde_json::from_str(text.lines().next()?).ok()?;
    first["n_prompts"].as_u64()
}
