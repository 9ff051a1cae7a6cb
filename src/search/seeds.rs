//! The seed objectives of a search (the given files or the shipped ones of a data kind), their main parameter
//! and its grid, and the training settings every candidate shares.

use super::funnel::Training;
use super::propose;
use crate::check::{Checked, DataKind};
use crate::engine::run::{field_needs, RunSettings};
use crate::ir::lower;
use crate::source::SourceFile;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Reads seed objective files; an error names a file that does not check.
pub fn read_seeds(files: &[PathBuf]) -> anyhow::Result<Vec<(String, Checked)>> {
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read `{}`", f.display()))?;
        let (source, diag) = SourceFile::from_bytes(&f.display().to_string(), &bytes);
        if let Some(d) = diag {
            bail!("`{}`: {}", f.display(), d.message);
        }
        let checked = crate::frontend::frontend(&source).map_err(|d| {
            let codes: Vec<String> = d.iter().map(|d| format!("{:?} {}", d.code, d.message)).collect();
            anyhow::anyhow!("seed objective `{}` does not check: {}", f.display(), codes.join("; "))
        })?;
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        out.push((stem, checked));
    }
    Ok(out)
}

/// The shipped objectives of a data kind that train on the preference data as it is (no reward or weight
/// columns), sorted by name.
pub fn shipped_seeds(dir: &Path, kind: DataKind) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list the shipped objectives in `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "obj"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let (_, checked) = read_seeds(std::slice::from_ref(&f))?.remove(0);
        let needs = field_needs(&lower(&checked));
        if checked.data == kind && !needs.reward && !needs.weight {
            out.push(f);
        }
    }
    if out.is_empty() {
        bail!("`{}` holds no objective with `data {}`", dir.display(), kind.word());
    }
    Ok(out)
}

/// Parses a data kind word.
pub fn data_kind(word: &str) -> anyhow::Result<DataKind> {
    [DataKind::Winners, DataKind::Pairs, DataKind::Labelled]
        .into_iter()
        .find(|k| k.word() == word)
        .ok_or_else(|| anyhow::anyhow!("unknown data kind `{word}`: winners, pairs or labelled"))
}

/// The main parameter of an objective: its first real parameter (β in every shipped preference objective).
pub fn main_param(checked: &Checked) -> Option<String> {
    checked.params.iter().find(|p| !p.integer).map(|p| p.name.clone())
}

/// Multiplies a parameter's default by `factor` in the tree; false when it has no literal default.
pub(super) fn set_param(file: &mut crate::syntax::ast::File, param: &str, factor: f64) -> bool {
    use crate::syntax::ast::{ExprKind, StmtKind};
    for st in &mut file.stmts {
        if let StmtKind::Param { name, default, .. } = &mut st.kind {
            if name.name == param {
                let v = match default.kind {
                    ExprKind::Real(v) => v,
                    ExprKind::Int(v) => v as f64,
                    _ => return false,
                };
                default.kind = ExprKind::Real(propose::round4(v * factor));
                return true;
            }
        }
    }
    false
}

/// The settings of a search given on the command line, with `run` naming the model and data.
pub fn default_training(run: &RunSettings) -> Training {
    Training { batch: run.batch, lr: run.lr, warmup: run.warmup, max_grad_norm: run.max_grad_norm }
}
