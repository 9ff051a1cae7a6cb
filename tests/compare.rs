//! The comparison's statistics: spread over seeds, win rate, tail means, curve averaging and smoothing.

use seppoc::compare::{
    markdown_table, mean_curve, smooth, summarize, tail_mean, win_rate, Baseline, Metrics, RunRecord, Spread, Wins,
};

#[test]
fn spread_uses_the_sample_standard_deviation() {
    let s = Spread::of(&[1.0, 2.0, 3.0]);
    assert_eq!(s.mean, 2.0);
    assert!((s.sd - 1.0).abs() < 1e-12);
    assert_eq!(Spread::of(&[0.5]).sd, 0.0);
}

#[test]
fn win_rate_counts_ties_as_half() {
    assert_eq!(win_rate(&[0.1, 0.5, 0.3, 0.2], &[0.2, 0.5, 0.1, 0.9]), 2.5 / 4.0);
    assert!(win_rate(&[], &[]).is_nan());
    let w = Wins::count(&[0.1, 0.5, 0.3, 0.2], &[0.2, 0.5, 0.1, 0.9]);
    assert_eq!((w.better, w.equal, w.worse, w.total()), (2, 1, 1, 4));
    assert_eq!(w.rate(), 2.5 / 4.0);
}

#[test]
fn tail_mean_takes_the_last_quarter() {
    let pts: Vec<(usize, f64)> = (1..=8).map(|i| (i, i as f64)).collect();
    assert_eq!(tail_mean(&pts), Some(7.5));
    assert_eq!(tail_mean(&[(1, 0.25)]), Some(0.25));
    assert_eq!(tail_mean(&[]), None);
}

#[test]
fn mean_curve_keeps_the_steps_every_run_has() {
    let a = [(0, 1.0), (10, 2.0), (20, 3.0)];
    let b = [(0, 3.0), (10, 4.0)];
    assert_eq!(mean_curve(&[&a, &b]), vec![(0.0, 2.0), (10.0, 3.0)]);
}

#[test]
fn smooth_is_a_centred_moving_average() {
    let pts = [(0.0, 0.0), (1.0, 3.0), (2.0, 6.0)];
    assert_eq!(smooth(&pts, 3), vec![(0.0, 1.5), (1.0, 3.0), (2.0, 4.5)]);
}

fn record(objective: &str, seed: u64, score: f64, per_prompt: Vec<f64>, flips: Vec<(usize, f64)>) -> RunRecord {
    RunRecord {
        objective: objective.to_string(),
        seed,
        metrics: Metrics { score, ..Metrics::default() },
        per_prompt,
        curve: vec![],
        flip_rate: flips,
        seconds: 10.0,
    }
}

#[test]
fn summarize_groups_runs_by_objective_in_the_given_order() {
    let base = Baseline { metrics: Metrics::default(), per_prompt: vec![0.5, 0.5] };
    let runs = vec![
        record("b", 0, 0.2, vec![0.6, 0.4], vec![(1, 1.0), (2, 0.0)]),
        record("a", 0, 0.4, vec![0.6, 0.6], vec![]),
        record("b", 1, 0.4, vec![0.5, 0.9], vec![(1, 0.0), (2, 1.0)]),
    ];
    let names = vec!["a".to_string(), "b".to_string(), "missing".to_string()];
    let rows = summarize(&names, &base, &runs);
    assert_eq!(rows.len(), 2, "an objective without runs has no row");
    assert_eq!((rows[0].objective.as_str(), rows[1].objective.as_str()), ("a", "b"));
    assert_eq!(rows[1].seeds, vec![0, 1]);
    assert!((rows[1].score.mean - 0.3).abs() < 1e-12);
    assert_eq!(rows[0].win_rate.mean, 1.0);
    assert_eq!(rows[1].win_rate.mean, 0.625);
    assert!(rows[0].flip_rate_end.is_none());
    assert_eq!(rows[1].flip_rate_end.map(|s| s.mean), Some(0.5));
}

#[test]
fn one_seed_shows_no_spread() {
    let base = Baseline { metrics: Metrics { position: Some(0.5), ..Metrics::default() }, per_prompt: vec![0.5] };
    let one = vec![record("a", 0, 0.25, vec![0.5], vec![])];
    let mut two = one.clone();
    two.push(record("a", 1, 0.75, vec![0.6], vec![]));
    let names = vec!["a".to_string()];
    let table = markdown_table(&base, &summarize(&names, &base, &one));
    assert!(table.contains("| a | 1 | 0.2500 ± — | 0.5000 ± — |") && !table.contains("± 0.0000"), "{table}");
    assert!(table.contains("| colour accuracy | shape accuracy | position accuracy | all correct |"), "{table}");
    let table = markdown_table(&base, &summarize(&names, &base, &two));
    assert!(table.contains("| a | 2 | 0.5000 ± 0.3536 |"), "{table}");
}
