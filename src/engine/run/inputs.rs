//! What a run reads besides its settings: a run directory's `run.json` and objective (for a resume), and the
//! preference data.

use crate::check::Checked;
use crate::ir::{lower, Bound};
use crate::syntax;
use anyhow::{bail, Context};
use serde_json::Value;
use serde_json::{json, Map};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The objective file and the `--set` values of the run in `dir`, for a resume given no objective file:
/// `DIR/objective.obj` and the parameters recorded in `DIR/run.json`.
pub fn saved_objective(dir: &Path) -> anyhow::Result<(PathBuf, Vec<(String, String)>)> {
    let saved = read_run_json(dir)?;
    let file = dir.join("objective.obj");
    if !file.exists() {
        bail!("cannot resume `{}`: `{}` is missing", dir.display(), file.display());
    }
    Ok((file, saved_params(&saved)))
}

/// The parameter values of a `run.json` as `--set` pairs (shortest decimal form, which parses back exactly).
pub fn saved_params(saved: &Value) -> Vec<(String, String)> {
    let params = saved["params"].as_object().cloned().unwrap_or_default();
    params.into_iter().map(|(k, v)| (k, v.as_f64().map_or_else(|| v.to_string(), |x| format!("{x}")))).collect()
}

/// Reads `DIR/run.json`.
pub(super) fn read_run_json(dir: &Path) -> anyhow::Result<Value> {
    let path = dir.join("run.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot resume `{}`: no `run.json` there (is it a `seppoc run` output directory?)", dir.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))
}

/// Whether `dir` holds a saved training state to resume from.
pub(super) fn has_state(dir: &Path) -> bool {
    dir.join("state/state.json").exists() || dir.join("state.old/state.json").exists()
}

/// The files a run writes; a directory holding any of them without a matching `run.json` is another run's.
pub(super) const RUN_OUTPUTS: [&str; 8] = [
    "run.json",
    "objective.obj",
    "metrics.jsonl",
    "curve.jsonl",
    "checkpoint.safetensors",
    "model.safetensors",
    "report.json",
    "state",
];

/// The file of preference data that belongs to a base model, if any: `preferences.parquet` beside it.
pub fn default_data(base_model: &Path) -> Option<PathBuf> {
    let p = base_model.parent()?.join("preferences.parquet");
    p.exists().then_some(p)
}

/// A checked objective with its bound parameters, its canonical text and that text's SHA-256.
pub struct ObjectiveRun {
    /// The lowered objective with its parameter values.
    pub obj: Bound,
    /// The canonical text (`seppoc fmt`).
    pub canonical: String,
    /// Hex SHA-256 of `canonical`.
    pub sha256: String,
}

impl ObjectiveRun {
    /// Lowers a checked objective, binds its parameter values by name and records its text and hash.
    pub fn new(checked: &Checked, params: &[(String, f64)]) -> anyhow::Result<Self> {
        let canonical = syntax::format(&checked.file);
        let sha256 = format!("{:x}", Sha256::digest(canonical.as_bytes()));
        Ok(ObjectiveRun { obj: lower(checked).bind(params)?, canonical, sha256 })
    }

    pub(super) fn params_json(&self) -> Map<String, Value> {
        self.obj.named_values().map(|(n, v)| (n.to_string(), json!(v))).collect()
    }
}
