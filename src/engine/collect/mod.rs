//! Collecting preference data the way Pick-a-Pic was collected (arXiv 2305.01569): prompts as users type them,
//! candidates drawn from a pool of generators of mixed quality, and a simulated annotator whose picks are noisy
//! and who sometimes declares a tie.
//!
//! - Every prompt starts a chain of comparisons: the first two candidates are compared, then the winner stays and
//!   the loser is replaced by the next candidate (Pick-a-Pic's `ranking_id` chains). A tie keeps the incumbent.
//!   Each candidate comes from a generator drawn uniformly from the pool; the order of the two images in a row
//!   is a fair coin.
//! - The annotator is Bradley–Terry on the exact judge's score, with ties: with `d` the judge's score
//!   difference, the annotator perceives `d + T·ℓ`, where `ℓ` is standard logistic noise, so that without ties
//!   the first image wins with probability `σ(d / T)`; a perceived difference smaller than a tie band in size is
//!   a tie (the Rao–Kupper form of Bradley–Terry with ties). Two images the judge scores equally are therefore
//!   a coin flip or a tie, as for a person who sees differences the judge does not. The band is set so that the
//!   requested share of comparisons are ties (Pick-a-Pic v2: ~11% of rows) and the temperature `T` so that the
//!   requested share of decided comparisons agree with the noiseless judge (expert agreement with Pick-a-Pic's
//!   users is ~68%, PickScore's ~70%). Both are solved by bisection on the chains as they will be written, with
//!   the annotator's random draws fixed, so the written set has the calibrated shares up to finite-sample
//!   granularity.
//! - The base model's denoising error on the winners is compared with its error on its own samples for the
//!   same prompts (same timesteps and noise): in Pick-a-Pic the winners are model samples, so the ratio should
//!   be near 1, unlike clean renders, which have 3–5× lower error than the base model's samples.

mod annotator;
mod spec;

use annotator::{calibrate, simulate, Chain, Draw};
pub use spec::{default_pool, GeneratorSpec};

use super::eval::EvalSettings;
use super::open::{open, Opened};
use crate::data::parquet::{self, Comparison};
use crate::data::Image;
use crate::device::{Backend, OnDevice};
use crate::model::{per_sample_error, Dit, NoiseSchedule};
use crate::sampler::sample;
use crate::world::{Split, WorldKind};
use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};

/// How a set is collected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectSettings {
    /// Prompts (comparison chains).
    pub prompts: usize,
    /// Comparisons per prompt (each chain has one more candidate than comparisons).
    pub comparisons: usize,
    /// Seed of the prompts, generator draws, sampling noise and annotator.
    pub seed: u64,
    /// Share of decided comparisons in which the annotator agrees with the noiseless judge.
    pub agreement: f64,
    /// Share of comparisons that are ties.
    pub tie_share: f64,
}

impl CollectSettings {
    /// Checks the settings; each error names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.prompts == 0 || self.comparisons == 0 {
            bail!("--prompts and --comparisons must be at least 1");
        }
        if !(self.agreement > 0.5 && self.agreement < 1.0) {
            bail!("--agreement must be in (0.5, 1), found {}", self.agreement);
        }
        if !(0.0..0.9).contains(&self.tie_share) {
            bail!("--ties must be in [0, 0.9), found {}", self.tie_share);
        }
        Ok(())
    }
}

/// The annotator's calibration and what it achieved on the written set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// Bradley–Terry temperature on judge-score differences (the scale of the logistic perception noise).
    pub temperature: f64,
    /// Perceived differences smaller than this in size are ties.
    pub tie_band: f64,
    /// Share of decided comparisons (with a nonzero score difference) that agree with the noiseless judge.
    pub agreement: f64,
    /// Share of comparisons that are ties.
    pub tie_share: f64,
    /// Decided comparisons.
    pub decided: usize,
    /// Ties.
    pub ties: usize,
}

/// How one generator fared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GeneratorStats {
    /// The generator.
    pub name: String,
    /// Its images in the written comparisons.
    pub images: usize,
    /// Decided comparisons its image won / lost.
    pub wins: usize,
    /// Decided comparisons its image lost.
    pub losses: usize,
    /// `wins / (wins + losses)`.
    pub win_rate: f64,
    /// Mean judge score of its candidates.
    pub mean_judge: f64,
}

