//! Building blocks of the DiT forward pass on runtime-shaped tensors: 2-D linear, modulation, attention.
//!
//! Parameters are stored flat (`(usize,)`) and reshaped at use; a contiguous reshape keeps the tensor id, so
//! gradients land on the stored parameter. Every parameter is `retaped` before use so its ops are recorded.

use dfdx::prelude::*;

use super::backend::ModelDevice;
use super::config::Activation;

/// A flat parameter tensor.
pub(crate) type T1<D> = Tensor<(usize,), f32, D>;
/// A 2-D activation `(rows, features)` with tape `T`.
pub(crate) type T2<D, T> = Tensor<(usize, usize), f32, D, T>;
/// A 3-D activation `(batch, tokens, features)` with tape `T`.
pub(crate) type T3<D, T> = Tensor<(usize, usize, usize), f32, D, T>;

/// Indices of a linear layer's weight `(i, o)` and bias `(o,)` in the parameter list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lin {
    pub w: usize,
    pub b: usize,
    pub i: usize,
    pub o: usize,
}

/// Computes `x · W + b` as one 2-D GEMM on `(rows, i)`.
pub(crate) fn linear<D: ModelDevice, T: Tape<f32, D>>(p: &[T1<D>], l: Lin, x: T2<D, T>) -> T2<D, T> {
    let rows = x.shape().0;
    let w = p[l.w].retaped::<T>().reshape_like(&(l.i, l.o));
    let b = p[l.b].retaped::<T>().broadcast_like::<(usize, usize), Axis<0>>(&(rows, l.o));
    x.matmul(w) + b
}

/// Applies the configured activation.
pub(crate) fn activate<D: ModelDevice, T: Tape<f32, D>>(act: Activation, x: T2<D, T>) -> T2<D, T> {
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
pub(crate) fn silu<D: ModelDevice, T: Tape<f32, D>>(x: T2<D, T>) -> T2<D, T> {
    let gate = x.with_empty_tape().sigmoid();
    x * gate
}

/// Broadcasts a per-sample vector `(b, w)` over `n` tokens to `(b, n, w)`.
fn per_token<D: ModelDevice, T: Tape<f32, D>>(c: T2<D, T>, n: usize) -> T3<D, T> {
    let (b, w) = *c.shape();
    c.broadcast_like::<(usize, usize, usize), Axis<1>>(&(b, n, w))
}

/// Computes `h · (1 + scale) + shift` with `scale`, `shift` of shape `(b, w)` and `h` of shape `(b·n, w)`.
pub(crate) fn modulate<D: ModelDevice, T: Tape<f32, D>>(
    h: T2<D, T>,
    shift: T2<D, T>,
    scale: T2<D, T>,
    b: usize,
) -> T2<D, T> {
    let (rows, w) = *h.shape();
    let n = rows / b;
    let h3 = h.reshape_like(&(b, n, w));
    let out = h3 * (per_token(scale, n) + 1.0) + per_token(shift, n);
    out.reshape_like(&(rows, w))
}

/// Computes `h · gate` with `gate` of shape `(b, w)` broadcast over tokens.
pub(crate) fn gate<D: ModelDevice, T: Tape<f32, D>>(h: T2<D, T>, gate: T2<D, T>, b: usize) -> T2<D, T> {
    let (rows, w) = *h.shape();
    let n = rows / b;
    (h.reshape_like(&(b, n, w)) * per_token(gate, n)).reshape_like(&(rows, w))
}

/// Multi-head self-attention by hand: `softmax(Q Kᵀ / √d_h) V`, then the output projection.
pub(crate) fn attention<D: ModelDevice, T: Tape<f32, D>>(
    p: &[T1<D>],
    qkvo: [Lin; 4],
    h: T2<D, T>,
    b: usize,
    heads: usize,
) -> T2<D, T> {
    let (rows, w) = *h.shape();
    let n = rows / b;
    let dh = w / heads;
    let q = linear(p, qkvo[0], h.with_empty_tape()).reshape_like(&(b, n, heads, dh));
    let k = linear(p, qkvo[1], h.with_empty_tape()).reshape_like(&(b, n, heads, dh));
    let v = linear(p, qkvo[2], h).reshape_like(&(b, n, heads, dh));
    let q = q.permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    let k = k.permute::<(usize, usize, usize, usize), Axes4<0, 2, 3, 1>>();
    let v = v.permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    let scores = (q.matmul(k) * (1.0 / (dh as f32).sqrt())).softmax::<Axis<3>>();
    let out = scores.matmul(v).permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    linear(p, qkvo[3], out.reshape_like(&(rows, w)))
}
