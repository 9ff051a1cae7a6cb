//! What a denoiser predicts and the forward process it was trained on: ε-prediction and v-prediction on a
//! variance-preserving schedule, or rectified-flow velocity on the straight path from data to noise.
//!
//! Every parametrisation writes the noised image as `x_t = a_t·x_0 + s_t·ε` on the schedule's grid of `T`
//! timestep indices `k = 0..T`; they differ in `(a_t, s_t)` and in what the network is trained to output:
//!
//! | parametrisation | `(a_t, s_t)` at index `k` | target |
//! |---|---|---|
//! | `epsilon` | `(√ᾱ_k, √(1 − ᾱ_k))` | `ε` (Ho et al. 2020, arXiv 2006.11239) |
//! | `v` | `(√ᾱ_k, √(1 − ᾱ_k))` | `v = a_t·ε − s_t·x_0` (Salimans & Ho 2022, arXiv 2202.00512, §4) |
//! | `flow` | `(1 − t, t)`, `t = (k + 1)/T ∈ (0, 1]` | `ε − x_0` (rectified flow, Liu et al. 2022, arXiv 2209.03003) |
//!
//! The flow time is continuous in the papers; here it lives on the same grid of `T` values as the other
//! parametrisations (the network's time input is an index), so `t = 1/T … 1` in steps of `1/T`.

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// What the network outputs, and the forward process `x_t = a_t·x_0 + s_t·ε` it is trained on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Parametrisation {
    /// ε-prediction on a variance-preserving schedule: target `ε`.
    #[default]
    #[value(name = "eps", alias = "epsilon")]
    Epsilon,
    /// v-prediction on a variance-preserving schedule: target `v = a_t·ε − s_t·x_0`.
    V,
    /// Rectified-flow velocity: `x_t = (1 − t)·x_0 + t·ε`, target `ε − x_0`.
    Flow,
}

/// How training draws the timestep index of each noised image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TimeSampling {
    /// Uniform over the `T` indices.
    #[default]
    Uniform,
    /// `t = sigmoid(u)`, `u ~ N(0, 1)`, rounded up to the grid: SD3's best sampler, "lognorm(0.00, 1.00)"
    /// (Esser et al. 2024, arXiv 2403.03206, §3.1 and Table 1), which weights the middle of the path.
    LogitNormal,
}

impl Parametrisation {
    /// The name a checkpoint records and `--param` takes (`eps`, `v`, `flow`).
    pub fn cli_name(self) -> &'static str {
        match self {
            Parametrisation::Epsilon => "eps",
            Parametrisation::V => "v",
            Parametrisation::Flow => "flow",
        }
    }

    /// What the training error `err(M, x)` measures, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Parametrisation::Epsilon => "ε-prediction",
            Parametrisation::V => "v-prediction",
            Parametrisation::Flow => "rectified-flow velocity",
        }
    }

    /// The training target for one value: `ε`, `a·ε − s·x_0` or `ε − x_0`.
    pub fn target(self, x0: f32, eps: f32, a: f32, s: f32) -> f32 {
        match self {
            Parametrisation::Epsilon => eps,
            Parametrisation::V => a * eps - s * x0,
            Parametrisation::Flow => eps - x0,
        }
    }

    /// The clean image and the noise that the network output `out` at `x_t = a·x_0 + s·ε` implies, `(x̂_0, ε̂)`.
    ///
    /// ε: `x̂_0 = (x − s·out)/a`; v (`a² + s² = 1`): `x̂_0 = a·x − s·out`, `ε̂ = s·x + a·out`; flow (`a = 1 − s`):
    /// `x̂_0 = x − s·out`, `ε̂ = x + a·out`.
    pub fn split(self, x: f64, out: f64, a: f64, s: f64) -> (f64, f64) {
        match self {
            Parametrisation::Epsilon => ((x - s * out) / a, out),
            Parametrisation::V => (a * x - s * out, s * x + a * out),
            Parametrisation::Flow => (x - s * out, x + a * out),
        }
    }
}