/// The base model's mean denoising error on the set's winners and on its own samples for the same prompts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorRatio {
    /// Winners measured.
    pub n: usize,
    /// (t, ε) draws per image.
    pub draws: usize,
    /// Mean ε-MSE on the winners.
    pub winners: f64,
    /// Mean ε-MSE on the base model's own samples (standard evaluation sampler).
    pub own_samples: f64,
    /// `winners / own_samples`.
    pub ratio: f64,
}

/// What a collection wrote and measured (also stored in the Parquet file's metadata).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectReport {
    /// The settings.
    pub settings: CollectSettings,
    /// The pool.
    pub generators: Vec<GeneratorSpec>,
    /// The annotator.
    pub calibration: Calibration,
    /// Per generator.
    pub per_generator: Vec<GeneratorStats>,
    /// Mean judge score of the winners of decided comparisons, and of the losers.
    pub mean_judge_winners: f64,
    /// Mean judge score of the losers of decided comparisons.
    pub mean_judge_losers: f64,
    /// The base model's error on winners vs its own samples.
    pub error_ratio: ErrorRatio,
    /// The base model the ratio was measured with.
    pub base_model: String,
}

/// A collection job: run it on a device with [`crate::device::with_device`].
pub struct Collecting {
    /// The base model the data is collected for (its world gives the prompts and the judge).
    pub base: Opened,
    /// The generators, opened.
    pub generators: Vec<(GeneratorSpec, Opened)>,
    /// The settings.
    pub settings: CollectSettings,
    /// The Parquet file to write.
    pub out: PathBuf,
    /// Progress over the candidates sampled (hidden for a library caller that wants none).
    pub bar: super::Progress,
}

/// Opens the base model (which must be of `world` when one is given) and every generator of `generators`
/// (`None`: the default pool of the base model's world, [`default_pool`]); each generator must share the base
/// model's world (its vocabulary, prompt lists and clip shape), which each error names.
pub fn prepare(
    base: &Path,
    world: Option<WorldKind>,
    generators: Option<Vec<GeneratorSpec>>,
    settings: CollectSettings,
    out: PathBuf,
) -> anyhow::Result<Collecting> {
    settings.validate()?;
    let base = open(base, world)?;
    let generators = match generators {
        Some(g) => g,
        None => default_pool(base.world.kind())?,
    };
    if generators.is_empty() {
        bail!("the generator pool is empty (pass --generator NAME=PATH...)");
    }
    let mut opened = Vec::with_capacity(generators.len());
    for g in generators {
        if opened.iter().any(|(o, _): &(GeneratorSpec, Opened)| o.name == g.name) {
            bail!("two generators are named `{}`", g.name);
        }
        let o = open(&g.model, Some(base.world.kind())).with_context(|| format!("generator `{}`", g.name))?;
        let same = o.world.vocab() == base.world.vocab()
            && o.world.prompts(Split::Heldout) == base.world.prompts(Split::Heldout)
            && o.model.config().image_size == base.model.config().image_size
            && o.model.config().sample_channels() == base.model.config().sample_channels();
        if !same {
            bail!(
                "generator `{}` (`{}`) was trained on another world than the base model `{}` (vocabulary, prompt \
                 split, image size or frames per clip differ)",
                g.name,
                g.model.display(),
                base.path.display()
            );
        }
        // A sampler that does not fit the generator's parametrisation (DDPM on a flow) is refused now, not after
        // the generators before it have sampled.
        g.sampler.for_param(o.schedule.param).with_context(|| format!("generator `{}`", g.name))?;
        opened.push((g, o));
    }
    Ok(Collecting { base, generators: opened, settings, out, bar: super::Progress::hidden() })
}

