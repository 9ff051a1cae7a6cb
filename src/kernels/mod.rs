//! The DiT's fused ops ([`fused`]: attention, LayerNorm + modulation, gated residual, linear layers, AdamW):
//! hand-written CPU kernels on dfdx's tape, composite dfdx ops on CUDA.

pub mod fused;

use crate::compile::LossDevice;
use crate::model::ModelDevice;

/// A device the model, the compiled loss and the trainer run on.
pub trait KernelDevice: ModelDevice + LossDevice {}

impl<D: ModelDevice + LossDevice> KernelDevice for D {}

/// CUDA runs the DiT's fused ops as their composite dfdx versions (cuBLAS and dfdx's elementwise kernels).
#[cfg(feature = "cuda")]
impl fused::FusedOps for crate::model::backend::CudaDevice {}
