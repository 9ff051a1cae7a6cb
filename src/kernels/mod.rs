//! Custom fused kernels: CUDA C compiled with NVRTC at run time (`cuda.rs`), each with a plain-Rust CPU twin
//! (`twin.rs`) that is the `Cpu` implementation and the oracle of the GPU tests.
//!
//! - [`pair_loss`]: per-sample denoising errors of policy and reference on winner/loser rows, the DPO-family
//!   loss `−log σ(−β/2·((e_θ(w) − e_ref(w)) − s·(e_θ(l) − e_ref(l))))` and its gradient w.r.t. the policy's
//!   predicted ε, all in one kernel. It goes on dfdx's tape as a custom backward operation.
//! - [`ddim_cfg_step`]: one DDIM step (with `eta`) on the classifier-free-guided ε. Forward only.
//!
//! [`fused`] holds the DiT's fused ops (attention, LayerNorm + modulation, gated residual, bias, AdamW): hand-written
//! CPU kernels on dfdx's tape, composite dfdx ops on CUDA.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod fused;
pub mod twin;

use crate::compile::LossDevice;
use crate::model::{Images, ModelDevice};
use dfdx::prelude::*;
use std::fmt;

pub use twin::{DdimCoeffs, PairLossHost};

/// CUDA C source of the fused pair-loss kernel (`pair_loss_fwd`) and its backward helper (`axpy_scaled`).
pub const PAIR_LOSS_CU: &str = include_str!("pair_loss.cu");
/// CUDA C source of the fused DDIM + guidance step (`ddim_cfg_step`).
pub const DDIM_CFG_CU: &str = include_str!("ddim_cfg.cu");
/// Every kernel source with its file name and entry points, for loading and for the NVRTC compile check.
pub const SOURCES: [(&str, &str, &[&str]); 2] = [
    ("pair_loss.cu", PAIR_LOSS_CU, &["pair_loss_fwd", "axpy_scaled"]),
    ("ddim_cfg.cu", DDIM_CFG_CU, &["ddim_cfg_step"]),
];

/// Compiles and loads the CUDA kernels (once per process), so `--device cuda` fails early with NVRTC's log.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_ready() -> Result<(), KernelError> {
    cuda::kernels().map(|_| ())
}

/// Why a kernel could not run: bad input shapes, or the CUDA driver/NVRTC refused (the message says which).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelError(pub String);

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KernelError {}

/// The inputs of one pair-loss launch: `2P` rows `[winners; losers]` of the three image tensors, `P` gates.
pub struct PairInputs<'a, D: KernelDevice> {
    /// The policy's predicted ε (read as a constant; the tape is handled by [`pair_loss`]).
    pub pred_pol: &'a Images<D>,
    /// The reference's predicted ε.
    pub pred_ref: &'a Images<D>,
    /// The true ε.
    pub eps: &'a Images<D>,
    /// `s_i` per pair.
    pub gate: &'a [f32],
    /// `beta` (the `−β/2` convention).
    pub beta: f32,
}

/// The inputs of one DDIM + guidance step, as host buffers of equal length.
pub struct DdimInputs<'a> {
    /// The current images `x_t`.
    pub x: &'a [f32],
    /// The conditional ε.
    pub eps_cond: &'a [f32],
    /// The unconditional ε (pass `eps_cond` again for no guidance).
    pub eps_uncond: &'a [f32],
    /// The step's noise, `None` on a noiseless step.
    pub noise: Option<&'a [f64]>,
    /// The step's scalars.
    pub coeffs: &'a DdimCoeffs,
}

/// A device with the custom kernels: the model, the compiled loss and these ops all run on it.
pub trait KernelDevice: ModelDevice + LossDevice {
    /// Where a kernel keeps the gradient it computed in the forward pass (host `Vec` on CPU, device memory on CUDA).
    type GradBuf: 'static;