/// What `err(M, x)` means for a model of parametrisation `param`, relative to the ε error the shipped constants
/// were written for; `None` for ε-prediction.
///
/// From [`Parametrisation::split`]: `ε̂ − ε = a_t·(v̂ − v)` with `a_t² = ᾱ_t`, and `ε̂ − ε = (1 − t)·(û − u)` for a
/// flow, so the v error is the ε error × `1/ᾱ_t` and the velocity error the ε error × `1/(1 − t)²`. Diffusion-DPO's
/// per-timestep weight `ω(λ_t)` (Wallace et al., arXiv 2311.12908, Eq. 14) becomes that factor.
pub fn err_weighting_note(param: Parametrisation) -> Option<String> {
    let factor = match param {
        Parametrisation::Epsilon => return None,
        Parametrisation::V => "1/ᾱ_t",
        Parametrisation::Flow => "1/(1 − t)²",
    };
    Some(format!(
        "the base model is a {} model, so `err(M, x)` is its own training error: the ε error of the same \
         prediction × {factor}, the timestep weight that Diffusion-DPO's ω(λ_t) becomes; β and the other constants \
         multiply that error",
        param.describe()
    ))
}

impl TimeSampling {
    /// Draws one timestep index in `0..n`. `Uniform` is one `gen_range` call (the draw every earlier run made).
    pub fn draw<R: Rng + ?Sized>(self, n: usize, rng: &mut R) -> usize {
        match self {
            TimeSampling::Uniform => rng.gen_range(0..n),
            TimeSampling::LogitNormal => {
                let u: f64 = rng.sample(StandardNormal);
                let t = 1.0 / (1.0 + (-u).exp());
                ((t * n as f64).ceil() as usize).clamp(1, n) - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn split_inverts_the_forward_process_and_the_target() {
        let (x0, eps) = (0.3f64, -1.2f64);
        for (p, a, s) in [
            (Parametrisation::Epsilon, 0.6f64, 0.8f64),
            (Parametrisation::V, 0.6, 0.8),
            (Parametrisation::Flow, 0.25, 0.75),
        ] {
            let x = a * x0 + s * eps;
            let out = p.target(x0 as f32, eps as f32, a as f32, s as f32) as f64;
            let (x0_hat, eps_hat) = p.split(x, out, a, s);
            assert!((x0_hat - x0).abs() < 1e-6 && (eps_hat - eps).abs() < 1e-6, "{p:?}: {x0_hat} {eps_hat}");
        }
    }

    /// The factors [`err_weighting_note`] states: the ε error of a prediction is `a_t²` (v) or `(1 − t)²` (flow)
    /// times its own error.
    #[test]
    fn epsilon_error_is_the_own_error_times_the_stated_factor() {
        let (x0, eps, out) = (0.4f64, 0.9f64, -0.3f64);
        for (p, a, s, factor) in
            [(Parametrisation::V, 0.6f64, 0.8f64, 0.36f64), (Parametrisation::Flow, 0.25, 0.75, 0.0625)]
        {
            let x = a * x0 + s * eps;
            let own = (out - p.target(x0 as f32, eps as f32, a as f32, s as f32) as f64).powi(2);
            let eps_err = (p.split(x, out, a, s).1 - eps).powi(2);
            assert!((eps_err - factor * own).abs() < 1e-6, "{p:?}: {eps_err} vs {factor} × {own}");
        }
        assert!(err_weighting_note(Parametrisation::Epsilon).is_none());
        assert!(err_weighting_note(Parametrisation::Flow).unwrap().contains("1/(1 − t)²"));
    }

    #[test]
    fn logit_normal_draws_stay_on_the_grid_and_favour_the_middle() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws: Vec<usize> = (0..4000).map(|_| TimeSampling::LogitNormal.draw(1000, &mut rng)).collect();
        assert!(draws.iter().all(|&k| k < 1000));
        let middle = draws.iter().filter(|&&k| (250..750).contains(&k)).count() as f64 / 4000.0;
        // P(|u| < logit(0.75)) = P(|u| < 1.0986) ≈ 0.728 for u ~ N(0, 1); uniform would give 0.5.
        assert!((middle - 0.728).abs() < 0.03, "{middle}");
    }
}
