//! Evaluation with one settings value ([`EvalSettings`]) used everywhere a model is judged: `seppoc eval`, the
//! final base-vs-trained table of `seppoc run`, its score curve, and `seppoc compare` (through those two).

use super::files::JsonlWriter;
use crate::data::Image;
use crate::device::Backend;
use crate::model::{Dit, NoiseSchedule};
use crate::sampler::{sample, SamplerConfig};
use crate::world::{Judged, Split, Summary, Testbed};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;

/// Samples of each prompt a final evaluation judges, each with its own noise, in `seppoc run`, `seppoc eval` and
/// `seppoc compare` alike (`--eval-samples`), so one model gets one score from every command. Two, because the
/// held-out lists are short and one sample per prompt leaves the sampler's seed a large share of the spread.
pub const DEFAULT_EVAL_SAMPLES: usize = 2;

/// How a model is judged: which prompts, how many samples of each, and how they are drawn. The numbers depend
/// on every field, so every report stores the value it was made with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalSettings {
    /// Sampler, steps, guidance and eta.
    pub sampler: SamplerConfig,
    /// Seed of the sampling noise; chunk `k` of prompts is sampled with seed `seed + k`.
    pub seed: u64,
    /// Prompts sampled together in one batch (0 is treated as 1). Part of the seed contract: the same
    /// `(seed, chunk)` gives bitwise-identical samples on CPU.
    pub chunk: usize,
    /// Which of the world's prompt lists.
    pub split: Split,
    /// How many prompts, spread evenly over the list (`None`: all of them).
    pub n_prompts: Option<usize>,
    /// Samples per prompt, each with its own noise.
    pub samples: usize,
}

impl EvalSettings {
    /// The standard evaluation: DDIM, 20 steps, guidance 5, seed 0, 32 prompts per chunk, one sample of every
    /// held-out prompt.
    pub fn standard() -> Self {
        EvalSettings {
            sampler: SamplerConfig::ddim(20, 5.0),
            seed: 0,
            chunk: 32,
            split: Split::Heldout,
            n_prompts: None,
            samples: 1,
        }
    }

    /// These settings with the sampler that runs on a model trained with `schedule`
    /// ([`SamplerConfig::for_param`]): on a rectified flow the standard deterministic DDIM becomes Euler, the
    /// same update; a sampler the model cannot take is an error saying which it takes.
    pub fn for_model(mut self, schedule: &NoiseSchedule) -> anyhow::Result<Self> {
        self.sampler = self.sampler.for_param(schedule.param).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(self)
    }

    /// The standard evaluation on `n` prompts spread evenly over the held-out list.
    pub fn standard_on(n: usize) -> Self {
        EvalSettings { n_prompts: Some(n), ..Self::standard() }
    }

    /// The prompts to sample, in order: the picked prompts once per sample (sample `k` of every prompt after
    /// sample `k − 1` of all).
    pub fn prompts(&self, world: &dyn Testbed) -> Vec<String> {
        let picked = spread(&world.prompts(self.split), self.n_prompts);
        (0..self.samples.max(1)).flat_map(|_| picked.iter().cloned()).collect()
    }

    /// A short description for table titles, e.g. `64 held-out prompts (DDIM 20 steps, cfg 5, seed 0)`.
    pub fn describe(&self, n_samples: usize) -> String {
        let set = match self.split {
            Split::Heldout => "held-out",
            Split::Train => "training",
        };
        let prompts = match self.samples.max(1) {
            1 => format!("{n_samples} {set} prompts"),
            k => format!("{} {set} prompts × {k} samples", n_samples / k),
        };
        format!("{prompts} ({}, seed {})", self.sampler.describe(), self.seed)
    }
}

/// Picks `n` items spread evenly over `all` (all of them when `n` is `None` or at least `all.len()`).
pub fn spread<P: Clone>(all: &[P], n: Option<usize>) -> Vec<P> {
    match n {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n].clone()).collect(),
        _ => all.to_vec(),
    }
}

/// A judged model: its samples and the judge's verdicts, in prompt order.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The prompt of each sample.
    pub prompts: Vec<String>,
    /// One sample per prompt.
    pub samples: Vec<Image>,
    /// The judge's verdicts and their summary.
    pub judged: Judged,
}

impl Evaluation {
    /// The aggregate report.
    pub fn summary(&self) -> &Summary {
        &self.judged.summary
    }
}

/// Samples one image (or clip) per prompt from `model`, judges each against its prompt and aggregates.
/// `on_chunk(done, total)` is called after each chunk (for progress bars).
pub fn evaluate<D: Backend>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    world: &dyn Testbed,
    prompts: &[String],
    settings: &EvalSettings,
    mut on_chunk: impl FnMut(usize, usize),
) -> anyhow::Result<Evaluation> {
    let mc = model.config();
    let (c, s) = (mc.sample_channels(), mc.image_size);
    let mut samples = Vec::with_capacity(prompts.len());
    for (k, chunk) in prompts.chunks(settings.chunk.max(1)).enumerate() {
        if super::stop::requested() {
            return Err(super::stop::Interrupted {
                message: "stopped by a signal while sampling for the judge; nothing of this evaluation was written \
                          (run the same command again)"
                    .into(),
            }
            .into());
        }
        let tokens: Vec<Vec<usize>> = chunk.iter().map(|t| world.vocab().encode(t)).collect();
        let drawn = sample(model, schedule, &settings.sampler, &tokens, settings.seed.wrapping_add(k as u64))?;
        samples.extend(drawn.into_iter().map(|data| Image { channels: c, height: s, width: s, data }));
        on_chunk(samples.len(), prompts.len());
    }
    let judged = world.judge(prompts, &samples)?;
    Ok(Evaluation { prompts: prompts.to_vec(), samples, judged })
}

