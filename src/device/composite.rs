//! The ops of [`Backend`](super::Backend) as compositions of dfdx tensor ops: the trait's default methods (what CUDA
//! runs) and the reference the CPU kernels are tested against.

use super::types::{AdamStep, Layer, T1, T2};
use dfdx::prelude::*;

/// A 3-D activation `(batch, tokens, features)` with tape `T`.
type T3<D, T> = Tensor<(usize, usize, usize), f32, D, T>;

/// Broadcasts a per-sample vector `(b, w)` over `n` tokens to `(b, n, w)`.
fn per_token<D: Device<f32>, T: Tape<f32, D>>(c: T2<D, T>, n: usize) -> T3<D, T> {
    let (b, w) = *c.shape();
    c.broadcast_like::<(usize, usize, usize), Axis<1>>(&(b, n, w))
}

/// See [`super::Backend::attention`]: 3-D batched matmuls over `(b·heads, n, d_h)` and dfdx's softmax.
///
/// The heads are folded into the batch axis because dfdx runs a 4-D matmul on CUDA as one cuBLAS call per
/// sample (and two per sample backward), a host-side loop that made a step's time grow with the batch; a 3-D
/// matmul is one strided-batched call.
pub fn attention<D: Device<f32>, T: Tape<f32, D>>(
    q: T2<D, T>,
    k: T2<D, T>,
    v: T2<D, T>,
    b: usize,
    heads: usize,
) -> T2<D, T> {
    type S4 = (usize, usize, usize, usize);
    let (rows, w) = *q.shape();
    let (n, dh) = (rows / b, w / heads);
    let split = (b, n, heads, dh);
    let q = q.reshape_like(&split).permute::<S4, Axes4<0, 2, 1, 3>>().reshape_like(&(b * heads, n, dh));
    let k = k.reshape_like(&split).permute::<S4, Axes4<0, 2, 3, 1>>().reshape_like(&(b * heads, dh, n));
    let v = v.reshape_like(&split).permute::<S4, Axes4<0, 2, 1, 3>>().reshape_like(&(b * heads, n, dh));
    let scores = (q.matmul(k) * (1.0 / (dh as f32).sqrt())).softmax::<Axis<2>>();
    let out = scores.matmul(v).reshape_like(&(b, heads, n, dh)).permute::<S4, Axes4<0, 2, 1, 3>>();
    out.reshape_like(&(rows, w))
}

/// See [`super::Backend::self_attention`]: three [`linear`] projections of `x`, [`attention`], then [`linear`].
pub fn self_attention<D: Device<f32>, T: Tape<f32, D>>(
    x: T2<D, T>,
    [q, k, v, o]: [Layer<D, T>; 4],
    b: usize,
    heads: usize,
) -> T2<D, T> {
    // `x` keeps its tape in one use only; the others share its id, so the three gradients add up.
    let q = linear(x.with_empty_tape(), q.0, q.1);
    let k = linear(x.with_empty_tape(), k.0, k.1);
    let v = linear(x, v.0, v.1);
    linear(attention(q, k, v, b, heads), o.0, o.1)
}

/// See [`super::Backend::norm_modulate`]: dfdx's `normalize` (eps 1e-5), then broadcasts.
pub fn norm_modulate<D: Device<f32>, T: Tape<f32, D>>(
    x: T2<D, T>,
    shift: T2<D, T>,
    scale: T2<D, T>,
    b: usize,
) -> T2<D, T> {
    let (rows, w) = *x.shape();
    let n = rows / b;
    let h3 = x.normalize::<Axis<1>>(1e-5).reshape_like(&(b, n, w));
    let out = h3 * (per_token(scale, n) + 1.0) + per_token(shift, n);
    out.reshape_like(&(rows, w))
}

/// See [`super::Backend::gate_residual`].
pub fn gate_residual<D: Device<f32>, T: Tape<f32, D>>(
    h: T2<D, T>,
    gate: T2<D, T>,
    res: T2<D, T>,
    b: usize,
) -> T2<D, T> {
    let (rows, w) = *h.shape();
    let n = rows / b;
    (h.reshape_like(&(b, n, w)) * per_token(gate, n)).reshape_like(&(rows, w)) + res
}

/// See [`super::Backend::add_bias`].
pub fn add_bias<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    let shape = *x.shape();
    x + bias.broadcast_like::<(usize, usize), Axis<0>>(&shape)
}

/// See [`super::Backend::add_bias_relu`].
pub fn add_bias_relu<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    add_bias(x, bias).relu()
}

/// See [`super::Backend::linear`]: dfdx's matmul, then [`add_bias`].
pub fn linear<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, w: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    add_bias(x.matmul(w), bias)
}

/// See [`super::Backend::linear_relu`]: dfdx's matmul, then [`add_bias_relu`].
pub fn linear_relu<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, w: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    add_bias_relu(x.matmul(w), bias)
}

/// See [`super::Backend::mlp_relu`]: [`linear_relu`], then [`linear`].
pub fn mlp_relu<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, fc1: Layer<D, T>, fc2: Layer<D, T>) -> T2<D, T> {
    linear(linear_relu(x, fc1.0, fc1.1), fc2.0, fc2.1)
}

/// AdamW (Loshchilov & Hutter, arXiv:1711.05101): `m ← β1·m + (1 − β1)·g`, `v ← β2·v + (1 − β2)·g²`,
/// `p ← p·decay − (m · lr/bc1) / (sqrt(v / bc2) + eps)`, with `(bc1, bc2)` the bias corrections.
pub fn adamw_update<D: Device<f32>>(param: &mut T1<D>, m: &mut T1<D>, v: &mut T1<D>, grad: &T1<D>, s: &AdamStep) {
    let (bc1, bc2) = s.bias_correction;
    *m = m.clone() * s.beta1 + grad.clone() * (1.0 - s.beta1);
    *v = v.clone() * s.beta2 + grad.clone().square() * (1.0 - s.beta2);
    let denom = (v.clone() * (1.0 / bc2)).sqrt() + s.eps;
    let upd = (m.clone() * (s.lr / bc1)) / denom;
    *param = param.clone() * s.decay - upd;
}
