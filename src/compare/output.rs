//! What `seppoc compare` writes besides the JSON: the plots and the Markdown page.

use super::plot::{line_plot, Series};
use super::stats::{mean_curve, smooth, RunRecord};
use serde_json::Value;
use std::path::Path;

/// Draws `judge_vs_step.png` (mean over seeds per objective) and `flip_rate.png` (objectives logging
/// `flip_rate`, smoothed, mean over seeds); returns the file names written.
pub fn draw_plots(
    out: &Path,
    names: &[String],
    records: &[RunRecord],
    curve_prompts: usize,
) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    fn of<'a>(records: &'a [RunRecord], name: &'a str) -> impl Iterator<Item = &'a RunRecord> {
        records.iter().filter(move |r| r.objective == name)
    }
    let curves: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(colour, n)| Series {
            label: n.clone(),
            colour,
            points: mean_curve(&of(records, n).map(|r| &r.curve[..]).collect::<Vec<_>>()),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if !curves.is_empty() {
        let file = "judge_vs_step.png";
        let y = format!("judge score on {curve_prompts} held-out prompts (mean over seeds)");
        let title = "Judge score during training (update 0 = the base model)";
        line_plot(&out.join(file), title, "update", &y, &curves, None)?;
        written.push(file.to_string());
    }
    let flips: Vec<Series> = names
        .iter()
        .enumerate()
        .filter_map(|(colour, n)| {
            let runs: Vec<&[(usize, f64)]> =
                of(records, n).map(|r| &r.flip_rate[..]).filter(|f| !f.is_empty()).collect();
            (!runs.is_empty()).then(|| Series { label: n.clone(), colour, points: smooth(&mean_curve(&runs), 9) })
        })
        .collect();
    if !flips.is_empty() {
        let file = "flip_rate.png";
        let y = "fraction of samples with s = −1 (moving average of 9 updates, mean over seeds)";
        line_plot(&out.join(file), "Anchor-gate flip rate during training", "update", y, &flips, None)?;
        written.push(file.to_string());
    }
    Ok(written)
}

/// The Markdown page of a comparison: the command, its settings, the table, the plots and the runs that failed.
/// `sampler` describes how the judged samples were drawn (`DDIM 20 steps, cfg 5`).
pub fn markdown(
    command: &str,
    settings: &Value,
    sampler: &str,
    table: &str,
    wall: &str,
    plots: &[String],
    failed: &[String],
) -> String {
    let samples = match settings["eval_samples"].as_u64().unwrap_or(1) {
        1 => "one sample each".to_string(),
        k => format!("{k} samples each, with their own noise"),
    };
    let per = if samples.starts_with("one") { "per prompt" } else { "per sample" };
    let mut md = format!(
        "# seppoc compare\n\nCommand: `{command}`\n\nSettings: `{settings}`\n\nWall time: {wall}.\n\n{table}\n\
         Each cell is the mean ± sample standard deviation over seeds of the trained model's judge numbers on the \
         same held-out prompts ({samples}, {sampler}, seed 0). Win rate: {per}, 1 if the trained model \
         scores higher than the base model, ½ if equal. Flip rate: the fraction of samples whose anchor gate chose \
         s = −1, averaged over the last quarter of the updates.\n"
    );
    for p in plots {
        md.push_str(&format!("\n![{p}]({p})\n"));
    }
    if !failed.is_empty() {
        md.push_str("\n## Jobs without a result\n\n");
        for f in failed {
            md.push_str(&format!("- {f}\n"));
        }
    }
    md
}
