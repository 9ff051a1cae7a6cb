//! Building blocks of the DiT forward pass on runtime-shaped tensors: 2-D linear, activations, attention. The
//! fused ops come from an [`Ops`] table (the device's or the composite ones).
//!
//! Parameters are stored flat (`(usize,)`) and reshaped at use; a contiguous reshape keeps the tensor id, so
//! gradients land on the stored parameter. Every parameter is `retaped` before use so its ops are recorded.

use dfdx::prelude::*;

use super::config::Activation;
use crate::device::{Backend, Layer, T1, T2};
use crate::kernels::fused::Ops;

/// Indices of a linear layer's weight `(i, o)` and bias `(o,)` in the parameter list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lin {
    pub w: usize,
    pub b: usize,
    pub i: usize,
    pub o: usize,
}

/// Computes `x · W + b` as one 2-D GEMM on `(rows, i)`.
pub(crate) fn linear<D: Backend, T: Tape<f32, D>>(ops: &Ops<D, T>, p: &[T1<D>], l: Lin, x: T2<D, T>) -> T2<D, T> {
    let (w, b) = layer(p, l);
    (ops.linear)(x, w, b)
}

/// Computes `fc2(act(fc1(x)))`; with ReLU the whole MLP is one fused op.
pub(crate) fn mlp<D: Backend, T: Tape<f32, D>>(
    ops: &Ops<D, T>,
    p: &[T1<D>],
    (fc1, fc2): (Lin, Lin),
    x: T2<D, T>,
    act: Activation,
) -> T2<D, T> {
    match act {
        Activation::Relu => (ops.mlp_relu)(x, layer(p, fc1), layer(p, fc2)),
        _ => linear(ops, p, fc2, activate(act, linear(ops, p, fc1, x))),
    }
}

/// The weight `(i, o)` and bias of `l`, retaped so their gradients are recorded.
fn layer<D: Backend, T: Tape<f32, D>>(p: &[T1<D>], l: Lin) -> Layer<D, T> {
    (p[l.w].retaped::<T>().reshape_like(&(l.i, l.o)), p[l.b].retaped::<T>())
}

/// Applies the configured activation.
fn activate<D: Backend, T: Tape<f32, D>>(act: Activation, x: T2<D, T>) -> T2<D, T> {
    match act {
        Activation::Relu => x.relu(),
        Activation::SigmoidGelu => {
            let gate = (x.with_empty_tape() * 1.702).sigmoid();
            x * gate
        }
        Activation::Silu => silu(x),
    }
}

/// Computes `x * sigmoid(x)`.
pub(crate) fn silu<D: Backend, T: Tape<f32, D>>(x: T2<D, T>) -> T2<D, T> {
    let gate = x.with_empty_tape().sigmoid();
    x * gate
}

/// Multi-head self-attention with its q/k/v/o projections: `softmax(Q Kᵀ / √d_h) V · Wo + bo`.
pub(crate) fn attention<D: Backend, T: Tape<f32, D>>(
    ops: &Ops<D, T>,
    p: &[T1<D>],
    qkvo: [Lin; 4],
    h: T2<D, T>,
    b: usize,
    heads: usize,
) -> T2<D, T> {
    (ops.self_attention)(h, qkvo.map(|l| layer(p, l)), b, heads)
}
