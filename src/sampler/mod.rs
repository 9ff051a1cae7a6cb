//! Seeded samplers with classifier-free guidance, bitwise reproducible on CPU: DDPM ancestral and DDIM for ε-
//! and v-prediction models, Euler and Heun for rectified flows. The checkpoint's parametrisation decides
//! which may run ([`SamplerConfig::for_param`]).
//!
//! The model runs once per step (Heun: twice) on the stacked `[conditional; null]` batch; the update is host
//! math (`steps`). On the CPU with more than one rayon thread the two halves run side by side instead, the null
//! half on a copy of the model on a second `Cpu` device (dfdx's allocation cache must not be used from two
//! threads at once): one fork-join per step rather than one per layer, and each layer's serial work overlaps the
//! other half's. Every layer computes each row on its own, so the result is the batched one, bit for bit.

mod steps;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use std::any::Any;

use crate::device::{cpu, Backend, CpuDevice};
use crate::model::{Dit, ModelError, NoiseSchedule, Parametrisation, PAD};

/// Which reverse process to run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Ancestral sampling from the DDPM posterior `q(x_{t'} | x_t, x̂_0)` (Ho et al., arXiv:2006.11239); ε and v.
    Ddpm,
    /// DDIM (Song et al., arXiv:2010.02502) with stochasticity `eta` (0 = deterministic); ε and v. On a
    /// rectified flow, deterministic DDIM is the Euler step, and runs as [`SamplerKind::Euler`].
    Ddim,
    /// Euler integration of a rectified flow's ODE `dx/dt = v(x, t)` from `t = 1` to 0 (flow only).
    Euler,
    /// Heun's second-order method on the same ODE (Karras et al., arXiv:2206.00364; flow only): two model calls
    /// per step, one on the last.
    Heun,
}

/// Sampler settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// The reverse process.
    pub kind: SamplerKind,
    /// Number of denoising steps (strided over the training timesteps).
    pub steps: usize,
    /// Guidance weight `w` in `out = out_uncond + w · (out_cond − out_uncond)` (on ε, v or the velocity);
    /// 1 = no guidance.
    pub cfg_scale: f32,
    /// DDIM noise level (ignored by the other samplers).
    pub eta: f32,
}

impl SamplerConfig {
    /// Deterministic DDIM with `steps` steps and guidance `cfg_scale`.
    pub fn ddim(steps: usize, cfg_scale: f32) -> Self {
        SamplerConfig { kind: SamplerKind::Ddim, steps, cfg_scale, eta: 0.0 }
    }

    /// The sampler that runs on a model of parametrisation `param`: DDPM and DDIM on ε and v; Euler and Heun
    /// on a flow, where deterministic DDIM (`eta = 0`, the default everywhere) becomes Euler, the same update.
    /// Any other pairing is an error saying which samplers the model takes.
    pub fn for_param(&self, param: Parametrisation) -> Result<SamplerConfig, ModelError> {
        let flow = param == Parametrisation::Flow;
        match self.kind {
            SamplerKind::Ddim if flow && self.eta == 0.0 => Ok(SamplerConfig { kind: SamplerKind::Euler, ..*self }),
            SamplerKind::Ddim | SamplerKind::Ddpm if flow => Err(ModelError::Config(format!(
                "the {} sampler{} needs an ε- or v-prediction model; this one is a rectified flow (samplers: euler, \
                 heun, or ddim with eta 0)",
                self.name(),
                if self.kind == SamplerKind::Ddim { format!(" with eta {}", self.eta) } else { String::new() }
            ))),
            SamplerKind::Euler | SamplerKind::Heun if !flow => Err(ModelError::Config(format!(
                "the {} sampler needs a rectified-flow model; this one is {} (samplers: ddim, ddpm)",
                self.name(),
                param.describe()
            ))),
            _ => Ok(*self),
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            SamplerKind::Ddim => "DDIM",
            SamplerKind::Ddpm => "DDPM",
            SamplerKind::Euler => "Euler",
            SamplerKind::Heun => "Heun",
        }
    }

    /// A short description, e.g. `DDIM 20 steps, cfg 5` (`, eta 0.5` when DDIM is not deterministic).
    pub fn describe(&self) -> String {
        let eta = match self.kind {
            SamplerKind::Ddim if self.eta != 0.0 => format!(", eta {}", self.eta),
            _ => String::new(),
        };
        format!("{} {} steps, cfg {}{eta}", self.name(), self.steps, self.cfg_scale)
    }
}

/// Strided timesteps, descending, "trailing" spacing: `T−1, T−1−T/S, …` (`S` = `steps`, clamped to `1..=T`).
pub fn timesteps(n_train: usize, steps: usize) -> Vec<usize> {
    let s = steps.clamp(1, n_train.max(1));
    (0..s)
        .map(|i| ((n_train as f64 - i as f64 * n_train as f64 / s as f64).round() as usize).saturating_sub(1))
        .collect()
}

