//! DDPM noise schedules (linear, scaled-linear, cosine) and forward noising `q(x_t | x_0)` on the host.

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

/// The noise schedule a model was trained with, as a checkpoint records it: the beta layout and `T`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Beta layout.
    pub kind: ScheduleKind,
    /// Number of training timesteps `T`.
    pub n_steps: usize,
}

impl ScheduleSpec {
    /// Linear betas over 1000 steps: what a checkpoint that records no schedule was trained with.
    pub fn default_linear() -> Self {
        ScheduleSpec { kind: ScheduleKind::Linear, n_steps: 1000 }
    }

    /// Builds the schedule.
    pub fn build(&self) -> NoiseSchedule {
        NoiseSchedule::new(self.kind, self.n_steps)
    }
}

/// Betas and their cumulative products for `T` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    /// Which schedule this is.
    pub kind: ScheduleKind,
    /// `beta_t`, `t = 0..T`.
    pub betas: Vec<f64>,
    /// `alphas_cumprod[t] = Π_{s ≤ t} (1 − beta_s)`.
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds a schedule with `n_steps` timesteps (`T`, usually 1000); `n_steps` is raised to at least 2.
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
        NoiseSchedule { kind, betas, alphas_cumprod }
    }

    /// The default: linear betas over 1000 steps.
    pub fn default_linear() -> Self {
        Self::new(ScheduleKind::Linear, 1000)
    }

    /// Number of timesteps `T`.
    pub fn n_steps(&self) -> usize {
        self.betas.len()
    }

    /// Computes `x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·eps` for one or more images sharing `t`; `t` is clamped to `T − 1`.
    pub fn q_sample(&self, x0: &[f32], t: usize, eps: &[f32]) -> Vec<f32> {
        let ab = self.alphas_cumprod[t.min(self.n_steps() - 1)];
        let (a, s) = (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32);
        x0.iter().zip(eps).map(|(x, e)| a * x + s * e).collect()
    }

    /// Applies [`NoiseSchedule::q_sample`] per image: `x0`, `eps` hold `t.len()` images of `image_len` values.
    ///
    /// Images missing from a too-short `x0` or `eps` are left out of the result (it never panics).
    pub fn q_sample_batch(&self, x0: &[f32], t: &[usize], eps: &[f32], image_len: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(x0.len());
        for (i, &ti) in t.iter().enumerate() {
            let r = i * image_len..(i + 1) * image_len;
            if let (Some(x), Some(e)) = (x0.get(r.clone()), eps.get(r)) {
                out.extend(self.q_sample(x, ti, e));
            }
        }
        out
    }
}