/// Mean denoising error of `model` (against its parametrisation's target) on `images` over `draws` (t, ε) draws from `rng` (the same draws for every call with
/// the same seed).
fn mean_error<D: Backend>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    images: &[Image],
    tokens: &[Vec<usize>],
    draws: usize,
    seed: u64,
) -> anyhow::Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per = images.first().map_or(0, |i| i.data.len());
    let x0: Vec<f32> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    let mut total = 0.0;
    for _ in 0..draws {
        let t: Vec<usize> = (0..images.len()).map(|_| schedule.draw_t(&mut rng)).collect();
        let eps: Vec<f32> = (0..x0.len()).map(|_| rng.sample(StandardNormal)).collect();
        let xt = schedule.q_sample_batch(&x0, &t, &eps, per);
        let target = schedule.target_batch(&x0, &t, &eps, per);
        let pred = model.forward(model.images(xt)?, &t, tokens)?;
        let err = per_sample_error(pred, &model.images(target)?).as_vec();
        total += err.iter().map(|e| f64::from(*e)).sum::<f64>();
    }
    Ok(total / (draws * images.len()).max(1) as f64)
}

impl OnDevice for Collecting {
    type Output = anyhow::Result<CollectReport>;

    fn run<D: Backend>(mut self, dev: D) -> anyhow::Result<CollectReport> {
        let s = &self.settings;
        let world = self.base.world.as_ref();
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
        rng.set_stream(1);
        let prompts: Vec<String> = (0..s.prompts).map(|_| world.user_prompt(&mut rng)).collect();
        let slots = s.comparisons + 1;
        let n_gen = self.generators.len();
        let assigned: Vec<Vec<usize>> =
            (0..s.prompts).map(|_| (0..slots).map(|_| rng.gen_range(0..n_gen)).collect()).collect();

        // Sample every candidate, generator by generator, in chunks with their own seeds.
        let mc = self.base.model.config();
        let (c, side) = (mc.sample_channels(), mc.image_size);
        let mut images: Vec<Vec<Option<Image>>> = vec![vec![None; slots]; s.prompts];
        self.bar.set_range(0, (s.prompts * slots) as u64);
        for (g, (spec, opened)) in self.generators.iter().enumerate() {
            let model = opened.model.to_device(&dev)?;
            let jobs: Vec<(usize, usize)> = (0..s.prompts)
                .flat_map(|p| (0..slots).map(move |k| (p, k)))
                .filter(|&(p, k)| assigned[p][k] == g)
                .collect();
            for (chunk_idx, chunk) in jobs.chunks(64).enumerate() {
                if super::stop::requested() {
                    return Err(super::stop::Interrupted {
                        message: format!(
                            "stopped by a signal while sampling candidates; `{}` was not written (the same command \
                             starts the collection again; it is deterministic for its seed)",
                            self.out.display()
                        ),
                    }
                    .into());
                }
                let tokens: Vec<Vec<usize>> = chunk.iter().map(|&(p, _)| world.vocab().encode(&prompts[p])).collect();
                let seed = s.seed.wrapping_mul(1_000_003).wrapping_add((g as u64) << 32).wrapping_add(chunk_idx as u64);
                let drawn = sample(&model, &opened.schedule, &spec.sampler, &tokens, seed)?;
                for (&(p, k), data) in chunk.iter().zip(drawn) {
                    images[p][k] = Some(Image { channels: c, height: side, width: side, data });
                }
                self.bar.advance(chunk.len() as u64, "images");
            }
        }
        self.bar.finish();

        // Judge every candidate.
        let flat_prompts: Vec<String> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), slots)).collect();
        let flat_images: Vec<Image> = images.into_iter().flatten().map(|i| i.expect("every slot sampled")).collect();
        let judged = world.judge(&flat_prompts, &flat_images)?;
        let mut scores = judged.verdicts.iter().map(|v| f64::from(v.score));
        let mut flat = flat_images.into_iter();
        let chains: Vec<Chain> = assigned
            .iter()
            .map(|gens| gens.iter().map(|&g| (g, flat.next().expect("image"), scores.next().expect("score"))).collect())
            .collect();

        // The annotator.
        let mut arng = ChaCha8Rng::seed_from_u64(s.seed);
        arng.set_stream(2);
        let draws: Vec<Vec<Draw>> = (0..s.prompts)
            .map(|_| (0..s.comparisons).map(|_| Draw { pick: arng.gen::<f64>(), swap: arng.gen_bool(0.5) }).collect())
            .collect();
        let calibration = calibrate(&chains, &draws, s);
        let simulated = simulate(&chains, &draws, calibration.temperature, calibration.tie_band);

        let names: Vec<&str> = self.generators.iter().map(|(g, _)| g.name.as_str()).collect();
        let mut stats: Vec<GeneratorStats> = names
            .iter()
            .map(|n| GeneratorStats {
                name: n.to_string(),
                images: 0,
                wins: 0,
                losses: 0,
                win_rate: 0.0,
                mean_judge: 0.0,
            })
            .collect();
        let mut judge_sum = vec![(0.0, 0usize); n_gen];
        for chain in &chains {
            for (g, _, score) in chain {
                judge_sum[*g].0 += score;
                judge_sum[*g].1 += 1;
            }
        }
        let (mut rows, mut winners, mut winner_prompts) = (Vec::new(), Vec::new(), Vec::new());
        let (mut win_judge, mut lose_judge, mut decided) = (0.0, 0.0, 0usize);
        for (p, (chain, chain_rows)) in chains.iter().zip(&simulated).enumerate() {
            for r in chain_rows {
                let [a, b] = r.slots;
                for k in [a, b] {
                    stats[chain[k].0].images += 1;
                }
                if r.label_0 != 0.5 {
                    let (w, l) = if r.label_0 == 1.0 { (a, b) } else { (b, a) };
                    stats[chain[w].0].wins += 1;
                    stats[chain[l].0].losses += 1;
                    win_judge += chain[w].2;
                    lose_judge += chain[l].2;
                    decided += 1;
                    winners.push(chain[w].1.clone());
                    winner_prompts.push(prompts[p].clone());
                }
                rows.push(Comparison {
                    caption: prompts[p].clone(),
                    images: [chain[a].1.clone(), chain[b].1.clone()],
                    label_0: r.label_0,
                    models: [names[chain[a].0].to_string(), names[chain[b].0].to_string()],
                    judge: [chain[a].2, chain[b].2],
                    ranking_id: p as i64,
                    user_id: 0,
                    num_example_per_prompt: s.comparisons as i64,
                });
            }
        }
        for (st, (sum, n)) in stats.iter_mut().zip(&judge_sum) {
            st.win_rate = st.wins as f64 / (st.wins + st.losses).max(1) as f64;
            st.mean_judge = sum / (*n).max(1) as f64;
        }

        // The base model's error on winners vs on its own samples for the same prompts.
        let n = winners.len().min(256);
        let base = self.base.model.to_device(&dev)?;
        let tokens: Vec<Vec<usize>> = winner_prompts[..n].iter().map(|p| world.vocab().encode(p)).collect();
        let eval = EvalSettings::standard();
        let own: Vec<Image> = sample(&base, &self.base.schedule, &eval.sampler, &tokens, s.seed ^ 0x0b5e)?
            .into_iter()
            .map(|data| Image { channels: c, height: side, width: side, data })
            .collect();
        let draws_per = 8;
        let err_w = mean_error(&base, &self.base.schedule, &winners[..n], &tokens, draws_per, s.seed)?;
        let err_own = mean_error(&base, &self.base.schedule, &own, &tokens, draws_per, s.seed)?;
        let error_ratio =
            ErrorRatio { n, draws: draws_per, winners: err_w, own_samples: err_own, ratio: err_w / err_own.max(1e-12) };

        let report = CollectReport {
            settings: s.clone(),
            generators: self.generators.iter().map(|(g, _)| g.clone()).collect(),
            calibration,
            per_generator: stats,
            mean_judge_winners: win_judge / decided.max(1) as f64,
            mean_judge_losers: lose_judge / decided.max(1) as f64,
            error_ratio,
            base_model: self.base.path.display().to_string(),
        };
        let meta = serde_json::to_string(&json!({ "collect": report }))?;
        parquet::write(&self.out, &rows, Some(&meta))?;
        Ok(report)
    }
}
