//! DDPM ancestral and DDIM sampling with classifier-free guidance, seeded for bitwise-reproducible output on CPU.
//!
//! The model runs once per step on the stacked `[conditional; null]` batch; the update is host math.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::device::Backend;
use crate::model::{Dit, ModelError, NoiseSchedule, PAD};

/// Which reverse process to run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Ancestral sampling from the DDPM posterior `q(x_{t'} | x_t, x̂_0)` (Ho et al., arXiv:2006.11239).
    Ddpm,
    /// DDIM (Song et al., arXiv:2010.02502) with stochasticity `eta` (0 = deterministic).
    Ddim,
}

/// Sampler settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// DDPM or DDIM.
    pub kind: SamplerKind,
    /// Number of denoising steps (strided over the training timesteps).
    pub steps: usize,
    /// Guidance weight `w` in `eps = eps_uncond + w · (eps_cond − eps_uncond)`; 1 = no guidance.
    pub cfg_scale: f32,
    /// DDIM noise level (ignored by DDPM).
    pub eta: f32,
}

impl SamplerConfig {
    /// Deterministic DDIM with `steps` steps and guidance `cfg_scale`.
    pub fn ddim(steps: usize, cfg_scale: f32) -> Self {
        SamplerConfig { kind: SamplerKind::Ddim, steps, cfg_scale, eta: 0.0 }
    }

    /// A short description, e.g. `DDIM 20 steps, cfg 5` (`, eta 0.5` when DDIM is not deterministic).
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            SamplerKind::Ddim => "DDIM",
            SamplerKind::Ddpm => "DDPM",
        };
        let eta = match self.kind {
            SamplerKind::Ddim if self.eta != 0.0 => format!(", eta {}", self.eta),
            _ => String::new(),
        };
        format!("{kind} {} steps, cfg {}{eta}", self.steps, self.cfg_scale)
    }
}

/// Strided timesteps, descending, "trailing" spacing: `T−1, T−1−T/S, …` (`S` = `steps`, clamped to `1..=T`).
pub fn timesteps(n_train: usize, steps: usize) -> Vec<usize> {
    let s = steps.clamp(1, n_train.max(1));
    (0..s)
        .map(|i| ((n_train as f64 - i as f64 * n_train as f64 / s as f64).round() as usize).saturating_sub(1))
        .collect()
}

/// Computes the guided ε for images `x` (flattened CHW) at timestep `t`, one forward on `[cond; null]`.
///
/// With `cfg_scale == 1` only the conditional half is run.
pub fn guided_eps<D: Backend>(
    model: &Dit<D>,
    x: &[f32],
    t: usize,
    tokens: &[Vec<usize>],
    cfg_scale: f32,
) -> Result<Vec<f32>, ModelError> {
    let (cond, uncond) = cond_uncond_eps(model, x, t, tokens, cfg_scale)?;
    Ok(guide(&cond, uncond.as_deref(), cfg_scale))
}

/// Computes `eps_uncond + w · (eps_cond − eps_uncond)` (just `eps_cond` when there is no unconditional half).
fn guide(cond: &[f32], uncond: Option<&[f32]>, w: f32) -> Vec<f32> {
    match uncond {
        Some(uncond) => uncond.iter().zip(cond).map(|(u, c)| u + w * (c - u)).collect(),
        None => cond.to_vec(),
    }
}

/// Computes the conditional and the unconditional (null-caption) ε in one forward on `[cond; null]`; with
/// `cfg_scale == 1` only the conditional half is run and the unconditional one is `None`.
pub fn cond_uncond_eps<D: Backend>(
    model: &Dit<D>,
    x: &[f32],
    t: usize,
    tokens: &[Vec<usize>],
    cfg_scale: f32,
) -> Result<(Vec<f32>, Option<Vec<f32>>), ModelError> {
    let b = tokens.len();
    if cfg_scale == 1.0 {
        let xt = model.images(x.to_vec())?;
        return Ok((model.forward(xt, &vec![t; b], tokens)?.as_vec(), None));
    }
    let mut both = Vec::with_capacity(2 * x.len());
    both.extend_from_slice(x);
    both.extend_from_slice(x);
    let mut caps = tokens.to_vec();
    caps.extend(tokens.iter().map(|c| vec![PAD; c.len()]));
    let mut eps = model.forward(model.images(both)?, &vec![t; 2 * b], &caps)?.as_vec();
    let uncond = eps.split_off(x.len());
    Ok((eps, Some(uncond)))
}

