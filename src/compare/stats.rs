//! The comparison's statistics: records, spread over seeds, win rate, tail means, the summary table.

use serde::Serialize;

/// The judge's aggregate numbers for one evaluated model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Mean judge score.
    pub score: f64,
    /// Mean image-quality term.
    pub quality: f64,
    /// Colour accuracy over prompt objects.
    #[serde(rename = "colour_acc")]
    pub colour: f64,
    /// Shape accuracy over prompt objects.
    #[serde(rename = "shape_acc")]
    pub shape: f64,
    /// Position accuracy over objects with a position (image world; `None` for clips).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "position_acc")]
    pub position: Option<f64>,
    /// Motion accuracy over clips whose prompt gives a motion (video world; `None` for images).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "motion_acc")]
    pub motion: Option<f64>,
    /// Fraction of images with every attribute right.
    pub all_correct: f64,
}

/// The base model's evaluation every run is compared with (same prompts, sampler and seed).
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// Aggregate numbers.
    pub metrics: Metrics,
    /// Judge score per prompt, in prompt order.
    pub per_prompt: Vec<f64>,
}

/// One finished training run, read back from its directory.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// Objective name.
    pub objective: String,
    /// Seed of the run.
    pub seed: u64,
    /// The trained model's final evaluation.
    pub metrics: Metrics,
    /// Judge score per prompt (same prompts, in the same order, as the baseline).
    pub per_prompt: Vec<f64>,
    /// `(step, judge score)` during training (`curve.jsonl`); empty when it was not recorded.
    pub curve: Vec<(usize, f64)>,
    /// `(step, gate flip rate)` per update, for objectives that log `flip_rate`.
    pub flip_rate: Vec<(usize, f64)>,
    /// Wall-clock seconds of the training and evaluation.
    pub seconds: f64,
}

/// Mean and sample standard deviation (0 for a single value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (n − 1 in the denominator).
    pub sd: f64,
}

impl Spread {
    /// Mean and sample standard deviation of `xs` (NaN mean for an empty slice).
    pub fn of(xs: &[f64]) -> Spread {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let sd =
            if xs.len() < 2 { 0.0 } else { (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() };
        Spread { mean, sd }
    }
}

/// One objective's row of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Objective name.
    pub objective: String,
    /// Seeds that finished.
    pub seeds: Vec<u64>,
    /// Judge score.
    pub score: Spread,
    /// Image-quality term.
    pub quality: Spread,
    /// Colour accuracy.
    #[serde(rename = "colour_acc")]
    pub colour: Spread,
    /// Shape accuracy.
    #[serde(rename = "shape_acc")]
    pub shape: Spread,
    /// Position accuracy (image world).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "position_acc")]
    pub position: Option<Spread>,
    /// Motion accuracy (video world).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "motion_acc")]
    pub motion: Option<Spread>,
    /// All attributes correct.
    pub all_correct: Spread,
    /// Win rate against the base model: per prompt, 1 if the trained model's score is higher, ½ if equal.
    pub win_rate: Spread,
    /// Mean gate flip rate over the last quarter of the updates, for objectives that log `flip_rate`.
    pub flip_rate_end: Option<Spread>,
    /// Mean wall-clock seconds per run.
    pub seconds: f64,
}

/// How often a trained model's sample beats the base model's sample of the same prompt and noise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Wins {
    /// Samples the trained model scores higher on.
    pub better: usize,
    /// Samples both score the same on.
    pub equal: usize,
    /// Samples the trained model scores lower on.
    pub worse: usize,
}

impl Wins {
    /// Counts over the pairs `(base[i], trained[i])` (the shorter list decides how many).
    pub fn count(base: &[f64], trained: &[f64]) -> Wins {
        let mut w = Wins::default();
        for (b, t) in base.iter().zip(trained) {
            if t > b {
                w.better += 1;
            } else if t == b {
                w.equal += 1;
            } else {
                w.worse += 1;
            }
        }
        w
    }

    /// The number of pairs.
    pub fn total(&self) -> usize {
        self.better + self.equal + self.worse
    }

    /// The win rate, the one definition every command uses: a win counts 1, a tie ½, a loss 0, over the pairs
    /// (NaN for none). Ties are common here (the judge's score is a fraction of attributes times a quality), so
    /// counting them as losses would put a model identical to the base at 0 instead of ½.
    pub fn rate(&self) -> f64 {
        if self.total() == 0 {
            return f64::NAN;
        }
        (self.better as f64 + 0.5 * self.equal as f64) / self.total() as f64
    }
}

/// Win rate of `trained` over `base` on the same prompts ([`Wins::rate`]: wins count 1, ties ½).
pub fn win_rate(base: &[f64], trained: &[f64]) -> f64 {
    Wins::count(base, trained).rate()
}

/// Mean of the second component over the last quarter of the points (at least one point).
pub fn tail_mean(points: &[(usize, f64)]) -> Option<f64> {
    if points.is_empty() {
        return None;
    }
    let keep = points.len().div_ceil(4);
    let tail = &points[points.len() - keep..];
    Some(tail.iter().map(|p| p.1).sum::<f64>() / tail.len() as f64)
}

