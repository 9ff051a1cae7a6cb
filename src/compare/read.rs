//! Reading a comparison's inputs back from disk: the base model's `seppoc eval` report and each run directory
//! (`final/report.json` from `seppoc eval`, `curve.jsonl` and `metrics.jsonl` from `seppoc run`).

use super::stats::{Baseline, Metrics, RunRecord};
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::Path;

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))
}

fn number(v: &Value, key: &str, path: &Path) -> anyhow::Result<f64> {
    v[key].as_f64().with_context(|| format!("`{}`: missing number `{key}`", path.display()))
}

/// The aggregate numbers and per-prompt scores of a `seppoc eval` report.
fn read_eval(path: &Path) -> anyhow::Result<(Metrics, Vec<f64>)> {
    let v = read_json(path)?;
    let r = &v["report"];
    let metrics = Metrics {
        // `score` and `quality` since schema 1; older reports said `mean_score` and `mean_quality`.
        score: number(r, "score", path).or_else(|_| number(r, "mean_score", path))?,
        quality: number(r, "quality", path).or_else(|_| number(r, "mean_quality", path))?,
        colour: number(r, "colour_acc", path)?,
        shape: number(r, "shape_acc", path)?,
        position: r["position_acc"].as_f64(),
        motion: r["motion_acc"].as_f64(),
        all_correct: number(r, "all_correct", path)?,
    };
    if metrics.position.is_none() && metrics.motion.is_none() {
        bail!("`{}`: missing number `position_acc` (image) or `motion_acc` (video)", path.display());
    }
    let per_prompt = v["per_prompt"]
        .as_array()
        .with_context(|| format!("`{}`: missing `per_prompt`", path.display()))?
        .iter()
        .map(|p| number(p, "score", path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((metrics, per_prompt))
}

/// Reads `(step, value at key)` from each line of a JSONL file; lines without the value are skipped.
fn read_series(path: &Path, key: &[&str]) -> anyhow::Result<Vec<(usize, f64)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("`{}` line {}: not valid JSON", path.display(), i + 1))?;
        let value = key.iter().fold(&v, |v, k| &v[*k]);
        if let (Some(step), Some(y)) = (v["step"].as_u64(), value.as_f64()) {
            out.push((step as usize, y));
        }
    }
    Ok(out)
}

/// The base model's evaluation (`report.json` written by `seppoc eval`).
pub fn read_baseline(report: &Path) -> anyhow::Result<Baseline> {
    let (metrics, per_prompt) = read_eval(report)?;
    Ok(Baseline { metrics, per_prompt })
}

/// The sampler an evaluation report was drawn with (its `eval.sampler`), described, e.g. `Euler 20 steps, cfg 5`.
pub fn report_sampler(report: &Path) -> Option<String> {
    let v = read_json(report).ok()?;
    let cfg: crate::sampler::SamplerConfig = serde_json::from_value(v["eval"]["sampler"].clone()).ok()?;
    Some(cfg.describe())
}

/// One finished run: `dir/final/report.json`, `dir/curve.jsonl` and the `flip_rate` log in `dir/metrics.jsonl`.
pub fn read_run(dir: &Path, objective: &str, seed: u64, seconds: f64) -> anyhow::Result<RunRecord> {
    let (metrics, per_prompt) = read_eval(&dir.join("final").join("report.json"))?;
    let curve = read_series(&dir.join("curve.jsonl"), &["score"])?;
    let flip_rate = read_series(&dir.join("metrics.jsonl"), &["logs", "flip_rate"])?;
    if per_prompt.is_empty() {
        bail!("`{}`: the final evaluation judged no prompts", dir.display());
    }
    Ok(RunRecord { objective: objective.to_string(), seed, metrics, per_prompt, curve, flip_rate, seconds })
}

/// How many prompts `seppoc run` judged per curve point (`n_prompts` of the first line of `dir/curve.jsonl`):
/// fewer than `--curve-prompts` when the world has fewer held-out prompts.
pub fn curve_prompt_count(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("curve.jsonl")).ok()?;
    let first: Value = serde_json::from_str(text.lines().next()?).ok()?;
    first["n_prompts"].as_u64().map(|n| n as usize)
}