    /// Runs the fused pair loss (see [`twin::pair_loss`]); returns the host results and the gradient.
    fn pair_loss_kernel(&self, inputs: &PairInputs<'_, Self>) -> Result<(PairLossHost, Self::GradBuf), KernelError>;

    /// Adds `stored · upstream` into `grads[pred]`, where `upstream` is the gradient that reached `loss` (the tensors
    /// only name the gradient slots).
    fn accumulate_grad(
        &self,
        grads: &mut Gradients<f32, Self>,
        pred: &Images<Self>,
        loss: &Tensor<Rank0, f32, Self>,
        stored: &Self::GradBuf,
    ) -> Result<(), Self::Err>;

    /// One fused DDIM + guidance step (see [`twin::ddim_cfg_step`]).
    fn ddim_cfg_step(&self, inputs: &DdimInputs<'_>) -> Result<Vec<f32>, KernelError>;
}

/// The fused pair loss on dfdx's tape: the scalar loss (its gradient flows into `pred_pol`'s tape through one
/// custom backward operation) and the per-sample values.
pub struct PairLoss<D: KernelDevice> {
    /// `mean_i −log σ(z_i)`, taped.
    pub loss: Tensor<Rank0, f32, D, OwnedTape<f32, D>>,
    /// Per-row errors and per-pair losses.
    pub host: PairLossHost,
}

/// Computes the DPO-family loss of `2P` rows `[winners; losers]` in one kernel (see [`twin::pair_loss`]).
///
/// `pred_pol` carries the policy's tape; `pred_ref` and `eps` are constants; `gate` holds `s_i` per pair (1 for
/// Diffusion-DPO, the SePPO anchor gate otherwise), a constant too. The backward operation adds the kernel's
/// gradient, scaled by the upstream gradient of the loss, into `pred_pol`'s gradient.
pub fn pair_loss<D: KernelDevice>(
    pred_pol: Images<D, OwnedTape<f32, D>>,
    pred_ref: &Images<D>,
    eps: &Images<D>,
    gate: &[f32],
    beta: f32,
) -> Result<PairLoss<D>, KernelError> {
    // The kernel's gradient is laid out row-major; a same-shape reshape is a no-op on a contiguous tensor and a
    // (taped) copy otherwise, so `pred`'s gradient buffer has that layout too.
    let shape = *pred_pol.shape();
    let (pred, mut tape) = pred_pol.reshape_like(&shape).split_tape();
    check_pair_shapes(pred.shape(), pred_ref.shape(), eps.shape(), gate.len())?;
    if !beta.is_finite() {
        return Err(KernelError(format!("pair loss: beta must be finite, found {beta}")));
    }
    let dev = pred.device().clone();
    let (host, stored) = dev.pair_loss_kernel(&PairInputs { pred_pol: &pred, pred_ref, eps, gate, beta })?;
    let loss = dev.tensor(host.mean_loss());
    // Untaped clones share the ids (and buffers) of `pred` and `loss`; dfdx keeps its id-only `GhostTensor`
    // crate-private, so the clone also keeps `pred`'s buffer alive until backward.
    let (pred_id, loss_id) = (pred.clone(), loss.clone());
    tape.add_backward_op(move |grads| dev.accumulate_grad(grads, &pred_id, &loss_id, &stored));
    Ok(PairLoss { loss: loss.put_tape(tape), host })
}

fn check_pair_shapes(
    pol: &(usize, usize, usize, usize),
    rf: &(usize, usize, usize, usize),
    eps: &(usize, usize, usize, usize),
    n_pairs: usize,
) -> Result<(), KernelError> {
    if pol != rf || pol != eps || pol.0 != 2 * n_pairs || n_pairs == 0 {
        return Err(KernelError(format!(
            "pair loss: policy {pol:?}, reference {rf:?} and eps {eps:?} must all be (2P, C, H, W) with P = {n_pairs} \
             gate values (P ≥ 1)"
        )));
    }
    Ok(())
}

/// One DDIM step with classifier-free guidance on `dev` (forward only; see [`twin::ddim_cfg_step`]).
pub fn ddim_cfg_step<D: KernelDevice>(dev: &D, inputs: &DdimInputs<'_>) -> Result<Vec<f32>, KernelError> {
    let n = inputs.x.len();
    let (cond, uncond, noise) = (inputs.eps_cond.len(), inputs.eps_uncond.len(), inputs.noise.map(<[f64]>::len));
    if cond != n || uncond != n || noise.is_some_and(|z| z != n) {
        return Err(KernelError(format!(
            "ddim step: x has {n} values but eps_cond {cond}, eps_uncond {uncond} and noise {noise:?}"
        )));
    }
    dev.ddim_cfg_step(inputs)
}