/// Draws one image per caption with a `ChaCha8Rng` seeded by `seed`; returns CHW images clamped to [-1, 1].
pub fn sample<D: Backend>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    cfg: &SamplerConfig,
    tokens: &[Vec<usize>],
    seed: u64,
) -> Result<Vec<Vec<f32>>, ModelError> {
    sample_with_rng(model, schedule, cfg, tokens, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Like [`sample`], drawing the initial and per-step noise from `rng`.
pub fn sample_with_rng<D: Backend, R: Rng>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    cfg: &SamplerConfig,
    tokens: &[Vec<usize>],
    rng: &mut R,
) -> Result<Vec<Vec<f32>>, ModelError> {
    denoise(model, schedule, cfg, tokens, rng, |step, rng| {
        let eps = guide(step.cond, step.uncond, cfg.cfg_scale);
        Ok(match cfg.kind {
            SamplerKind::Ddpm => ddpm_step(step.x, &eps, step.ab, step.ab_prev, step.last, rng),
            SamplerKind::Ddim => ddim_step(step.x, &eps, step.ab, step.ab_prev, cfg.eta as f64, step.last, rng),
        })
    })
}

/// What one reverse step sees: the current images, the model's ε and the schedule positions.
struct Step<'a> {
    x: &'a [f32],
    cond: &'a [f32],
    uncond: Option<&'a [f32]>,
    ab: f64,
    ab_prev: f64,
    last: bool,
}

/// The sampling loop shared by every update rule: initial noise, then one model call and one `update` per step.
fn denoise<D: Backend, R: Rng>(
    model: &Dit<D>,
    schedule: &NoiseSchedule,
    cfg: &SamplerConfig,
    tokens: &[Vec<usize>],
    rng: &mut R,
    mut update: impl FnMut(Step<'_>, &mut R) -> Result<Vec<f32>, ModelError>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let per = model.config().image_len();
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    if !(cfg.cfg_scale.is_finite() && cfg.eta.is_finite() && cfg.eta >= 0.0) {
        return Err(ModelError::Config(format!(
            "sampler cfg_scale {} / eta {} must be finite, eta ≥ 0",
            cfg.cfg_scale, cfg.eta
        )));
    }
    let mut x: Vec<f32> = (0..tokens.len() * per).map(|_| rng.sample(StandardNormal)).collect();
    let ts = timesteps(schedule.n_steps(), cfg.steps);
    for (i, &t) in ts.iter().enumerate() {
        let (cond, uncond) = cond_uncond_eps(model, &x, t, tokens, cfg.cfg_scale)?;
        let step = Step {
            x: &x,
            cond: &cond,
            uncond: uncond.as_deref(),
            ab: schedule.alphas_cumprod[t],
            ab_prev: ts.get(i + 1).map_or(1.0, |&tp| schedule.alphas_cumprod[tp]),
            last: i + 1 == ts.len(),
        };
        x = update(step, rng)?;
    }
    Ok(x.chunks(per).map(|c| c.iter().map(|v| v.clamp(-1.0, 1.0)).collect()).collect())
}

/// `x̂_0 = (x_t − sqrt(1−ᾱ_t)·eps) / sqrt(ᾱ_t)`, clamped to [-1, 1].
fn predict_x0(x: f64, eps: f64, ab: f64) -> f64 {
    ((x - (1.0 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1.0, 1.0)
}

/// One step of the DDPM posterior between strided timesteps: mean `μ̃(x_t, x̂_0)`, variance `β̃`.
fn ddpm_step<R: Rng>(x: &[f32], eps: &[f32], ab: f64, ab_prev: f64, last: bool, rng: &mut R) -> Vec<f32> {
    let beta = 1.0 - ab / ab_prev;
    let c0 = ab_prev.sqrt() * beta / (1.0 - ab);
    let ct = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
    let std = (beta * (1.0 - ab_prev) / (1.0 - ab)).max(0.0).sqrt();
    x.iter()
        .zip(eps)
        .map(|(&xt, &e)| {
            let x0 = predict_x0(xt as f64, e as f64, ab);
            let noise: f64 = if last { 0.0 } else { rng.sample::<f64, _>(StandardNormal) };
            (c0 * x0 + ct * xt as f64 + std * noise) as f32
        })
        .collect()
}

/// One DDIM step: `x_{t'} = sqrt(ᾱ')·x̂_0 + sqrt(1−ᾱ'−σ²)·ε̂ + σ·z`, `σ = η·sqrt((1−ᾱ')/(1−ᾱ)·(1−ᾱ/ᾱ'))`.
fn ddim_step<R: Rng>(x: &[f32], eps: &[f32], ab: f64, ab_prev: f64, eta: f64, last: bool, rng: &mut R) -> Vec<f32> {
    let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)).max(0.0).sqrt();
    let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
    x.iter()
        .zip(eps)
        .map(|(&xt, &eps_t)| {
            let x0 = predict_x0(xt as f64, eps_t as f64, ab);
            // Recomputing ε from the clamped x̂_0 keeps the step consistent with the clamp.
            let e = (xt as f64 - ab.sqrt() * x0) / (1.0 - ab).sqrt();
            let noise: f64 = if last || sigma == 0.0 { 0.0 } else { rng.sample::<f64, _>(StandardNormal) };
            (ab_prev.sqrt() * x0 + dir * e + sigma * noise) as f32
        })
        .collect()
}
