//! What `seppoc run` judges: the score curve during training (`--eval-every`, image or video) and the final
//! base-vs-trained report of image models; `delta_table` is shared with the video report.

use super::engine::{write_json, JsonlWriter};
use crate::data::Image;
use crate::device::Backend;
use crate::eval::model_eval::{evaluate_model, evaluate_video_model, EvalConfig};
use crate::eval::{save_grid_with, GridConfig, Report};
use crate::model::Dit;
use crate::sampler::SamplerConfig;
use anyhow::Context;
use serde_json::json;
use std::path::Path;

/// The held-out prompts a curve judges: still images or clips, with the matching judge.
pub(super) enum CurvePrompts {
    /// Image prompts, judged by the image judge.
    Image(Vec<crate::data::Prompt>),
    /// Video prompts, judged by the video judge.
    Video(Vec<crate::data::VideoPrompt>),
}

/// The judge score over training (`--eval-every`): one `curve.jsonl` line per evaluated step.
pub(super) struct Curve<'a> {
    pub(super) every: usize,
    pub(super) prompts: CurvePrompts,
    pub(super) vocab: &'a crate::data::Vocab,
    pub(super) schedule: &'a crate::model::NoiseSchedule,
    pub(super) out: JsonlWriter,
    pub(super) last: Option<usize>,
}

impl Curve<'_> {
    pub(super) fn due(&self, step: usize) -> bool {
        self.every > 0 && step.is_multiple_of(self.every)
    }

    /// Judges `model` at `step` when evaluation is on (callers pass step 0 and due steps).
    pub(super) fn point<D: Backend>(&mut self, step: usize, model: &Dit<D>) -> anyhow::Result<()> {
        if self.every == 0 {
            return Ok(());
        }
        self.write(step, model)
    }

    /// The last step always gets a point, due or not.
    pub(super) fn finish<D: Backend>(&mut self, step: usize, model: &Dit<D>) -> anyhow::Result<()> {
        if self.every == 0 || self.last == Some(step) {
            return Ok(());
        }
        self.write(step, model)
    }

    fn write<D: Backend>(&mut self, step: usize, model: &Dit<D>) -> anyhow::Result<()> {
        let cfg = EvalConfig::new(SamplerConfig::ddim(20, 5.0), 0);
        let line = match &self.prompts {
            CurvePrompts::Image(prompts) => {
                let r = evaluate_model(model, self.schedule, self.vocab, prompts, &cfg, |_, _| {})?.report;
                json!({
                    "step": step, "n_prompts": prompts.len(), "score": r.mean_score, "quality": r.mean_quality,
                    "colour_acc": r.colour_acc, "shape_acc": r.shape_acc, "position_acc": r.position_acc,
                    "all_correct": r.all_correct,
                })
            }
            CurvePrompts::Video(prompts) => {
                let r = evaluate_video_model(model, self.schedule, self.vocab, prompts, &cfg, |_, _| {})?.report;
                json!({
                    "step": step, "n_prompts": prompts.len(), "score": r.mean_score, "quality": r.mean_quality,
                    "colour_acc": r.colour_acc, "shape_acc": r.shape_acc, "motion_acc": r.motion_acc,
                    "all_correct": r.all_correct, "smoothness": r.mean_smoothness,
                    "consistency": r.mean_consistency,
                })
            }
        };
        self.last = Some(step);
        self.out.write(&line)
    }
}

/// What the final evaluation needs from the base model's world.
pub(super) struct EvalInputs<'a> {
    pub(super) heldout: &'a [crate::data::Prompt],
    pub(super) vocab: &'a crate::data::Vocab,
    pub(super) schedule: &'a crate::model::NoiseSchedule,
    pub(super) n_prompts: usize,
}

/// Judges base and trained model on the same held-out prompts, sampler and seed; prints and writes the table.
pub(super) fn evaluate<D: Backend>(
    e: &EvalInputs,
    base: &Dit<D>,
    trained: &Dit<D>,
    out: &Path,
    train_s: f64,
) -> anyhow::Result<()> {
    let (schedule, vocab) = (e.schedule, e.vocab);
    let prompts: Vec<_> = e.heldout.iter().take(e.n_prompts).cloned().collect();
    let cfg = EvalConfig::new(SamplerConfig::ddim(20, 5.0), 0);
    let before = evaluate_model(base, schedule, vocab, &prompts, &cfg, |_, _| {})?;
    let after = evaluate_model(trained, schedule, vocab, &prompts, &cfg, |_, _| {})?;
    print!("{}", comparison_table(&before.report, &after.report, prompts.len()));
    let wins = before.judgements.iter().zip(&after.judgements).filter(|(b, a)| a.score > b.score).count();
    let ties = before.judgements.iter().zip(&after.judgements).filter(|(b, a)| a.score == b.score).count();
    println!(
        "win rate vs base: {:.3} ({wins} better, {ties} equal of {})",
        wins as f64 / prompts.len().max(1) as f64,
        prompts.len()
    );
    write_json(
        &out.join("report.json"),
        &json!({
            "prompts": "heldout", "n_prompts": prompts.len(), "eval": cfg, "base": before.report, "trained": after.report,
            "win_rate": wins as f64 / prompts.len().max(1) as f64, "train_seconds": train_s,
        }),
    )?;
    let n = prompts.len().min(8);
    let mut grid: Vec<Image> = before.images[..n].to_vec();
    grid.extend_from_slice(&after.images[..n]);
    let grid_path = out.join("grid.png");
    let layout = GridConfig { cols: n.max(1), spacing: 2, scale: 4, background: [128, 128, 128] };
    save_grid_with(&grid, &layout, &grid_path).with_context(|| format!("cannot write `{}`", grid_path.display()))?;
    println!(
        "report: {}  (top row base, bottom row trained: {})",
        out.join("report.json").display(),
        grid_path.display()
    );
    Ok(())
}

fn comparison_table(base: &Report, trained: &Report, n: usize) -> String {
    delta_table(
        &format!("judge on {n} held-out prompts (DDIM 20 steps, cfg 5, seed 0)"),
        &[
            ("colour accuracy", base.colour_acc, trained.colour_acc),
            ("shape accuracy", base.shape_acc, trained.shape_acc),
            ("position accuracy", base.position_acc, trained.position_acc),
            ("all attributes correct", base.all_correct, trained.all_correct),
            ("mean quality", base.mean_quality, trained.mean_quality),
            ("mean judge score", base.mean_score, trained.mean_score),
        ],
    )
}

/// A titled base / trained / delta table, one row per `(name, base, trained)`.
pub(super) fn delta_table(title: &str, rows: &[(&str, f32, f32)]) -> String {
    let mut s = format!("{title}\n{:<24} {:>8} {:>8} {:>8}\n", "", "base", "trained", "delta");
    for (name, b, t) in rows {
        s.push_str(&format!("{name:<24} {b:>8.3} {t:>8.3} {:>+8.3}\n", t - b));
    }
    s
}
