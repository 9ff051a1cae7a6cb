//! Parameter gradients, global-norm clipping, AdamW with warmup, and an EMA of the parameters.
//!
//! Everything is written with dfdx tensor ops on the flat parameters, so it runs on any [`Backend`].

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::dit::Dit;
use crate::device::{AdamStep, Backend, T1};
use crate::kernels::fused::OpPath;

/// Gradients of every model parameter, in [`Dit::specs`] order.
#[derive(Clone, Debug)]
pub struct ParamGrads<D: Backend> {
    /// One flat gradient per parameter.
    pub grads: Vec<Tensor<(usize,), f32, D>>,
}

impl<D: Backend> ParamGrads<D> {
    /// Collects the parameter gradients from the result of `loss.backward()`.
    ///
    /// The store must come from [`Dit::alloc_grads`] of the same model (it holds a slot for every parameter).
    pub fn collect(model: &Dit<D>, grads: &Gradients<f32, D>) -> Self {
        ParamGrads { grads: model.params().iter().map(|p| grads.get(p)).collect() }
    }

    /// Runs `loss.backward()` and collects the parameter gradients.
    pub fn backward(model: &Dit<D>, loss: Tensor<(), f32, D, OwnedTape<f32, D>>) -> Self {
        Self::collect(model, &loss.backward())
    }

    /// Computes the global L2 norm `sqrt(Σ_p ‖g_p‖²)`.
    pub fn global_norm(&self) -> f32 {
        let sq: f32 = self.grads.iter().map(|g| g.clone().square().sum::<Rank0, _>().array()).sum();
        sq.sqrt()
    }

    /// Scales all gradients by `max_norm / norm` when the global norm exceeds `max_norm`; returns the norm before.
    pub fn clip_global_norm(&mut self, max_norm: f32) -> f32 {
        let norm = self.global_norm();
        if norm.is_finite() && norm > max_norm && norm > 0.0 {
            let factor = max_norm / norm;
            for g in &mut self.grads {
                *g = g.clone() * factor;
            }
        }
        norm
    }

    /// Adds `other · weight` into these gradients (for summing losses computed in separate passes).
    pub fn add_scaled(&mut self, other: &ParamGrads<D>, weight: f32) {
        for (g, o) in self.grads.iter_mut().zip(&other.grads) {
            *g = g.clone() + o.clone() * weight;
        }
    }
}

/// Hyper-parameters of [`AdamW`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Decoupled weight decay, applied to matrices only (not biases, not 1-D parameters).
    pub weight_decay: f32,
    /// Linear warmup length in steps (0 = none).
    pub warmup_steps: usize,
}

impl AdamWConfig {
    /// `lr` with betas (0.9, 0.999), eps 1e-8, weight decay 0.01, no warmup.
    pub fn with_lr(lr: f32) -> Self {
        AdamWConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, warmup_steps: 0 }
    }
}

/// AdamW (Loshchilov & Hutter, arXiv:1711.05101) with decoupled weight decay and linear warmup.
#[derive(Clone, Debug)]
pub struct AdamW<D: Backend> {
    /// Hyper-parameters; `cfg.lr` may be changed between steps for a custom schedule.
    pub cfg: AdamWConfig,
    step: usize,
    m: Vec<T1<D>>,
    v: Vec<T1<D>>,
    decay: Vec<bool>,
    path: OpPath,
}

impl<D: Backend> AdamW<D> {
    /// Creates zeroed moment buffers shaped like `model`'s parameters; the update uses `model`'s [`OpPath`].
    pub fn new(model: &Dit<D>, cfg: AdamWConfig) -> Self {
        let dev = model.device();
        let zeros = || model.params().iter().map(|p| dev.zeros_like(p.shape())).collect::<Vec<_>>();
        let decay = model.specs().iter().map(|s| s.shape.len() >= 2 && !s.name.ends_with("embed")).collect();
        AdamW { cfg, step: 0, m: zeros(), v: zeros(), decay, path: model.op_path() }
    }

    /// The optimizer state as host vectors: `(step, first moments, second moments)`, in parameter order.
    pub fn state(&self) -> (usize, Vec<Vec<f32>>, Vec<Vec<f32>>) {
        (self.step, self.m.iter().map(|t| t.as_vec()).collect(), self.v.iter().map(|t| t.as_vec()).collect())
    }

    /// Restores a state from [`AdamW::state`]; the moments must match the parameters' lengths.
    pub fn restore(&mut self, step: usize, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) -> Result<(), String> {
        let fits = |xs: &[Vec<f32>], own: &[T1<D>]| {
            xs.len() == own.len() && xs.iter().zip(own).all(|(x, o)| x.len() == o.shape().0)
        };
        if !fits(&m, &self.m) || !fits(&v, &self.v) {
            return Err("optimizer moments do not match the model's parameters".into());
        }
        let dev = self.m.first().map(|t| t.device().clone());
        if let Some(dev) = dev {
            self.m = m
                .into_iter()
                .map(|x| {
                    let n = x.len();
                    dev.tensor_from_vec(x, (n,))
                })
                .collect();
            self.v = v
                .into_iter()
                .map(|x| {
                    let n = x.len();
                    dev.tensor_from_vec(x, (n,))
                })
                .collect();
        }
        self.step = step;
        Ok(())
    }

    /// Number of updates applied so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// Learning rate used at the next step: `lr · min(1, (step + 1) / warmup_steps)`.
    pub fn current_lr(&self) -> f32 {
        let warm = self.cfg.warmup_steps;
        if warm == 0 {
            self.cfg.lr
        } else {
            self.cfg.lr * ((self.step + 1) as f32 / warm as f32).min(1.0)
        }
    }

    /// Applies one AdamW update: `p ← p(1 − lr·wd) − lr · m̂ / (sqrt(v̂) + eps)`.
    pub fn update(&mut self, model: &mut Dit<D>, grads: &ParamGrads<D>) {
        let lr = self.current_lr();
        self.step += 1;
        let c = &self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        let params = model.params_mut();
        for (i, g) in grads.grads.iter().enumerate().take(params.len()) {
            let decay = if self.decay[i] { 1.0 - lr * c.weight_decay } else { 1.0 };
            let step = AdamStep { beta1: c.beta1, beta2: c.beta2, eps: c.eps, lr, bias_correction: (bc1, bc2), decay };
            self.path.adamw_update(&mut params[i], &mut self.m[i], &mut self.v[i], g, &step);
        }
    }
}

/// Exponential moving average of the parameters: `ema ← decay · ema + (1 − decay) · θ`.
#[derive(Clone, Debug)]
pub struct Ema<D: Backend> {
    model: Dit<D>,
}

impl<D: Backend> Ema<D> {
    /// Starts the average at the current parameters.
    pub fn new(model: &Dit<D>) -> Self {
        Ema { model: model.clone() }
    }

    /// Folds the current parameters of `model` into the average.
    pub fn update(&mut self, model: &Dit<D>, decay: f32) {
        let avg = self.model.params_mut();
        for (a, p) in avg.iter_mut().zip(model.params()) {
            *a = a.clone() * decay + p.clone() * (1.0 - decay);
        }
    }

    /// The averaged model (for sampling, evaluation and checkpoints).
    pub fn model(&self) -> &Dit<D> {
        &self.model
    }
}
