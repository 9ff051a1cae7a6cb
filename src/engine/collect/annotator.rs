//! The simulated annotator: chained comparisons under Bradley–Terry with ties, and the bisection that
//! calibrates its temperature and tie band.

use super::{Calibration, CollectSettings};
use crate::data::Image;

/// One chain's candidates: `(generator index, image, judge score)` per slot.
pub(super) type Chain = Vec<(usize, Image, f64)>;

/// The annotator's fixed random draws for one comparison: the pick and the order of the two images.
#[derive(Clone, Copy)]
pub(super) struct Draw {
    pub(super) pick: f64,
    pub(super) swap: bool,
}

/// One simulated comparison: indices into the chain, the first image's label.
pub(super) struct Row {
    pub(super) slots: [usize; 2],
    pub(super) label_0: f64,
}

/// Runs the chains with temperature `t` and band `b`.
pub(super) fn simulate(chains: &[Chain], draws: &[Vec<Draw>], t: f64, b: f64) -> Vec<Vec<Row>> {
    chains
        .iter()
        .zip(draws)
        .map(|(chain, draws)| {
            let mut rows = Vec::with_capacity(draws.len());
            let mut incumbent = 0;
            for (k, d) in draws.iter().enumerate() {
                let challenger = k + 1;
                let pick = d.pick.clamp(1e-12, 1.0 - 1e-12);
                let perceived = chain[incumbent].2 - chain[challenger].2 - t * (pick / (1.0 - pick)).ln();
                let winner = if perceived.abs() < b {
                    None
                } else if perceived > 0.0 {
                    Some(incumbent)
                } else {
                    Some(challenger)
                };
                let slots = if d.swap { [challenger, incumbent] } else { [incumbent, challenger] };
                let label_0 = match winner {
                    None => 0.5,
                    Some(w) if w == slots[0] => 1.0,
                    Some(_) => 0.0,
                };
                rows.push(Row { slots, label_0 });
                incumbent = winner.unwrap_or(incumbent);
            }
            rows
        })
        .collect()
}

/// `(agreement, tie share, decided, ties)` of simulated chains.
fn shares(chains: &[Chain], rows: &[Vec<Row>]) -> (f64, f64, usize, usize) {
    let (mut agree, mut scored, mut ties, mut all) = (0usize, 0usize, 0usize, 0usize);
    for (chain, rows) in chains.iter().zip(rows) {
        for r in rows {
            all += 1;
            if r.label_0 == 0.5 {
                ties += 1;
                continue;
            }
            let (s0, s1) = (chain[r.slots[0]].2, chain[r.slots[1]].2);
            if s0 != s1 {
                scored += 1;
                agree += usize::from((r.label_0 == 1.0) == (s0 > s1));
            }
        }
    }
    (agree as f64 / scored.max(1) as f64, ties as f64 / all.max(1) as f64, all - ties, ties)
}

/// Solves the tie band and the temperature by bisection (alternating, three rounds).
pub(super) fn calibrate(chains: &[Chain], draws: &[Vec<Draw>], s: &CollectSettings) -> Calibration {
    let max_diff = chains
        .iter()
        .flat_map(|c| c.iter().map(|x| x.2))
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = (max_diff.1 - max_diff.0).max(1e-9);
    let (mut t, mut b) = (span / 10.0, 0.0);
    for _ in 0..3 {
        let (mut lo, mut hi) = (0.0, span);
        for _ in 0..50 {
            let mid = 0.5 * (lo + hi);
            let (_, tie, _, _) = shares(chains, &simulate(chains, draws, t, mid));
            if tie < s.tie_share {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        b = if s.tie_share == 0.0 { 0.0 } else { 0.5 * (lo + hi) };
        let (mut lo, mut hi) = (1e-6 * span, 100.0 * span);
        for _ in 0..60 {
            let mid = (lo * hi).sqrt();
            let (agree, _, _, _) = shares(chains, &simulate(chains, draws, mid, b));
            if agree > s.agreement {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t = (lo * hi).sqrt();
    }
    let (agreement, tie_share, decided, ties) = shares(chains, &simulate(chains, draws, t, b));
    Calibration { temperature: t, tie_band: b, agreement, tie_share, decided, ties }
}
