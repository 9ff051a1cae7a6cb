//! Loss pieces for trainers: per-sample denoising error, caption blanking, and a complete denoising-MSE step
//! in the schedule's parametrisation.

use dfdx::prelude::*;
use rand::Rng;
use rand_distr::StandardNormal;

use super::dit::{Dit, Images};
use super::optim::{AdamW, ParamGrads};
use super::schedule::NoiseSchedule;
use super::ModelError;
use crate::device::{upload, Backend};

/// The PAD token id; an all-PAD caption is the null condition.
pub const PAD: usize = 0;

/// Replaces a caption by the null condition (all PAD), keeping its length; used for caption dropout.
pub fn blank_caption(tokens: &mut [usize]) {
    tokens.iter_mut().for_each(|t| *t = PAD);
}

/// Computes `e(x) = mean_{C,H,W} (pred − target)²`, one value per sample; keeps `pred`'s tape. The target is
/// the parametrisation's ([`NoiseSchedule::target`]): `ε`, `v` or the flow velocity `ε − x_0`.
///
/// The value is the f64 mean of the f32 squares, rounded once to f32, so it does not depend on the order in
/// which a device sums: an f32 mean of a few hundred squares is off by several ulps, CPU and CUDA sum in
/// different orders, and objectives multiply differences of errors by β/2 (thousands), which turned that into a
/// 5e-4 relative loss difference between devices. The gradient is that of the f32 mean: the correction to the f64
/// value enters as a constant.
pub fn per_sample_error<D: Backend, T: Tape<f32, D>>(
    pred: Images<D, T>,
    target: &Images<D>,
) -> Tensor<(usize,), f32, D, T> {
    let squares = (pred - target.clone()).square();
    let (b, c, h, w) = *squares.shape();
    let n = c * h * w;
    let values = squares.retaped::<NoneTape>().as_vec();
    let errors = squares.mean::<(usize,), Axes3<1, 2, 3>>();
    let rounded = errors.retaped::<NoneTape>().as_vec();
    let correction: Vec<f32> = values
        .chunks(n.max(1))
        .zip(&rounded)
        .map(|(row, &r)| (row.iter().map(|&v| v as f64).sum::<f64>() / n as f64 - r as f64) as f32)
        .collect();
    let dev = errors.device().clone();
    errors + upload(&dev, &correction, (b,))
}

/// Clean images for one ε-MSE step.
#[derive(Clone, Debug)]
pub struct MseBatch {
    /// `B` CHW images in [-1, 1], flattened.
    pub x0: Vec<f32>,
    /// `B` captions (PAD = 0), already dropped out by the caller where wanted.
    pub tokens: Vec<Vec<usize>>,
}

/// What one training step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean denoising MSE (against the parametrisation's target) over the batch, before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// One pretraining step: draws `t` with the schedule's sampler and `eps ~ N(0, I)` from `rng`, minimises the
/// mean of `e(x_t)` against the schedule's target, clips the global gradient norm to `max_grad_norm` and applies AdamW.
pub fn train_step_mse<D: Backend, R: Rng>(
    model: &mut Dit<D>,
    opt: &mut AdamW<D>,
    schedule: &NoiseSchedule,
    batch: &MseBatch,
    max_grad_norm: f32,
    rng: &mut R,
) -> Result<StepStats, ModelError> {
    let per = model.config().image_len();
    let b = batch.tokens.len();
    if batch.x0.len() != b * per || b == 0 {
        return Err(ModelError::Shape(format!(
            "batch has {} captions and {} image values (C·H·W = {per})",
            b,
            batch.x0.len()
        )));
    }
    let t: Vec<usize> = (0..b).map(|_| schedule.draw_t(rng)).collect();
    let eps: Vec<f32> = (0..b * per).map(|_| rng.sample(StandardNormal)).collect();
    let x_t = schedule.q_sample_batch(&batch.x0, &t, &eps, per);
    let target = model.images(schedule.target_batch(&batch.x0, &t, &eps, per))?;
    let x_t = model.images(x_t)?;
    let pred = model.forward(x_t.traced(model.alloc_grads()), &t, &batch.tokens)?;
    // The batch mean needs no per-sample exactness (and no host copy of every squared error each step): the f32
    // mean of per-sample f32 means, as every shipped base model was pretrained.
    let loss = (pred - target).square().mean::<(usize,), Axes3<1, 2, 3>>().mean();
    let loss_value = loss.array();
    let mut grads = ParamGrads::backward(model, loss);
    let grad_norm = grads.clip_global_norm(max_grad_norm);
    opt.update(model, &grads);
    Ok(StepStats { loss: loss_value, grad_norm })
}
