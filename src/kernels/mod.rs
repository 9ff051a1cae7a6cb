//! The DiT's fused ops ([`fused`]: attention, LayerNorm + modulation, gated residual, linear layers, AdamW):
//! hand-written CPU kernels on dfdx's tape, composite dfdx ops on CUDA; they implement [`crate::device::Backend`].

pub mod fused;
