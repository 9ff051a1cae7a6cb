//! DDPM noise schedules (linear, scaled-linear, cosine), the parametrisation a model was trained with, and
//! forward noising `q(x_t | x_0)` with its training target on the host.

use super::param::{Parametrisation, TimeSampling};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the betas are laid out over `t = 0..T`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `beta_t` linear from 1e-4 to 0.02 (Ho et al. 2020, arXiv:2006.11239), rescaled for `T ≠ 1000`.
    Linear,
    /// `sqrt(beta_t)` linear from `sqrt(0.00085)` to `sqrt(0.012)` (Stable Diffusion).
    ScaledLinear,
    /// `alphas_cumprod(t) ∝ cos²((t/T + s)/(1 + s) · π/2)`, s = 0.008 (Nichol & Dhariwal, arXiv:2102.09672).
    Cosine,
}

/// The noise schedule a model was trained with, as a checkpoint records it: the beta layout, `T`, the
/// parametrisation and the training timestep sampler.
///
/// A recorded schedule without `param` or `time` (every checkpoint written before they existed) is
/// ε-prediction with uniform timesteps.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Beta layout (unused by a rectified flow, whose path is `(1 − t, t)`).
    pub kind: ScheduleKind,
    /// Number of training timesteps `T` (for a flow: the resolution of its time grid).
    pub n_steps: usize,
    /// What the network predicts.
    #[serde(default)]
    pub param: Parametrisation,
    /// How training draws timesteps.
    #[serde(default)]
    pub time: TimeSampling,
}

impl ScheduleSpec {
    /// Linear betas over 1000 steps, ε-prediction, uniform timesteps: what a checkpoint that records no
    /// schedule was trained with.
    pub fn default_linear() -> Self {
        ScheduleSpec::epsilon(ScheduleKind::Linear, 1000)
    }

    /// ε-prediction with uniform timesteps on `kind` betas over `n_steps`.
    pub fn epsilon(kind: ScheduleKind, n_steps: usize) -> Self {
        ScheduleSpec { kind, n_steps, param: Parametrisation::Epsilon, time: TimeSampling::Uniform }
    }

    /// Builds the schedule.
    pub fn build(&self) -> NoiseSchedule {
        NoiseSchedule { param: self.param, time: self.time, ..NoiseSchedule::new(self.kind, self.n_steps) }
    }
}

/// Betas and their cumulative products for `T` steps, with the parametrisation that reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    /// Which schedule this is.
    pub kind: ScheduleKind,
    /// What the network predicts; decides the forward process and the target.
    pub param: Parametrisation,
    /// How training draws timesteps.
    pub time: TimeSampling,
    /// `beta_t`, `t = 0..T`.
    pub betas: Vec<f64>,
    /// `alphas_cumprod[t] = Π_{s ≤ t} (1 − beta_s)`.
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds an ε-prediction schedule with `n_steps` timesteps (`T`, usually 1000) and uniform timestep
    /// draws; `n_steps` is raised to at least 2.
    pub fn new(kind: ScheduleKind, n_steps: usize) -> Self {
        let n = n_steps.max(2);
        let scale = 1000.0 / n as f64;
        let betas: Vec<f64> = match kind {
            ScheduleKind::Linear => {
                let (lo, hi) = (1e-4 * scale, 0.02 * scale);
                (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
            }
            ScheduleKind::ScaledLinear => {
                let (lo, hi) = (0.00085f64.sqrt(), 0.012f64.sqrt());
                (0..n).map(|i| (lo + (hi - lo) * i as f64 / (n - 1) as f64).powi(2)).collect()
            }
            ScheduleKind::Cosine => {
                let f = |t: f64| ((t / n as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n).map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999)).collect()
            }
        };
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        NoiseSchedule { kind, param: Parametrisation::Epsilon, time: TimeSampling::Uniform, betas, alphas_cumprod }
    }

    /// The default: linear betas over 1000 steps.
    pub fn default_linear() -> Self {
        Self::new(ScheduleKind::Linear, 1000)
    }

    /// Number of timesteps `T`.
    pub fn n_steps(&self) -> usize {
        self.betas.len()
    }

    /// The flow time of index `t`: `(t + 1)/T`, so the grid runs from `1/T` to 1.
    pub fn flow_time(&self, t: usize) -> f64 {
        (t.min(self.n_steps() - 1) + 1) as f64 / self.n_steps() as f64
    }

    /// `(a_t, s_t)` of `x_t = a_t·x_0 + s_t·ε` at index `t` (clamped to `T − 1`): `(√ᾱ_t, √(1 − ᾱ_t))`, or
    /// `(1 − t, t)` for a flow.
    pub fn coefficients(&self, t: usize) -> (f64, f64) {
        match self.param {
            Parametrisation::Flow => {
                let time = self.flow_time(t);
                (1.0 - time, time)
            }
            Parametrisation::Epsilon | Parametrisation::V => {
                let ab = self.alphas_cumprod[t.min(self.n_steps() - 1)];
                (ab.sqrt(), (1.0 - ab).sqrt())
            }
        }
    }

    /// Draws one training timestep index with the schedule's [`TimeSampling`].
    pub fn draw_t<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        self.time.draw(self.n_steps(), rng)
    }

    /// Computes `x_t = a_t·x0 + s_t·eps` for one or more images sharing `t`; `t` is clamped to `T − 1`.
    pub fn q_sample(&self, x0: &[f32], t: usize, eps: &[f32]) -> Vec<f32> {
        let (a, s) = self.coefficients(t);
        let (a, s) = (a as f32, s as f32);
        x0.iter().zip(eps).map(|(x, e)| a * x + s * e).collect()
    }

    /// The training target at `t` for clean images `x0` and noise `eps` (see [`Parametrisation::target`]).
    pub fn target(&self, x0: &[f32], t: usize, eps: &[f32]) -> Vec<f32> {
        let (a, s) = self.coefficients(t);
        x0.iter().zip(eps).map(|(&x, &e)| self.param.target(x, e, a as f32, s as f32)).collect()
    }

    /// Applies [`NoiseSchedule::target`] per image, as [`NoiseSchedule::q_sample_batch`] does.
    pub fn target_batch(&self, x0: &[f32], t: &[usize], eps: &[f32], image_len: usize) -> Vec<f32> {
        per_image(x0, t, eps, image_len, |x, ti, e| self.target(x, ti, e))
    }

    /// Applies [`NoiseSchedule::q_sample`] per image: `x0`, `eps` hold `t.len()` images of `image_len` values.
    ///
    /// Images missing from a too-short `x0` or `eps` are left out of the result (it never panics).
    pub fn q_sample_batch(&self, x0: &[f32], t: &[usize], eps: &[f32], image_len: usize) -> Vec<f32> {
        per_image(x0, t, eps, image_len, |x, ti, e| self.q_sample(x, ti, e))
    }
}

/// Applies `f(x0_i, t_i, eps_i)` to each image `i` and concatenates the results; images missing from a
/// too-short `x0` or `eps` are left out.
fn per_image(
    x0: &[f32],
    t: &[usize],
    eps: &[f32],
    image_len: usize,
    f: impl Fn(&[f32], usize, &[f32]) -> Vec<f32>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x0.len());
    for (i, &ti) in t.iter().enumerate() {
        let r = i * image_len..(i + 1) * image_len;
        if let (Some(x), Some(e)) = (x0.get(r.clone()), eps.get(r)) {
            out.extend(f(x, ti, e));
        }
    }
    out
}
