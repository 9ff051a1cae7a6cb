//! `seppoc reward eval`: a reward model measured on comparisons whose prompts it never saw (the held-out part
//! of its training split, [`super::Split`]) against the annotator's labels and against the exact judge, and on
//! a base model's samples of those prompts by its correlation with the exact judge's score.

use super::{agreement, read_split, score, OpenedReward, RewardPair};
use crate::data::Image;
use crate::device::{Backend, OnDevice};
use crate::engine::eval::{evaluate, EvalSettings};
use crate::engine::open::Opened;
use anyhow::bail;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewardEvalSettings {
    /// Samples of each held-out caption drawn from the base model (0: no model samples).
    pub samples: usize,
    /// At most this many held-out captions are sampled, spread evenly over them in sorted order (`None`: all).
    pub prompts: Option<usize>,
    /// Seed of the base model's sampling noise.
    pub seed: u64,
}

/// An evaluation job: run it on a device with [`crate::device::with_device`].
pub struct RewardEval {
    /// The reward model.
    pub reward: OpenedReward,
    /// The base model whose samples are scored (same world as the reward model).
    pub base: Opened,
    /// The preference file whose held-out comparisons are measured.
    pub data: PathBuf,
    /// The settings.
    pub settings: RewardEvalSettings,
}

/// A share with its normal-approximation 95% interval half-width and the count it is over.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Share {
    /// The share.
    pub value: f64,
    /// 1.96 standard errors, `1.96·sqrt(p(1 − p)/n)`.
    pub pm95: f64,
    /// Comparisons it is over.
    pub n: usize,
}

impl Share {
    fn of(total: f64, n: usize) -> Share {
        let value = total / n.max(1) as f64;
        Share { value, pm95: 1.96 * (value * (1.0 - value) / n.max(1) as f64).sqrt(), n }
    }
}

/// A correlation with its 95% interval (Fisher's z, `tanh(atanh r ± 1.96/sqrt(n − 3))`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Correlation {
    /// Pearson's r of the reward and the judge's score.
    pub pearson: f64,
    /// Spearman's ρ (Pearson's r of the ranks, ties given their mean rank).
    pub spearman: f64,
    /// The 95% interval of Pearson's r.
    pub pearson_95: (f64, f64),
    /// The 95% interval of Spearman's ρ (the same transform).
    pub spearman_95: (f64, f64),
    /// Samples.
    pub n: usize,
}

impl Correlation {
    fn of(x: &[f64], y: &[f64]) -> Correlation {
        let (p, s, n) = (pearson(x, y), spearman(x, y), x.len());
        let interval = |r: f64| {
            if n <= 3 || !r.is_finite() {
                return (f64::NAN, f64::NAN);
            }
            let (z, h) = (r.clamp(-0.999_999, 0.999_999).atanh(), 1.96 / ((n - 3) as f64).sqrt());
            ((z - h).tanh(), (z + h).tanh())
        };
        Correlation { pearson: p, spearman: s, pearson_95: interval(p), spearman_95: interval(s), n }
    }
}

/// What `seppoc reward eval` measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RewardEvalReport {
    /// The reward model.
    pub reward: String,
    /// The preference file and its SHA-256.
    pub data: String,
    /// SHA-256 of the preference file.
    pub data_sha256: String,
    /// Held-out comparisons (decided and tied) and distinct held-out captions.
    pub heldout_pairs: usize,
    /// Distinct held-out captions.
    pub heldout_captions: usize,
    /// Held-out decided comparisons ordered as the annotator's label says (the goal: ≥ 0.70).
    pub label_acc: Share,
    /// The exact judge's own accuracy against the annotator's labels on the same comparisons: what a perfect
    /// copy of the judge would score (the annotator is the judge plus noise, so no scorer is expected above it).
    pub judge_label_acc: Share,
    /// Held-out comparisons (decided or tied) whose two images the judge scores differently, ordered as the
    /// judge orders them.
    pub judge_acc: Share,
    /// Correlation of the reward with the judge's score over the held-out comparisons' images.
    pub heldout_images: Correlation,
    /// The base model's samples of held-out captions: correlation of reward and judge score.
    pub samples: Option<SampleReport>,
    /// The settings.
    pub settings: RewardEvalSettings,
}

