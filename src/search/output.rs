//! A search's output directory: `archive.jsonl` (every candidate), `counts.json`, `leaderboard.md`,
//! `progress.png` (the best validation score at each stage against evaluations spent) and `top/` (the best
//! discovered candidates as `.obj` files whose header says where they came from). Every file is written
//! atomically and rewritten whole after each evaluation.

use super::{Record, Search};
use crate::compare::plot::{line_plot, Series};
use crate::engine::files::{write_atomic, write_json};
use std::fmt::Write as _;

/// Candidates written to `top/`.
pub const TOP: usize = 5;

/// Ranking: furthest stage first, then the score there (a failed or untrained candidate last), then id.
pub fn ranked(records: &[Record]) -> Vec<&Record> {
    let mut r: Vec<&Record> = records.iter().filter(|r| r.score().is_some()).collect();
    r.sort_by(|a, b| {
        b.stage()
            .cmp(&a.stage())
            .then(b.score().partial_cmp(&a.score()).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.id.cmp(&b.id))
    });
    r
}

/// Writes every output file of the search.
pub fn write_outputs(search: &Search<'_>) -> anyhow::Result<()> {
    let out = search.out();
    let mut lines = String::new();
    for r in &search.records {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    write_atomic(&out.join("archive.jsonl"), lines.as_bytes())?;
    write_json(
        &out.join("counts.json"),
        &serde_json::json!({ "evaluations": search.spent, "candidates": search.records.len(), "counts": search.counts }),
    )?;
    write_atomic(&out.join("leaderboard.md"), leaderboard(search).as_bytes())?;
    plot(search)?;
    top_files(search)
}

fn score_text(r: &Record) -> String {
    let o = &r.stages[r.stage() - 1].outcome;
    match o.score() {
        Some(s) if o.deltas.len() > 1 => format!("{s:+.4} ± {:.4} ({} seeds)", o.sd(), o.deltas.len()),
        Some(s) => format!("{s:+.4}"),
        None => "failed".into(),
    }
}

fn win_text(r: &Record) -> String {
    let o = &r.stages[r.stage() - 1].outcome;
    if o.win_rates.is_empty() {
        return "-".into();
    }
    format!("{:.3}", o.win_rates.iter().sum::<f64>() / o.win_rates.len() as f64)
}

/// The leaderboard page.
pub fn leaderboard(search: &Search<'_>) -> String {
    let s = &search.settings;
    let mut m = String::from("# Search leaderboard\n\n");
    let stages: Vec<String> = s
        .stages
        .iter()
        .enumerate()
        .map(|(k, st)| {
            format!(
                "stage {}: {} updates × {} seed{}, {} validation prompts × {} sample{}",
                k + 1,
                st.steps,
                st.seeds,
                if st.seeds == 1 { "" } else { "s" },
                st.prompts,
                st.samples,
                if st.samples == 1 { "" } else { "s" }
            )
        })
        .collect();
    let _ = writeln!(
        m,
        "Data `{}`, search seed {}, {} evaluations, {} candidates. Scores are validation scores only: the mean \
         judge-score difference trained − base on the same validation prompts and sampler noise (validation \
         prompts: {} of the world's training prompts, none held out), averaged over training seeds (± their \
         standard deviation). Ranked by the furthest stage reached, then the score there.\n",
        s.data_kind,
        s.seed,
        search.spent,
        search.records.len(),
        search.funnel().validation().len()
    );
    for st in &stages {
        let _ = writeln!(m, "- {st}");
    }
    m.push_str("\n## Candidates\n\n| rank | candidate | origin | stage | validation delta | win rate | stage-1 delta | mutation |\n|---:|---|---|---:|---:|---:|---:|---|\n");
    for (i, r) in ranked(&search.records).iter().take(30).enumerate() {
        let _ = writeln!(
            m,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} |",
            i + 1,
            r.name,
            r.origin,
            r.stage(),
            score_text(r),
            win_text(r),
            r.score_at(1).map_or("-".into(), |v| format!("{v:+.4}")),
            r.mutation.replace('|', "\\|")
        );
    }
    m.push_str(
        "\n## Baselines, tuned\n\nEach shipped objective with its main parameter at every factor the search gives a \
         constant (×0.25, ×0.5, ×1, ×2, ×4); the row is its best setting by the same ranking.\n\n\
         | objective | best factor | stage | validation delta | win rate | rank overall |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let ranks = ranked(&search.records);
    let mut seen = std::collections::BTreeSet::new();
    for (pos, r) in ranks.iter().enumerate() {
        if let Some((name, factor)) = &r.baseline {
            if seen.insert(name.clone()) {
                let _ = writeln!(
                    m,
                    "| `{name}` | ×{factor} | {} | {} | {} | {} |",
                    r.stage(),
                    score_text(r),
                    win_text(r),
                    pos + 1
                );
            }
        }
    }
    let c = &search.counts;
    let _ = writeln!(
        m,
        "\n## What was dropped\n\n{} children proposed; {} failed the checker; {} candidates rejected before \
         training.\n",
        c.proposed,
        c.check_failed.values().sum::<usize>(),
        c.rejected.values().sum::<usize>()
    );
    m.push_str("| checker diagnostic | children |\n|---|---:|\n");
    for (code, n) in &c.check_failed {
        let _ = writeln!(m, "| {code} | {n} |");
    }
    m.push_str("\n| rejection | candidates |\n|---|---:|\n");
    for (code, n) in &c.rejected {
        let _ = writeln!(m, "| {code} | {n} |");
    }
    m.push_str("\n| operator | proposed | passed the checker |\n|---|---:|---:|\n");
    for (op, (n, ok)) in &c.operators {
        let _ = writeln!(m, "| {op} | {n} | {ok} |");
    }
    let failed = search.records.iter().filter(|r| r.stages.iter().any(|s| s.outcome.failed.is_some())).count();
    let _ = writeln!(m, "\n{failed} trained candidates stopped on a non-finite loss or gradient.");
    m
}

/// `progress.png`: per stage, the best score so far against evaluations spent.
fn plot(search: &Search<'_>) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for k in 1..=search.settings.stages.len() {
        let mut events: Vec<(usize, f64)> = search
            .records
            .iter()
            .filter_map(|r| r.stages.get(k - 1).and_then(|s| s.outcome.score().map(|v| (s.index, v))))
            .collect();
        events.sort_by_key(|e| e.0);
        let mut best = f64::NEG_INFINITY;
        let points: Vec<(f64, f64)> = events
            .into_iter()
            .map(|(i, v)| {
                best = best.max(v);
                (i as f64, best)
            })
            .collect();
        if !points.is_empty() {
            series.push(Series { label: format!("best at stage {k}"), colour: k - 1, points });
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    line_plot(
        &search.out().join("progress.png"),
        "seppoc search: best validation score",
        "evaluations spent",
        "judge score delta vs base (validation)",
        &series,
        Some(("base", 0.0)),
    )
}

/// `top/NN-NAME.obj`: the best discovered (non-baseline) candidates, each with a header comment saying where
/// it came from.
fn top_files(search: &Search<'_>) -> anyhow::Result<()> {
    let dir = search.out().join("top");
    std::fs::create_dir_all(&dir)?;
    // Only files this function writes are removed (a previous top list).
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let p = entry.path();
        let ours = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.len() > 3 && n.as_bytes()[..2].iter().all(u8::is_ascii_digit) && &n[2..3] == "-" && n.ends_with(".obj")
        });
        if ours {
            std::fs::remove_file(&p)?;
        }
    }
    let s = &search.settings;
    for (i, r) in ranked(&search.records).into_iter().filter(|r| r.baseline.is_none()).take(TOP).enumerate() {
        let parents: Vec<String> = r.parents.iter().map(|p| search.records[*p].name.clone()).collect();
        let scores: Vec<String> = r
            .stages
            .iter()
            .enumerate()
            .map(|(k, st)| match st.outcome.score() {
                Some(v) => format!("stage {} {v:+.4}", k + 1),
                None => format!("stage {} failed", k + 1),
            })
            .collect();
        let header = vec![
            format!(
                "Found by `seppoc search` (data {}, search seed {}), candidate {} of generation {}.",
                s.data_kind, s.seed, r.id, r.generation
            ),
            format!(
                "Origin: {}; parents: {}; mutation: {}.",
                r.origin,
                if parents.is_empty() { "none".to_string() } else { parents.join(", ") },
                r.mutation
            ),
            format!("Validation judge-score delta vs base: {} (validation prompts only).", scores.join(", ")),
            format!("Canonical hash {}.", r.hash),
        ];
        let source = crate::source::SourceFile::new(&r.name, &r.source);
        let (file, _) = crate::syntax::parse(&source);
        let (text, _) = super::propose::finish(file, &r.name, &header)
            .map_err(|_| anyhow::anyhow!("archived candidate `{}` no longer checks", r.name))?;
        write_atomic(&dir.join(format!("{:02}-{}.obj", i + 1, r.name)), text.as_bytes())?;
    }
    Ok(())
}