/// One row per objective, in the order of `objectives`; objectives without a finished run are left out.
pub fn summarize(objectives: &[String], base: &Baseline, runs: &[RunRecord]) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in objectives {
        let mine: Vec<&RunRecord> = runs.iter().filter(|r| &r.objective == name).collect();
        if mine.is_empty() {
            continue;
        }
        let over = |f: &dyn Fn(&RunRecord) -> f64| Spread::of(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
        // An attribute only some runs report (a mix of worlds) gets no spread.
        let over_some = |f: &dyn Fn(&RunRecord) -> Option<f64>| {
            mine.iter().map(|r| f(r)).collect::<Option<Vec<f64>>>().map(|xs| Spread::of(&xs))
        };
        let flips: Vec<f64> = mine.iter().filter_map(|r| tail_mean(&r.flip_rate)).collect();
        rows.push(Row {
            objective: name.clone(),
            seeds: mine.iter().map(|r| r.seed).collect(),
            score: over(&|r| r.metrics.score),
            quality: over(&|r| r.metrics.quality),
            colour: over(&|r| r.metrics.colour),
            shape: over(&|r| r.metrics.shape),
            position: over_some(&|r| r.metrics.position),
            motion: over_some(&|r| r.metrics.motion),
            all_correct: over(&|r| r.metrics.all_correct),
            win_rate: over(&|r| win_rate(&base.per_prompt, &r.per_prompt)),
            flip_rate_end: (flips.len() == mine.len()).then(|| Spread::of(&flips)),
            seconds: mine.iter().map(|r| r.seconds).sum::<f64>() / mine.len() as f64,
        });
    }
    rows
}

/// A column of the world's third attribute: its name, the base model's value and where a row keeps it.
type AttributeColumn = (&'static str, Option<f64>, fn(&Row) -> &Option<Spread>);

/// The comparison as a Markdown table: the base model first, then one row per objective sorted as given. The
/// world's third attribute is a `position` column for images and a `motion` column for clips (both when the
/// base model reports both).
pub fn markdown_table(base: &Baseline, rows: &[Row]) -> String {
    // One seed has no spread: "± —", not "± 0.0000".
    let spread = |s: &Spread, seeds: usize| match seeds {
        0 | 1 => format!("{:.4} ± —", s.mean),
        _ => format!("{:.4} ± {:.4}", s.mean, s.sd),
    };
    let b = &base.metrics;
    let third: Vec<AttributeColumn> = [
        ("position", b.position, (|r: &Row| &r.position) as fn(&Row) -> &Option<Spread>),
        ("motion", b.motion, |r| &r.motion),
    ]
    .into_iter()
    .filter(|c| c.1.is_some())
    .collect();
    let mut head =
        "| objective | seeds | judge score | win rate vs base | quality | colour accuracy | shape accuracy |"
            .to_string();
    for (name, ..) in &third {
        head.push_str(&format!(" {name} accuracy |"));
    }
    head.push_str(" all correct | flip rate (last ¼) |\n|");
    head.push_str(&"---|".repeat(9 + third.len()));
    let mut t = head + "\n";
    t.push_str(&format!(
        "| base model | — | {:.4} | — | {:.4} | {:.4} | {:.4} |",
        b.score, b.quality, b.colour, b.shape
    ));
    for (_, v, _) in &third {
        t.push_str(&format!(" {:.4} |", v.unwrap_or(f64::NAN)));
    }
    t.push_str(&format!(" {:.4} | — |\n", b.all_correct));
    for r in rows {
        let pm = |s: &Spread| spread(s, r.seeds.len());
        let opt = |s: &Option<Spread>| s.as_ref().map_or("—".to_string(), pm);
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.objective,
            r.seeds.len(),
            pm(&r.score),
            pm(&r.win_rate),
            pm(&r.quality),
            pm(&r.colour),
            pm(&r.shape),
        ));
        for (_, _, get) in &third {
            t.push_str(&format!(" {} |", opt(get(r))));
        }
        t.push_str(&format!(" {} | {} |\n", pm(&r.all_correct), opt(&r.flip_rate_end)));
    }
    t
}

/// Averages curves point by point over runs, keeping only the steps every run has.
pub fn mean_curve(curves: &[&[(usize, f64)]]) -> Vec<(f64, f64)> {
    let Some(first) = curves.first() else { return Vec::new() };
    first
        .iter()
        .filter_map(|&(step, _)| {
            let ys: Vec<f64> = curves.iter().filter_map(|c| c.iter().find(|p| p.0 == step).map(|p| p.1)).collect();
            (ys.len() == curves.len()).then(|| (step as f64, ys.iter().sum::<f64>() / ys.len() as f64))
        })
        .collect()
}

/// Centred moving average with a window of `w` points (shrunk at the ends).
pub fn smooth(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    let h = w / 2;
    (0..points.len())
        .map(|i| {
            let lo = i.saturating_sub(h);
            let hi = (i + h + 1).min(points.len());
            let ys = &points[lo..hi];
            (points[i].0, ys.iter().map(|p| p.1).sum::<f64>() / ys.len() as f64)
        })
        .collect()
}
