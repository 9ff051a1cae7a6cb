//! The update rules: one reverse step from `x_t` given the (guided) network output, for every
//! parametrisation. DDPM and DDIM read the output through [`Parametrisation::split`]; Euler and Heun integrate
//! a rectified flow's velocity.

use crate::model::Parametrisation;
use rand::Rng;
use rand_distr::StandardNormal;

/// `(x̂_0, ε̂)` for one value at `ᾱ_t = ab`, with `x̂_0` clamped to [-1, 1] and `ε̂` recomputed from the clamped
/// `x̂_0` so the step stays consistent with the clamp.
fn clean_and_noise(param: Parametrisation, x: f64, out: f64, ab: f64) -> (f64, f64) {
    let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
    let x0 = param.split(x, out, a, s).0.clamp(-1.0, 1.0);
    (x0, (x - a * x0) / s)
}

/// One step of the DDPM posterior between strided timesteps: mean `μ̃(x_t, x̂_0)`, variance `β̃`.
pub(super) fn ddpm<R: Rng>(
    param: Parametrisation,
    x: &[f32],
    out: &[f32],
    (ab, ab_prev): (f64, f64),
    last: bool,
    rng: &mut R,
) -> Vec<f32> {
    let beta = 1.0 - ab / ab_prev;
    let c0 = ab_prev.sqrt() * beta / (1.0 - ab);
    let ct = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
    let std = (beta * (1.0 - ab_prev) / (1.0 - ab)).max(0.0).sqrt();
    x.iter()
        .zip(out)
        .map(|(&xt, &o)| {
            let (x0, _) = clean_and_noise(param, xt as f64, o as f64, ab);
            let noise: f64 = if last { 0.0 } else { rng.sample::<f64, _>(StandardNormal) };
            (c0 * x0 + ct * xt as f64 + std * noise) as f32
        })
        .collect()
}

/// One DDIM step: `x_{t'} = sqrt(ᾱ')·x̂_0 + sqrt(1−ᾱ'−σ²)·ε̂ + σ·z`, `σ = η·sqrt((1−ᾱ')/(1−ᾱ)·(1−ᾱ/ᾱ'))`.
pub(super) fn ddim<R: Rng>(
    param: Parametrisation,
    x: &[f32],
    out: &[f32],
    (ab, ab_prev): (f64, f64),
    eta: f64,
    last: bool,
    rng: &mut R,
) -> Vec<f32> {
    let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)).max(0.0).sqrt();
    let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
    x.iter()
        .zip(out)
        .map(|(&xt, &o)| {
            let (x0, e) = clean_and_noise(param, xt as f64, o as f64, ab);
            let noise: f64 = if last || sigma == 0.0 { 0.0 } else { rng.sample::<f64, _>(StandardNormal) };
            (ab_prev.sqrt() * x0 + dir * e + sigma * noise) as f32
        })
        .collect()
}

/// One Euler step of the flow ODE `dx/dt = v(x, t)` from `t` to `t'`: `x + (t' − t)·v`. With `v = ε̂ − x̂_0`
/// this equals `(1 − t')·x̂_0 + t'·ε̂`, deterministic DDIM's update on the flow's path.
pub(super) fn euler(x: &[f32], velocity: &[f32], t: f64, t_next: f64) -> Vec<f32> {
    let h = (t_next - t) as f32;
    x.iter().zip(velocity).map(|(&xi, &v)| xi + h * v).collect()
}

/// Heun's correction (Karras et al. 2022, arXiv 2206.00364, Algorithm 1): `x + (t' − t)·(v + v')/2`, where
/// `v'` is the velocity at the Euler estimate of `x_{t'}`.
pub(super) fn heun(x: &[f32], velocity: &[f32], velocity_next: &[f32], t: f64, t_next: f64) -> Vec<f32> {
    let h = (t_next - t) as f32;
    x.iter().zip(velocity).zip(velocity_next).map(|((&xi, &v), &w)| xi + h * 0.5 * (v + w)).collect()
}
