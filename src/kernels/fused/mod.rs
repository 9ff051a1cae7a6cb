//! Fused DiT ops on dfdx's tape, dispatched per device through [`Backend`]: on `Cpu` hand-written kernels
//! (`cpu/`, forward and backward by hand, parallel over samples with rayon), on CUDA the composite dfdx ops of
//! [`crate::device::composite`], which are also the reference the CPU kernels are tested against
//! (`tests/cpu_kernels.rs`).
//!
//! Shapes: activations are `(b·n, w)` row-major (`b` samples of `n` tokens), per-sample vectors `(b, w)`.

mod cpu;

/// The dense matrix product behind the fused CPU layers, public for its tests and its benchmark
/// (`examples/bench_gemm.rs`): [`gemm::product`] on one thread, [`gemm::product_rows`] with the layers' row split.
pub mod gemm {
    pub use super::cpu::gemm::{product, product_rows, Kernel, Mat, KERNEL_VAR};
}

use crate::device::{composite, AdamStep, Backend, Layer, T1, T2};
use dfdx::prelude::*;

/// Which implementation the DiT and AdamW use for the ops of [`Backend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpPath {
    /// The device's own implementation: the fused kernels on `Cpu`, the composite dfdx ops on CUDA.
    Device,
    /// The composite dfdx ops on every device (the reference; `bench_dit --composite` times it).
    Composite,
}

/// A 2-D op with three inputs and the number of samples they hold.
type Op3<D, T> = fn(T2<D, T>, T2<D, T>, T2<D, T>, usize) -> T2<D, T>;
/// A linear layer `(x, w, bias) -> out`.
type LinearOp<D, T> = fn(T2<D, T>, T2<D, T>, T1<D, T>) -> T2<D, T>;
/// Self-attention with its projections: `(x, [q, k, v, o], samples, heads) -> out`.
type SelfAttnOp<D, T> = fn(T2<D, T>, [Layer<D, T>; 4], usize, usize) -> T2<D, T>;
/// A two-layer MLP `(x, fc1, fc2) -> out`.
type MlpOp<D, T> = fn(T2<D, T>, Layer<D, T>, Layer<D, T>) -> T2<D, T>;

/// The taped ops of one [`OpPath`], as function pointers for tape `T` (see [`Backend`] for each formula).
pub struct Ops<D: Backend, T: Tape<f32, D>> {
    /// [`Backend::norm_modulate`].
    pub norm_modulate: Op3<D, T>,
    /// [`Backend::gate_residual`].
    pub gate_residual: Op3<D, T>,
    /// [`Backend::linear`].
    pub linear: LinearOp<D, T>,
    /// [`Backend::mlp_relu`].
    pub mlp_relu: MlpOp<D, T>,
    /// [`Backend::self_attention`].
    pub self_attention: SelfAttnOp<D, T>,
}

impl OpPath {
    /// The ops this path runs on device `D` with tape `T`.
    pub fn ops<D: Backend, T: Tape<f32, D>>(self) -> Ops<D, T> {
        match self {
            OpPath::Device => Ops {
                norm_modulate: D::norm_modulate,
                gate_residual: D::gate_residual,
                linear: D::linear,
                mlp_relu: D::mlp_relu,
                self_attention: D::self_attention,
            },
            OpPath::Composite => Ops {
                norm_modulate: composite::norm_modulate,
                gate_residual: composite::gate_residual,
                linear: composite::linear,
                mlp_relu: composite::mlp_relu,
                self_attention: composite::self_attention,
            },
        }
    }

    /// One AdamW update on this path (see [`composite::adamw_update`]).
    pub fn adamw_update<D: Backend>(
        self,
        param: &mut T1<D>,
        m: &mut T1<D>,
        v: &mut T1<D>,
        grad: &T1<D>,
        step: &AdamStep,
    ) {
        match self {
            OpPath::Device => D::adamw_update(param, m, v, grad, step),
            OpPath::Composite => composite::adamw_update(param, m, v, grad, step),
        }
    }
}
