//! The per-sample quantities of a noise draw that objectives read (`timestep`, `alpha`, `sigma`, `snr` in
//! `.obj` files), defined in one place per parametrisation of the forward process `x_t = alpha x_0 + sigma eps`.

use super::{NoiseSchedule, Parametrisation};

/// What an objective can read about the noise level of one draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeValues {
    /// Diffusion time in (0, 1]: `(t + 1) / T` for the discrete index `t = 0..T` (1 is pure noise).
    pub timestep: f64,
    /// Signal scale `alpha` in `x_t = alpha x_0 + sigma eps`.
    pub alpha: f64,
    /// Noise scale `sigma`.
    pub sigma: f64,
    /// Signal-to-noise ratio `alpha^2 / sigma^2`.
    pub snr: f64,
}

impl NoiseSchedule {
    /// The values at discrete timestep `t` (clamped to `T − 1`), in the schedule's parametrisation. For ε- and
    /// v-prediction with cumulative product `ᾱ_t` (Ho et al. 2020, arXiv:2006.11239): `alpha = sqrt(ᾱ_t)`,
    /// `sigma = sqrt(1 − ᾱ_t)`, `snr = ᾱ_t / (1 − ᾱ_t)` (Kingma et al. 2021, arXiv:2107.00630). For a rectified
    /// flow (Liu et al. 2022, arXiv:2209.03003): `alpha = 1 − timestep`, `sigma = timestep`, the coefficients of
    /// its path ([`NoiseSchedule::coefficients`]).
    pub fn time_values(&self, t: usize) -> TimeValues {
        let t = t.min(self.n_steps() - 1);
        let timestep = (t + 1) as f64 / self.n_steps() as f64;
        if self.param == Parametrisation::Flow {
            let (alpha, sigma) = self.coefficients(t);
            return TimeValues { timestep, alpha, sigma, snr: alpha * alpha / (sigma * sigma) };
        }
        let ab = self.alphas_cumprod[t];
        TimeValues { timestep, alpha: ab.sqrt(), sigma: (1.0 - ab).sqrt(), snr: ab / (1.0 - ab) }
    }
}
