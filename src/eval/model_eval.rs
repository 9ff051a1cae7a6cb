//! Seeded evaluation of a denoiser: sample one image (or clip) per prompt, judge each, aggregate into a
//! [`Report`] (or [`VideoReport`]).
//!
//! This is the one evaluation that `seppoc eval` prints and that trainers call to compare a policy with its
//! base model, so both see the same numbers for the same model, prompts, sampler and seed.

use super::video::{judge_video, VideoJudgement};
use super::{judge, Judgement, Report, VideoReport};
use crate::data::{Image, Prompt, VideoPrompt, Vocab};
use crate::device::Backend;
use crate::model::{Dit, ModelError, NoiseSchedule};
use crate::sampler::{sample, SamplerConfig};
use serde::Serialize;

/// How to sample for an evaluation. There is no `Default`: the numbers depend on every field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalConfig {
    /// Sampler, steps, guidance and eta.
    pub sampler: SamplerConfig,
    /// Seed of the sampling noise; chunk `k` of prompts is sampled with seed `seed + k`.
    pub seed: u64,
    /// Prompts sampled together in one batch (0 is treated as 1). Part of the seed contract: the same
    /// `(seed, chunk)` gives bitwise-identical images on CPU.
    pub chunk: usize,
}

impl EvalConfig {
    /// The standard evaluation: `sampler`, `seed`, 32 prompts per chunk.
    pub fn new(sampler: SamplerConfig, seed: u64) -> Self {
        EvalConfig { sampler, seed, chunk: 32 }
    }
}

/// The outcome of [`evaluate_model`], in prompt order.
#[derive(Clone, Debug)]
pub struct ModelEval {
    /// The aggregate over all prompts.
    pub report: Report,
    /// One judgement per prompt.
    pub judgements: Vec<Judgement>,
    /// One sampled image per prompt.
    pub images: Vec<Image>,
}

/// Samples one image per prompt from `model` (captions encoded with `vocab`), judges it against its prompt and
/// aggregates. `on_chunk(done, total)` is called after each chunk (for progress bars).
pub fn evaluate_model<D: Backend>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    vocab: &Vocab,
    prompts: &[Prompt],
    cfg: &EvalConfig,
    on_chunk: impl FnMut(usize, usize),
) -> Result<ModelEval, ModelError> {
    let texts: Vec<String> = prompts.iter().map(Prompt::text).collect();
    let images = sample_texts(model, schedule, vocab, &texts, cfg, on_chunk)?;
    let judgements: Vec<Judgement> = images.iter().zip(prompts).map(|(img, p)| judge(img, p)).collect();
    Ok(ModelEval { report: Report::from_judgements(&judgements), judgements, images })
}

/// The outcome of [`evaluate_video_model`], in prompt order.
#[derive(Clone, Debug)]
pub struct VideoModelEval {
    /// The aggregate over all prompts.
    pub report: VideoReport,
    /// One judgement per prompt.
    pub judgements: Vec<VideoJudgement>,
    /// One sampled clip per prompt (`frames · channels` channels).
    pub clips: Vec<Image>,
}

/// [`evaluate_model`] for a clip model and video prompts, judged by [`judge_video`]; same seed contract.
pub fn evaluate_video_model<D: Backend>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    vocab: &Vocab,
    prompts: &[VideoPrompt],
    cfg: &EvalConfig,
    on_chunk: impl FnMut(usize, usize),
) -> Result<VideoModelEval, ModelError> {
    let texts: Vec<String> = prompts.iter().map(VideoPrompt::text).collect();
    let clips = sample_texts(model, schedule, vocab, &texts, cfg, on_chunk)?;
    let judgements: Vec<VideoJudgement> = clips.iter().zip(prompts).map(|(c, p)| judge_video(c, p)).collect();
    Ok(VideoModelEval { report: VideoReport::from_judgements(&judgements), judgements, clips })
}

/// Samples one image (or clip) per caption, chunk `k` with seed `seed + k`.
fn sample_texts<D: Backend>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    vocab: &Vocab,
    texts: &[String],
    cfg: &EvalConfig,
    mut on_chunk: impl FnMut(usize, usize),
) -> Result<Vec<Image>, ModelError> {
    let mc = model.config();
    let (c, s) = (mc.sample_channels(), mc.image_size);
    let mut images = Vec::with_capacity(texts.len());
    for (k, chunk) in texts.chunks(cfg.chunk.max(1)).enumerate() {
        let tokens: Vec<Vec<usize>> = chunk.iter().map(|t| vocab.encode(t)).collect();
        let drawn = sample(model, schedule, &cfg.sampler, &tokens, cfg.seed.wrapping_add(k as u64))?;
        images.extend(drawn.into_iter().map(|data| Image { channels: c, height: s, width: s, data }));
        on_chunk(images.len(), texts.len());
    }
    Ok(images)
}