/// The base model's samples scored by the reward model and the judge.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SampleReport {
    /// The base model.
    pub model: String,
    /// How they were drawn, e.g. `Euler 20 steps, cfg 5`.
    pub sampler: String,
    /// Captions sampled.
    pub captions: usize,
    /// Samples of each.
    pub per_caption: usize,
    /// Mean judge score of the samples.
    pub mean_judge: f64,
    /// Mean reward of the samples.
    pub mean_reward: f64,
    /// Reward against judge score.
    pub correlation: Correlation,
    /// Per caption: the share of pairs of its samples (with different judge scores) that the reward orders as
    /// the judge does, pooled over captions (`None` with fewer than 2 samples per caption).
    pub within_caption_acc: Option<Share>,
}

/// Pearson's correlation coefficient (NaN when either input is constant or there are fewer than 2 values).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x[..n].iter().sum::<f64>() / n as f64, y[..n].iter().sum::<f64>() / n as f64);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks from 1, ties given the mean of the ranks they span.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation: Pearson's r of the ranks (mean ranks for ties).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

impl OnDevice for RewardEval {
    type Output = anyhow::Result<RewardEvalReport>;

    fn run<D: Backend>(self, dev: D) -> anyhow::Result<RewardEvalReport> {
        let world = self.reward.world.as_ref();
        let base_world = self.base.world.as_ref();
        if base_world.vocab() != world.vocab() || base_world.image_size() != world.image_size() {
            bail!(
                "base model `{}` belongs to another world than reward model `{}` (vocabulary or image size differ)",
                self.base.path.display(),
                self.reward.path.display()
            );
        }
        let model = self.reward.model.to_device(&dev)?;
        let split = read_split(&self.data, world.image_size(), &self.reward.settings.split())?;
        let held: &[RewardPair] = &split.heldout;
        if held.is_empty() {
            bail!(
                "`{}` has no comparison with a held-out caption ({} rows; the reward model was trained with \
                 --heldout {})",
                self.data.display(),
                split.rows,
                self.reward.settings.heldout
            );
        }
        // Rewards and judge scores of every held-out image.
        let images: Vec<&Image> = held.iter().flat_map(|p| [&p.images[0], &p.images[1]]).collect();
        let captions: Vec<String> = held.iter().flat_map(|p| [p.caption.clone(), p.caption.clone()]).collect();
        let tokens: Vec<Vec<usize>> = captions.iter().map(|c| world.vocab().encode(c)).collect();
        let r: Vec<f64> = score(&model, &images, &tokens)?.into_iter().map(f64::from).collect();
        let owned: Vec<Image> = images.iter().map(|i| (*i).clone()).collect();
        let judged = world.judge(&captions, &owned)?;
        let j: Vec<f64> = judged.verdicts.iter().map(|v| f64::from(v.score)).collect();

        let (mut label, mut judge_label, mut decided, mut vs_judge, mut judged_pairs) = (0.0, 0.0, 0, 0.0, 0);
        for (k, p) in held.iter().enumerate() {
            let (d, dj) = (r[2 * k] - r[2 * k + 1], j[2 * k] - j[2 * k + 1]);
            if p.decided() {
                decided += 1;
                label += agreement(d, p.p0);
                judge_label += agreement(dj, p.p0);
            }
            if dj != 0.0 {
                judged_pairs += 1;
                vs_judge += agreement(d, if dj > 0.0 { 1.0 } else { 0.0 });
            }
        }
        if decided == 0 {
            bail!("`{}`: the held-out comparisons are all ties; no pair accuracy can be measured", self.data.display());
        }

        let samples = if self.settings.samples > 0 { Some(self.sample_report(&model, held, &dev)?) } else { None };
        let heldout_captions: BTreeSet<&str> = held.iter().map(|p| p.caption.trim()).collect();
        Ok(RewardEvalReport {
            reward: self.reward.path.display().to_string(),
            data: self.data.display().to_string(),
            data_sha256: super::file_sha256(&self.data)?,
            heldout_pairs: held.len(),
            heldout_captions: heldout_captions.len(),
            label_acc: Share::of(label, decided),
            judge_label_acc: Share::of(judge_label, decided),
            judge_acc: Share::of(vs_judge, judged_pairs),
            heldout_images: Correlation::of(&r, &j),
            samples,
            settings: self.settings.clone(),
        })
    }
}

