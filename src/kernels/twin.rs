//! CPU twins of the CUDA kernels: plain Rust with the same formulas as `pair_loss.cu` and `ddim_cfg.cu`.
//! They are the `Cpu` implementation of [`super::KernelDevice`] and the oracle the GPU tests compare against.

use super::DdimInputs;

/// Per-sample results of [`pair_loss`]; rows `0..P` are winners, rows `P..2P` losers (or reference samples).
#[derive(Clone, Debug, PartialEq)]
pub struct PairLossHost {
    /// `e_theta` per row: `mean_{C,H,W} (pred_pol − eps)²`, `2P` values.
    pub e_pol: Vec<f32>,
    /// `e_ref` per row: `mean_{C,H,W} (pred_ref − eps)²`, `2P` values.
    pub e_ref: Vec<f32>,
    /// `−log σ(z_i)` per pair, `P` values.
    pub loss: Vec<f32>,
}

impl PairLossHost {
    /// The batch loss `mean_i loss[i]`.
    pub fn mean_loss(&self) -> f32 {
        (self.loss.iter().map(|&v| v as f64).sum::<f64>() / self.loss.len().max(1) as f64) as f32
    }
}

/// Computes the fused DPO-family pair loss and its gradient w.r.t. `pred_pol` (see `pair_loss.cu`):
///
/// `z_i = −β/2 · ((e_θ(w) − e_ref(w)) − s_i · (e_θ(l) − e_ref(l)))`, `loss_i = softplus(−z_i)`, `L = mean_i loss_i`,
/// `∂L/∂pred_pol[w] = β·σ(−z_i)/(P·n) · (pred_pol[w] − eps[w])` and
/// `∂L/∂pred_pol[l] = −s_i·β·σ(−z_i)/(P·n) · (pred_pol[l] − eps[l])`, with `n = C·H·W`.
///
/// `pred_pol`, `pred_ref` and `eps` hold `2P` rows of `n` values; `gate` holds `P` values. Sums run in f64.
pub fn pair_loss(
    pred_pol: &[f32],
    pred_ref: &[f32],
    eps: &[f32],
    gate: &[f32],
    beta: f32,
    n: usize,
) -> (PairLossHost, Vec<f32>) {
    let p = gate.len();
    let row_err = |pred: &[f32], r: usize| {
        let rows = r * n..(r + 1) * n;
        let sum: f64 = pred[rows.clone()].iter().zip(&eps[rows]).map(|(&a, &e)| ((a - e) as f64).powi(2)).sum();
        (sum / n as f64) as f32
    };
    let e_pol: Vec<f32> = (0..2 * p).map(|r| row_err(pred_pol, r)).collect();
    let e_ref: Vec<f32> = (0..2 * p).map(|r| row_err(pred_ref, r)).collect();
    let mut loss = Vec::with_capacity(p);
    let mut grad = vec![0.0f32; 2 * p * n];
    for (i, &s) in gate.iter().enumerate() {
        let z = -0.5 * beta * ((e_pol[i] - e_ref[i]) - s * (e_pol[p + i] - e_ref[p + i]));
        loss.push((-z).max(0.0) + (-z.abs()).exp().ln_1p());
        let c = beta * (1.0 / (1.0 + z.exp())) / n as f32 / p as f32;
        for (r, coef) in [(i, c), (p + i, -s * c)] {
            for j in r * n..(r + 1) * n {
                grad[j] = coef * (pred_pol[j] - eps[j]);
            }
        }
    }
    (PairLossHost { e_pol, e_ref, loss }, grad)
}

/// The per-step scalars of a DDIM update from `ᾱ_t = ab` to `ᾱ_{t'} = ab_prev` with noise level `eta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoeffs {
    /// Guidance weight `w`.
    pub cfg_scale: f64,
    /// `sqrt(ᾱ_t)`.
    pub sqrt_ab: f64,
    /// `sqrt(1 − ᾱ_t)`.
    pub sqrt_one_minus_ab: f64,
    /// `sqrt(ᾱ_{t'})`.
    pub sqrt_ab_prev: f64,
    /// `sqrt(1 − ᾱ_{t'} − σ²)`.
    pub dir: f64,
    /// `σ = η·sqrt((1 − ᾱ_{t'})/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_{t'}))`.
    pub sigma: f64,
}

impl DdimCoeffs {
    /// Computes the coefficients (Song et al., arXiv:2010.02502, Eq. 12 and 16).
    pub fn new(ab: f64, ab_prev: f64, eta: f64, cfg_scale: f64) -> Self {
        let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)).max(0.0).sqrt();
        DdimCoeffs {
            cfg_scale,
            sqrt_ab: ab.sqrt(),
            sqrt_one_minus_ab: (1.0 - ab).sqrt(),
            sqrt_ab_prev: ab_prev.sqrt(),
            dir: (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt(),
            sigma,
        }
    }

    /// The six scalars in the order `ddim_cfg.cu` reads them.
    pub fn to_f32(&self) -> [f32; 6] {
        [self.cfg_scale, self.sqrt_ab, self.sqrt_one_minus_ab, self.sqrt_ab_prev, self.dir, self.sigma]
            .map(|v| v as f32)
    }
}

/// One fused DDIM step with classifier-free guidance (see `ddim_cfg.cu`): guided ε in f32
/// (`u + w·(c − u)`, as the sampler combines it), the rest in f64.
pub fn ddim_cfg_step(inputs: &DdimInputs<'_>) -> Vec<f32> {
    let DdimInputs { x, eps_cond, eps_uncond, noise, coeffs: c } = *inputs;
    let w = c.cfg_scale as f32;
    (0..x.len())
        .map(|k| {
            let (xt, u) = (x[k] as f64, eps_uncond[k]);
            let e = (u + w * (eps_cond[k] - u)) as f64;
            let x0 = ((xt - c.sqrt_one_minus_ab * e) / c.sqrt_ab).clamp(-1.0, 1.0);
            let e2 = (xt - c.sqrt_ab * x0) / c.sqrt_one_minus_ab;
            let z = noise.map_or(0.0, |n| n[k]);
            (c.sqrt_ab_prev * x0 + c.dir * e2 + c.sigma * z) as f32
        })
        .collect()
}
