//! What a search stores: its settings (`search.json`), its candidates (`archive.jsonl`, one [`Record`] per
//! line) and the counts of what was dropped, and the opening of an output directory that may hold an earlier
//! sitting of the same search.

use super::funnel::{Outcome, Stage, Training};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything that determines a search's candidates and scores (stored in `search.json`; another `--out`'s
/// settings are refused). The budget and `--jobs` are not part of it: they change how far a search goes, not
/// what it finds on the way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// `winners` or `pairs` (or `labelled`).
    pub data_kind: String,
    /// The seed objectives: (file name, SHA-256 of its canonical text).
    pub seeds: Vec<(String, String)>,
    /// Seed of the proposals.
    pub seed: u64,
    /// Candidates that pass the checker proposed per generation.
    pub population: usize,
    /// Random trees in generation 0.
    pub random: usize,
    /// Promotion rate: the top 1/eta of a stage's results go to the next stage.
    pub eta: usize,
    /// The funnel's stages, shortest first.
    pub stages: Vec<Stage>,
    /// Validation prompts drawn from the training prompts.
    pub validation: usize,
    /// Training settings shared by every candidate.
    pub training: Training,
    /// Base model (`--model`), `None` for the shipped one.
    pub model: Option<String>,
    /// Preference data (`--data`), `None` for the base model's default.
    pub data: Option<String>,
}

/// How far this invocation may go.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Total evaluations (one candidate at one stage, all its seeds), counting those of earlier sittings.
    pub evaluations: Option<usize>,
    /// Wall-clock minutes of this sitting.
    pub minutes: Option<f64>,
}

/// One candidate at one stage, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    /// The evaluation's number in the search (1-based), for the plot.
    pub index: usize,
    /// The scores.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A candidate, as `archive.jsonl` stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its number.
    pub id: usize,
    /// Its objective name (`c00042`, or the baseline's name and factor).
    pub name: String,
    /// The generation that proposed it.
    pub generation: usize,
    /// `baseline`, `random` or `proposal`.
    pub origin: String,
    /// For a baseline: the shipped objective and the factor on its main parameter.
    pub baseline: Option<(String, f64)>,
    /// Parent ids.
    pub parents: Vec<usize>,
    /// The operator and what it changed.
    pub mutation: String,
    /// [`super::propose::canonical_hash`].
    pub hash: String,
    /// The canonical text.
    pub source: String,
    /// Why it was rejected before training (`code: reason`).
    pub rejection: Option<String>,
    /// Results by stage (index 0 is stage 1).
    pub stages: Vec<StageResult>,
}

impl Record {
    /// The furthest stage reached (0: not trained).
    pub fn stage(&self) -> usize {
        self.stages.len()
    }

    /// The score at the furthest stage.
    pub fn score(&self) -> Option<f64> {
        self.stages.last().and_then(|s| s.outcome.score())
    }

    /// The score at stage `k` (1-based).
    pub fn score_at(&self, k: usize) -> Option<f64> {
        self.stages.get(k.checked_sub(1)?).and_then(|s| s.outcome.score())
    }
}

/// Counts of what never became a candidate or was rejected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Children the operators produced.
    pub proposed: usize,
    /// Children that did not check, by diagnostic code.
    pub check_failed: BTreeMap<String, usize>,
    /// Candidates rejected before training, by reason code.
    pub rejected: BTreeMap<String, usize>,
    /// Proposals per operator, and how many of them passed the checker.
    pub operators: BTreeMap<String, (usize, usize)>,
}

/// Why a search stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Stopped {
    /// The evaluation budget is spent.
    Evaluations,
    /// The minutes of this sitting are spent.
    Minutes,
}

/// The settings' identity file, `DIR/search.json`.
pub(super) fn settings_path(out: &Path) -> PathBuf {
    out.join("search.json")
}

/// Refuses an output directory that holds another search (naming each differing setting), or files of
/// something that is not a search; returns the archived candidates of the same search, if any.
pub fn open_out(out: &Path, settings: &SearchSettings) -> anyhow::Result<Vec<Record>> {
    let path = settings_path(out);
    if !path.exists() {
        if out.join("archive.jsonl").exists() {
            bail!("`{}` holds an `archive.jsonl` but no `search.json`; pass another --out", out.display());
        }
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let saved: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))?;
    let mine = serde_json::to_value(settings)?;
    if saved["settings"] != mine {
        let mut diffs = Vec::new();
        if let (Some(a), Some(b)) = (saved["settings"].as_object(), mine.as_object()) {
            for (k, v) in b {
                let there = a.get(k).cloned().unwrap_or(serde_json::Value::Null);
                if &there != v {
                    diffs.push(format!("{k}: {there} there, {v} here"));
                }
            }
        }
        bail!(
            "`{}` holds a search with other settings ({}); pass another --out, or the same settings to resume it",
            out.display(),
            if diffs.is_empty() { "unreadable settings".to_string() } else { diffs.join("; ") }
        );
    }
    let archive = out.join("archive.jsonl");
    let Ok(text) = std::fs::read_to_string(&archive) else { return Ok(Vec::new()) };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("`{}` line {}: not a candidate record", archive.display(), i + 1))
        })
        .collect()
}