impl RewardEval {
    /// Samples the held-out captions from the base model and compares reward with judge score.
    fn sample_report<D: Backend>(
        &self,
        model: &crate::model::Dit<D>,
        held: &[RewardPair],
        dev: &D,
    ) -> anyhow::Result<SampleReport> {
        let world = self.reward.world.as_ref();
        let unique: BTreeSet<&str> = held.iter().map(|p| p.caption.trim()).collect();
        let unique: Vec<String> = unique.into_iter().map(str::to_string).collect();
        let picked = crate::engine::eval::spread(&unique, self.settings.prompts);
        let k = self.settings.samples;
        // Sample `s` of every caption after sample `s − 1` of all, as `seppoc eval` orders them.
        let prompts: Vec<String> = (0..k).flat_map(|_| picked.iter().cloned()).collect();
        let eval =
            EvalSettings { seed: self.settings.seed, ..EvalSettings::standard() }.for_model(&self.base.schedule)?;
        let base = self.base.model.to_device(dev)?;
        let done = evaluate(&base, &self.base.schedule, world, &prompts, &eval, |_, _| {})?;
        let images: Vec<&Image> = done.samples.iter().collect();
        let tokens: Vec<Vec<usize>> = prompts.iter().map(|c| world.vocab().encode(c)).collect();
        let r: Vec<f64> = score(model, &images, &tokens)?.into_iter().map(f64::from).collect();
        let j: Vec<f64> = done.judged.verdicts.iter().map(|v| f64::from(v.score)).collect();
        let n = picked.len();
        let within = (k >= 2).then(|| {
            let (mut right, mut pairs) = (0.0, 0);
            for c in 0..n {
                let idx: Vec<usize> = (0..k).map(|s| s * n + c).collect();
                for (a, &x) in idx.iter().enumerate() {
                    for &y in &idx[a + 1..] {
                        let dj = j[x] - j[y];
                        if dj != 0.0 {
                            pairs += 1;
                            right += agreement(r[x] - r[y], if dj > 0.0 { 1.0 } else { 0.0 });
                        }
                    }
                }
            }
            Share::of(right, pairs)
        });
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        Ok(SampleReport {
            model: self.base.path.display().to_string(),
            sampler: eval.sampler.describe(),
            captions: n,
            per_caption: k,
            mean_judge: mean(&j),
            mean_reward: mean(&r),
            correlation: Correlation::of(&r, &j),
            within_caption_acc: within,
        })
    }
}

impl RewardEvalReport {
    /// The report as a printed table.
    pub fn table(&self) -> String {
        let share = |s: &Share| format!("{:.4} ± {:.4} (n = {})", s.value, s.pm95, s.n);
        let corr = |c: &Correlation| {
            format!(
                "Pearson {:.4} [{:.3}, {:.3}], Spearman {:.4} [{:.3}, {:.3}] (n = {})",
                c.pearson, c.pearson_95.0, c.pearson_95.1, c.spearman, c.spearman_95.0, c.spearman_95.1, c.n
            )
        };
        let mut t = format!(
            "held-out comparisons: {} over {} captions (none trained on)\n\
             pair accuracy vs the annotator's labels:  {}\n\
             the exact judge's own accuracy on them:   {}\n\
             pair accuracy vs the exact judge:         {}\n\
             reward vs judge score, held-out images:   {}\n",
            self.heldout_pairs,
            self.heldout_captions,
            share(&self.label_acc),
            share(&self.judge_label_acc),
            share(&self.judge_acc),
            corr(&self.heldout_images),
        );
        if let Some(s) = &self.samples {
            t.push_str(&format!(
                "base model samples ({} captions × {}, {}): mean judge {:.4}, mean reward {:.4}\n\
                 reward vs judge score, samples:           {}\n",
                s.captions,
                s.per_caption,
                s.sampler,
                s.mean_judge,
                s.mean_reward,
                corr(&s.correlation)
            ));
            if let Some(w) = &s.within_caption_acc {
                t.push_str(&format!("same-caption sample pairs ordered as the judge: {}\n", share(w)));
            }
        }
        t
    }
}