/// A base and a trained model judged on the same prompts, sampler and seed.
pub struct Comparison {
    /// The base model's evaluation.
    pub base: Evaluation,
    /// The trained model's evaluation.
    pub trained: Evaluation,
    /// The settings both were judged with.
    pub settings: EvalSettings,
}

impl Comparison {
    /// Judges both models.
    pub fn new<D: Backend>(
        base: &Dit<D>,
        trained: &Dit<D>,
        schedule: &NoiseSchedule,
        world: &dyn Testbed,
        settings: &EvalSettings,
    ) -> anyhow::Result<Comparison> {
        let prompts = settings.prompts(world);
        let base = evaluate(base, schedule, world, &prompts, settings, |_, _| {})?;
        let trained = evaluate(trained, schedule, world, &prompts, settings, |_, _| {})?;
        Ok(Comparison { base, trained, settings: settings.clone() })
    }

    /// The judge score of every sample, base and trained, in prompt order.
    fn scores(&self) -> (Vec<f64>, Vec<f64>) {
        let scores = |e: &Evaluation| e.judged.verdicts.iter().map(|v| f64::from(v.score)).collect::<Vec<_>>();
        (scores(&self.base), scores(&self.trained))
    }

    /// Samples on which the trained model scores above, level with and below the base.
    pub fn wins(&self) -> crate::compare::Wins {
        let (b, t) = self.scores();
        crate::compare::Wins::count(&b, &t)
    }

    /// The win rate against the base ([`crate::compare::Wins::rate`]: a tie counts ½).
    pub fn win_rate(&self) -> f64 {
        self.wins().rate()
    }

    /// The mean judge-score difference (trained − base) and its 95% bootstrap interval over prompts: each prompt's
    /// difference is averaged over its samples, and `resamples` resamplings of the prompts (seeded) give the
    /// 2.5th and 97.5th percentiles of the mean.
    pub fn delta_interval(&self, resamples: usize, seed: u64) -> (f64, f64, f64) {
        let k = self.settings.samples.max(1);
        let n = self.base.prompts.len() / k;
        let (b, t) = self.scores();
        let per_prompt: Vec<f64> =
            (0..n).map(|i| (0..k).map(|s| t[s * n + i] - b[s * n + i]).sum::<f64>() / k as f64).collect();
        let mean = |xs: &mut dyn Iterator<Item = f64>| xs.sum::<f64>() / n.max(1) as f64;
        let point = mean(&mut per_prompt.iter().copied());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut means: Vec<f64> =
            (0..resamples).map(|_| mean(&mut (0..n).map(|_| per_prompt[rng.gen_range(0..n.max(1))]))).collect();
        means.sort_by(f64::total_cmp);
        let at = |q: f64| means.get(((q * resamples as f64) as usize).min(resamples.saturating_sub(1))).copied();
        (point, at(0.025).unwrap_or(point), at(0.975).unwrap_or(point))
    }

    /// The titled base / trained / delta table of the headline numbers.
    pub fn table(&self, what: &str) -> String {
        let n = self.base.prompts.len();
        let mut s = format!(
            "{what} on {}\n{:<24} {:>8} {:>8} {:>8}\n",
            self.settings.describe(n),
            "",
            "base",
            "trained",
            "delta"
        );
        for (b, t) in self.base.summary().metrics.iter().zip(&self.trained.summary().metrics) {
            s.push_str(&format!("{:<24} {:>8.3} {:>8.3} {:>+8.3}\n", b.label, b.value, t.value, t.value - b.value));
        }
        s
    }
}

/// The judge score over training: one JSON line per evaluated step.
pub struct Curve<'a> {
    /// Judge every `every` updates (0: never); the first and last step always get a point.
    pub every: usize,
    /// The world whose judge scores the points.
    pub world: &'a dyn Testbed,
    /// The noise schedule of the judged models.
    pub schedule: &'a NoiseSchedule,
    /// The prompts judged at each point.
    pub prompts: Vec<String>,
    /// How they are judged.
    pub settings: EvalSettings,
    /// Where the points go.
    pub out: JsonlWriter,
    /// The last step that got a point.
    pub last: Option<usize>,
}

impl Curve<'_> {
    /// Whether `step` is due for a point.
    pub fn due(&self, step: usize) -> bool {
        self.every > 0 && step.is_multiple_of(self.every)
    }

    /// Judges `model` at `step` when the curve is on (callers pass step 0 and due steps).
    pub fn point<D: Backend>(&mut self, step: usize, model: &Dit<D>) -> anyhow::Result<()> {
        if self.every == 0 {
            return Ok(());
        }
        let e = evaluate(model, self.schedule, self.world, &self.prompts, &self.settings, |_, _| {})?;
        let mut line = json!({ "step": step, "n_prompts": self.prompts.len() });
        for m in &e.summary().metrics {
            line[m.key] = json!(m.value);
        }
        self.last = Some(step);
        self.out.write(&line)
    }

    /// The last step always gets a point, due or not.
    pub fn finish<D: Backend>(&mut self, step: usize, model: &Dit<D>) -> anyhow::Result<()> {
        if self.last == Some(step) {
            return Ok(());
        }
        self.point(step, model)
    }
}