/// Computes the guided prediction (ε, v or velocity) for images `x` (flattened CHW) at timestep `t`, one forward
/// on `[cond; null]`. With `cfg_scale == 1` only the conditional half is run.
pub fn guided_prediction<D: Backend>(
    model: &Dit<D>,
    x: &[f32],
    t: usize,
    tokens: &[Vec<usize>],
    cfg_scale: f32,
) -> Result<Vec<f32>, ModelError> {
    let (cond, uncond) = cond_uncond(model, x, t, tokens, cfg_scale)?;
    Ok(match uncond {
        Some(uncond) => guide(&cond, &uncond, cfg_scale),
        None => cond,
    })
}

/// Classifier-free guidance on the network outputs: `u + scale · (c − u)` per value.
fn guide(cond: &[f32], uncond: &[f32], scale: f32) -> Vec<f32> {
    uncond.iter().zip(cond).map(|(u, c)| u + scale * (c - u)).collect()
}

/// Computes the conditional and the unconditional (null-caption) prediction in one forward on `[cond; null]`;
/// with `cfg_scale == 1` only the conditional half is run and the unconditional one is `None`.
pub fn cond_uncond<D: Backend>(
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
    let mut out = model.forward(model.images(both)?, &vec![t; 2 * b], &caps)?.as_vec();
    let uncond = out.split_off(x.len());
    Ok((out, Some(uncond)))
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
    let per = model.config().image_len();
    let on_cpu = (model as &dyn Any).downcast_ref::<Dit<CpuDevice>>();
    if let Some(model) = on_cpu.filter(|_| cfg.cfg_scale != 1.0 && rayon::current_num_threads() > 1) {
        let twin = model.to_device(&cpu())?;
        return denoise(schedule, cfg, tokens.len(), per, rng, |x, t| {
            guided_side_by_side(model, &twin, x, t, tokens, cfg.cfg_scale)
        });
    }
    denoise(schedule, cfg, tokens.len(), per, rng, |x, t| guided_prediction(model, x, t, tokens, cfg.cfg_scale))
}

/// [`guided_prediction`] on the CPU with the conditional half on `model` and the null half on `twin` (the same
/// weights on another device), run side by side on two rayon workers.
fn guided_side_by_side(
    model: &Dit<CpuDevice>,
    twin: &Dit<CpuDevice>,
    x: &[f32],
    t: usize,
    tokens: &[Vec<usize>],
    cfg_scale: f32,
) -> Result<Vec<f32>, ModelError> {
    let ts = vec![t; tokens.len()];
    let null: Vec<Vec<usize>> = tokens.iter().map(|c| vec![PAD; c.len()]).collect();
    let run = |m: &Dit<CpuDevice>, caps: &[Vec<usize>]| -> Result<Vec<f32>, ModelError> {
        Ok(m.forward(m.images(x.to_vec())?, &ts, caps)?.as_vec())
    };
    let (cond, uncond) = rayon::join(|| run(model, tokens), || run(twin, &null));
    Ok(guide(&cond?, &uncond?, cfg_scale))
}

/// The sampling loop for any denoiser: `predict(x, t)` is the guided network output (in the schedule's
/// parametrisation) for the `n` images `x` (`image_len` values each) at timestep index `t`. Starts from
/// `N(0, I)` noise drawn from `rng`, runs `cfg`'s update rule (checked against the parametrisation with
/// [`SamplerConfig::for_param`]) over the strided timesteps, and returns the images clamped to [-1, 1].
pub fn denoise<R: Rng>(
    schedule: &NoiseSchedule,
    cfg: &SamplerConfig,
    n: usize,
    image_len: usize,
    rng: &mut R,
    mut predict: impl FnMut(&[f32], usize) -> Result<Vec<f32>, ModelError>,
) -> Result<Vec<Vec<f32>>, ModelError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if !(cfg.cfg_scale.is_finite() && cfg.eta.is_finite() && cfg.eta >= 0.0) {
        return Err(ModelError::Config(format!(
            "sampler cfg_scale {} / eta {} must be finite, eta ≥ 0",
            cfg.cfg_scale, cfg.eta
        )));
    }
    let cfg = cfg.for_param(schedule.param)?;
    let param = schedule.param;
    let mut x: Vec<f32> = (0..n * image_len).map(|_| rng.sample(StandardNormal)).collect();
    let ts = timesteps(schedule.n_steps(), cfg.steps);
    for (i, &t) in ts.iter().enumerate() {
        let next = ts.get(i + 1).copied();
        let last = next.is_none();
        let out = predict(&x, t)?;
        let ab = (schedule.alphas_cumprod[t], next.map_or(1.0, |tp| schedule.alphas_cumprod[tp]));
        let time = (schedule.flow_time(t), next.map_or(0.0, |tp| schedule.flow_time(tp)));
        x = match cfg.kind {
            SamplerKind::Ddpm => steps::ddpm(param, &x, &out, ab, last, rng),
            SamplerKind::Ddim => steps::ddim(param, &x, &out, ab, cfg.eta as f64, last, rng),
            SamplerKind::Euler => steps::euler(&x, &out, time.0, time.1),
            SamplerKind::Heun => match next {
                Some(tp) => {
                    let guess = steps::euler(&x, &out, time.0, time.1);
                    steps::heun(&x, &out, &predict(&guess, tp)?, time.0, time.1)
                }
                None => steps::euler(&x, &out, time.0, time.1),
            },
        };
    }
    Ok(x.chunks(image_len).map(|c| c.iter().map(|v| v.clamp(-1.0, 1.0)).collect()).collect())
}
