//! The end of `seppoc run` for a video base model: base and trained judged by the video judge on the same
//! held-out video prompts, sampler and seed.

use super::engine::write_json;
use super::load::LoadedVideoModel;
use super::run_eval::delta_table;
use super::sample::write_clips;
use crate::data::Image;
use crate::device::Backend;
use crate::eval::{evaluate_video_model, EvalConfig, GridConfig, VideoReport};
use crate::model::Dit;
use crate::sampler::SamplerConfig;
use serde_json::json;
use std::path::Path;

/// Judges the base (`initial`: `base`'s model on the run's device) and the trained clip model on the first
/// `n_prompts` held-out prompts; prints the table and the win rate, writes `report.json` and `grid.png` (a frame
/// strip: base clips first, then trained).
pub(crate) fn evaluate<D: Backend>(
    base: &LoadedVideoModel,
    n_prompts: usize,
    initial: &Dit<D>,
    trained: &Dit<D>,
    out: &Path,
    train_s: f64,
) -> anyhow::Result<()> {
    let (schedule, vocab) = (&base.schedule, &base.world.vocab);
    let prompts: Vec<_> = base.world.heldout.iter().take(n_prompts).copied().collect();
    let cfg = EvalConfig::new(SamplerConfig::ddim(20, 5.0), 0);
    let before = evaluate_video_model(initial, schedule, vocab, &prompts, &cfg, |_, _| {})?;
    let after = evaluate_video_model(trained, schedule, vocab, &prompts, &cfg, |_, _| {})?;
    print!("{}", comparison_table(&before.report, &after.report, prompts.len()));
    let pairs = || before.judgements.iter().zip(&after.judgements);
    let wins = pairs().filter(|(b, a)| a.score > b.score).count();
    let ties = pairs().filter(|(b, a)| a.score == b.score).count();
    let win_rate = wins as f64 / prompts.len().max(1) as f64;
    println!("win rate vs base: {win_rate:.3} ({wins} better, {ties} equal of {})", prompts.len());
    write_json(
        &out.join("report.json"),
        &json!({
            "world": "video", "prompts": "heldout", "n_prompts": prompts.len(), "eval": cfg, "base": before.report,
            "trained": after.report, "win_rate": win_rate, "train_seconds": train_s,
        }),
    )?;
    let n = prompts.len().min(8);
    let clips: Vec<Image> = before.clips[..n].iter().chain(&after.clips[..n]).cloned().collect();
    let grid_path = out.join("grid.png");
    write_clips(&clips, &GridConfig { cols: 1, spacing: 2, scale: 4, background: [128, 128, 128] }, &grid_path)?;
    println!(
        "report: {}  (frame strip: {n} base clips, then the same {n} prompts trained: {})",
        out.join("report.json").display(),
        grid_path.display()
    );
    Ok(())
}

/// The base-vs-trained table of the video metrics.
fn comparison_table(base: &VideoReport, trained: &VideoReport, n: usize) -> String {
    delta_table(
        &format!("video judge on {n} held-out prompts (DDIM 20 steps, cfg 5, seed 0)"),
        &[
            ("colour accuracy", base.colour_acc, trained.colour_acc),
            ("shape accuracy", base.shape_acc, trained.shape_acc),
            ("motion accuracy", base.motion_acc, trained.motion_acc),
            ("all attributes correct", base.all_correct, trained.all_correct),
            ("mean smoothness", base.mean_smoothness, trained.mean_smoothness),
            ("mean consistency", base.mean_consistency, trained.mean_consistency),
            ("mean quality", base.mean_quality, trained.mean_quality),
            ("mean judge score", base.mean_score, trained.mean_score),
        ],
    )
}
