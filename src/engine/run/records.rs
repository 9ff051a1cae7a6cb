//! What a run writes and reports: one line per update in `metrics.jsonl`, the final table's interval in
//! `report.json`, and the [`RunOutcome`] a finished run returns.

use super::settings::f32_value;
use crate::engine::eval::Comparison;
use crate::trainer::StepReport;
use serde_json::{json, Map, Value};

/// The judge-score difference with its bootstrap interval, as stored in `report.json`.
pub(super) fn delta_json(cmp: &Comparison) -> Value {
    let (mean, lo, hi) = cmp.delta_interval(DELTA_RESAMPLES, 0);
    json!({ "mean": mean, "ci95": [lo, hi], "resamples": DELTA_RESAMPLES, "over": "prompts" })
}

/// Bootstrap resamples of the final table's interval.
pub const DELTA_RESAMPLES: usize = 2000;

/// One metrics line. Wall time is left out on purpose: the same seed must give bitwise the same file.
pub(super) fn step_json(r: &StepReport) -> Value {
    let logs: Map<String, Value> = r.logs.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let leaves: Map<String, Value> = r.leaf_means.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    let refs: Map<String, Value> = r.references.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
    json!({ "step": r.step, "loss": r.loss, "logs": logs, "e": leaves, "grad_norm": r.grad_norm, "lr": f32_value(r.lr),
            "nfe": r.nfe, "ref": refs, "snapshot": r.snapshot })
}

/// What a finished run reports.
pub struct RunOutcome {
    /// The objective's name.
    pub objective: String,
    /// The step a resumed run continued from.
    pub resumed_at: Option<usize>,
    /// Updates done in total.
    pub steps: usize,
    /// Wall time of the training loop in seconds.
    pub train_s: f64,
    /// The trained model.
    pub model_path: std::path::PathBuf,
    /// Wall time per phase of the training steps this process ran.
    pub profile: crate::trainer::Profile,
    /// Base and trained model judged side by side (absent with `eval_prompts` 0).
    pub comparison: Option<crate::engine::eval::Comparison>,
    /// `report.json` and `grid.png`, when judged.
    pub report: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Samples per side in the grid.
    pub grid_samples: usize,
}
