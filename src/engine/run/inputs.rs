//! What a run reads besides its settings: a run directory's `run.json` and objective (for a resume), and the
//! preference data, what scores an online objective's samples, and why a folder holding another run is refused.

use super::RunSettings;
use crate::check::Checked;
use crate::engine::open::Opened;
use crate::engine::reward::sample_scorer;
use crate::engine::stop::shell_quote;
use crate::ir::{lower, Bound};
use crate::syntax;
use crate::trainer::SampleScorer;
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

/// The scorer of generated samples an objective that reads `reward(x)` of a `sample(...)` needs (`--reward`),
/// or `None` for one that reads none.
pub(super) fn sample_scorer_for(
    objective: &ObjectiveRun,
    settings: &RunSettings,
    base: &Opened,
) -> anyhow::Result<Option<Box<dyn SampleScorer>>> {
    let online = objective.obj.datums.iter().find(|d| d.is_online_reward());
    match (online, settings.reward.as_deref()) {
        (None, _) => Ok(None),
        (Some(d), None) => bail!(
            "objective `{}` reads `{}`, the reward of its generated samples: give `--reward PATH` (a reward model \
             from `seppoc reward train`) or `--reward judge` (the exact judge; circular, since it also judges the run)",
            objective.obj.name,
            d.name()
        ),
        (Some(_), Some(spec)) => sample_scorer(spec, base).map(Some),
    }
}

/// The refusal of a fresh run into `out`, which holds the run `saved` (its `run.json`): what differs, by name.
pub(super) fn another_run(
    out: &std::path::Path,
    saved: &Value,
    objective: &ObjectiveRun,
    settings: &RunSettings,
) -> String {
    let mut diffs = Vec::new();
    let (name, there) = (&objective.obj.name, saved["objective"].as_str().unwrap_or("?"));
    if there != name {
        diffs.push(format!("objective `{there}` there, `{name}` here"));
    } else if saved["objective_sha256"].as_str() != Some(objective.sha256.as_str()) {
        diffs.push(format!("objective `{name}`'s text (see `{}`)", out.join("objective.obj").display()));
    }
    let (mine, theirs) = (objective.params_json(), saved["params"].as_object().cloned().unwrap_or_default());
    for key in mine.keys().chain(theirs.keys().filter(|k| !mine.contains_key(*k))) {
        let (a, b) = (theirs.get(key).cloned().unwrap_or(Value::Null), mine.get(key).cloned().unwrap_or(Value::Null));
        if a != b {
            diffs.push(format!("parameter {key} {a} there, {b} here"));
        }
    }
    let (setting_diffs, eval_only) = settings.differences(&saved["settings"]);
    let judged_only = diffs.is_empty() && eval_only;
    diffs.extend(setting_diffs);
    let mut m = format!(
        "`{}` holds another run ({}; see `{}`): pass another --out",
        out.display(),
        diffs.join("; "),
        out.join("run.json").display()
    );
    if judged_only {
        m.push_str(&format!(
            ", or judge that run with these settings: `seppoc eval --model {}`",
            shell_quote(&out.join("model.safetensors").display().to_string())
        ));
    }
    m
}
