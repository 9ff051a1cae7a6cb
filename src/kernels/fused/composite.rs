//! The ops of [`crate::device::Backend`] as compositions of dfdx tensor ops: the CUDA implementation and the reference the CPU
//! kernels are tested against.

use crate::device::{AdamStep, Layer, T1, T2};
use dfdx::prelude::*;

/// A 3-D activation `(batch, tokens, features)` with tape `T`.
type T3<D, T> = Tensor<(usize, usize, usize), f32, D, T>;

/// Broadcasts a per-sample vector `(b, w)` over `n` tokens to `(b, n, w)`.
fn per_token<D: Device<f32>, T: Tape<f32, D>>(c: T2<D, T>, n: usize) -> T3<D, T> {
    let (b, w) = *c.shape();
    c.broadcast_like::<(usize, usize, usize), Axis<1>>(&(b, n, w))
}

/// See [`crate::device::Backend::attention`]: 4-D batched matmuls over `(b, heads, n, d_h)` and dfdx's softmax.
pub fn attention<D: Device<f32>, T: Tape<f32, D>>(
    q: T2<D, T>,
    k: T2<D, T>,
    v: T2<D, T>,
    b: usize,
    heads: usize,
) -> T2<D, T> {
    let (rows, w) = *q.shape();
    let (n, dh) = (rows / b, w / heads);
    let q = q.reshape_like(&(b, n, heads, dh)).permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    let k = k.reshape_like(&(b, n, heads, dh)).permute::<(usize, usize, usize, usize), Axes4<0, 2, 3, 1>>();
    let v = v.reshape_like(&(b, n, heads, dh)).permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    let scores = (q.matmul(k) * (1.0 / (dh as f32).sqrt())).softmax::<Axis<3>>();
    let out = scores.matmul(v).permute::<(usize, usize, usize, usize), Axes4<0, 2, 1, 3>>();
    out.reshape_like(&(rows, w))
}

/// See [`crate::device::Backend::self_attention`]: three [`linear`] projections of `x`, [`attention`], then [`linear`].
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

/// See [`crate::device::Backend::norm_modulate`]: dfdx's `normalize` (eps 1e-5), then broadcasts.
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

/// See [`crate::device::Backend::gate_residual`].
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

/// See [`crate::device::Backend::add_bias`].
pub fn add_bias<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    let shape = *x.shape();
    x + bias.broadcast_like::<(usize, usize), Axis<0>>(&shape)
}

/// See [`crate::device::Backend::add_bias_relu`].
pub fn add_bias_relu<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    add_bias(x, bias).relu()
}

/// See [`crate::device::Backend::linear`]: dfdx's matmul, then [`add_bias`].
pub fn linear<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, w: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    add_bias(x.matmul(w), bias)
}

/// See [`crate::device::Backend::linear_relu`]: dfdx's matmul, then [`add_bias_relu`].
pub fn linear_relu<D: Device<f32>, T: Tape<f32, D>>(x: T2<D, T>, w: T2<D, T>, bias: T1<D, T>) -> T2<D, T> {
    add_bias_relu(x.matmul(w), bias)
}

/// See [`crate::device::Backend::mlp_relu`]: [`linear_relu`], then [`linear`].
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

/// CUDA runs the DiT's fused ops as the composite dfdx versions above (cuBLAS and dfdx's elementwise kernels).
#[cfg(feature = "cuda")]
impl crate::device::Backend for crate::device::CudaDevice {
    fn attention<T: Tape<f32, Self>>(
        q: T2<Self, T>,
        k: T2<Self, T>,
        v: T2<Self, T>,
        b: usize,
        heads: usize,
    ) -> T2<Self, T> {
        attention(q, k, v, b, heads)
    }

    fn self_attention<T: Tape<f32, Self>>(
        x: T2<Self, T>,
        qkvo: [Layer<Self, T>; 4],
        b: usize,
        heads: usize,
    ) -> T2<Self, T> {
        self_attention(x, qkvo, b, heads)
    }

    fn norm_modulate<T: Tape<f32, Self>>(
        x: T2<Self, T>,
        shift: T2<Self, T>,
        scale: T2<Self, T>,
        b: usize,
    ) -> T2<Self, T> {
        norm_modulate(x, shift, scale, b)
    }

    fn gate_residual<T: Tape<f32, Self>>(h: T2<Self, T>, gate: T2<Self, T>, res: T2<Self, T>, b: usize) -> T2<Self, T> {
        gate_residual(h, gate, res, b)
    }

    fn add_bias<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        add_bias(x, bias)
    }

    fn add_bias_relu<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        add_bias_relu(x, bias)
    }

    fn linear<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        linear(x, w, bias)
    }

    fn linear_relu<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        linear_relu(x, w, bias)
    }

    fn mlp_relu<T: Tape<f32, Self>>(x: T2<Self, T>, fc1: Layer<Self, T>, fc2: Layer<Self, T>) -> T2<Self, T> {
        mlp_relu(x, fc1, fc2)
    }

    fn adamw_update(param: &mut T1<Self>, m: &mut T1<Self>, v: &mut T1<Self>, grad: &T1<Self>, step: &AdamStep) {
        adamw_update(param, m, v, grad, step)
    }
}
