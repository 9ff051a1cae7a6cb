//! [`Backend`] on dfdx's `Cpu`: the tape plumbing around the slice kernels of `attention.rs`, `norm.rs` and
//! `rowwise.rs` (the linear layers' and the attention layer's plumbing is in `linear.rs` and `attn_layer.rs`,
//! their GEMMs in `gemm.rs`, `packed.rs` and the micro-kernels of `avx2.rs` and `avx512.rs`).
//!
//! dfdx keeps tensor buffers crate-private, so inputs are copied out with `copy_into` (a memcpy into a buffer
//! from `pool.rs`) and results enter through `tensor_from_vec` on a buffer popped from dfdx's allocation cache
//! (see [`cached_buf`]). What backward needs (input copies, softmax probabilities, LayerNorm statistics) lives in
//! the backward closure, which adds the input gradients into `Gradients::get_or_alloc_mut` of each input.

mod attention;
mod attn_layer;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub(super) mod gemm;
mod linear;
mod mat;
mod norm;
// Only the x86-64 micro-kernels use it.
#[cfg(target_arch = "x86_64")]
mod packed;
mod pool;
mod rowwise;
mod tile;
mod vmath;

use crate::device::{AdamStep, Backend, CpuDevice, Layer, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::{CpuError, Storage};
use pool::Buf;

/// Takes a buffer of `len` values from dfdx's allocation cache (or a fresh one).
///
/// The tensor made from it returns it to the cache when dropped. A fresh `Vec` would also go to the cache on
/// drop, and since dfdx's own ops are already balanced, the cache would then grow by one buffer per op and step.
fn cached_buf(dev: &CpuDevice, len: usize) -> Vec<f32> {
    match dev.try_alloc_len(len) {
        Ok(mut cached) => {
            let buf = std::mem::take(&mut *cached);
            // Dropping the emptied wrapper would put a zero-length allocation into the cache; forgetting it only
            // leaks its handle on the (process-long) cache.
            std::mem::forget(cached);
            buf
        }
        Err(_) => vec![0.0; len],
    }
}

/// Makes `t` row-major contiguous: a no-op (same id) when it already is, else dfdx's taped copy.
fn contiguous<T: Tape<f32, CpuDevice>>(t: T2<CpuDevice, T>) -> T2<CpuDevice, T> {
    let shape = *t.shape();
    t.reshape_like(&shape)
}

/// Copies a contiguous tensor's values to a (pooled) host buffer.
fn host<S: Shape, T>(t: &Tensor<S, f32, CpuDevice, T>) -> Buf {
    let mut buf = Buf::scratch(t.shape().num_elements());
    t.copy_into(&mut buf);
    buf
}

/// A tensor of shape `shape` holding `data`.
fn tensor<S: Shape>(dev: &CpuDevice, data: Vec<f32>, shape: S) -> Tensor<S, f32, CpuDevice> {
    dev.tensor_from_vec(data, shape)
}

/// Moves the gradient buffer of `t` out of the store (allocating a zeroed one first if there is none yet).
///
/// Kernels accumulate into it in place and [`put_grad`] moves it back, so no gradient is copied; the output's
/// gradient is read this way too (every op that adds into it ran before, and no op reads it after).
fn take_grad<S: Shape>(
    grads: &mut Gradients<f32, CpuDevice>,
    t: &Tensor<S, f32, CpuDevice>,
) -> Result<Vec<f32>, CpuError> {
    Ok(std::mem::take(&mut **grads.get_or_alloc_mut(t)?))
}

/// Moves a buffer from [`take_grad`] back into the store.
fn put_grad<S: Shape>(
    grads: &mut Gradients<f32, CpuDevice>,
    t: &Tensor<S, f32, CpuDevice>,
    g: Vec<f32>,
) -> Result<(), CpuError> {
    **grads.get_or_alloc_mut(t)? = g;
    Ok(())
}

/// `act(x + bias)` with its backward: `d = dy ⊙ act'`, `dx += d`, `dbias += Σ_rows d`.
fn bias_act<T: Tape<f32, CpuDevice>>(
    x: T2<CpuDevice, T>,
    bias: T1<CpuDevice, T>,
    act: rowwise::Act,
) -> T2<CpuDevice, T> {
    let (x, tx) = contiguous(x).split_tape();
    let (bias, tb) = bias.split_tape();
    let mut tape = tx.merge(tb);
    let (rows, w) = *x.shape();
    let dev = x.device().clone();
    let mut out = cached_buf(&dev, rows * w);
    x.copy_into(&mut out);
    rowwise::add_rows(&mut out, &bias.as_vec(), act);
    // ReLU's derivative needs the output's sign; the identity's does not.
    let kept = (T::OWNS_TAPE && act == rowwise::Act::Relu).then(|| Buf::copy_of(&out));
    let out = tensor(&dev, out, (rows, w));
    if T::OWNS_TAPE {
        let out_id = out.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out_id)?;
            // ReLU masks the gradient on the fly, so the output's own gradient stays as it arrived.
            let mask = kept.as_deref();
            rowwise::add_column_sums(grads.get_or_alloc_mut(&bias)?, &dy, mask);
            rowwise::add_masked(grads.get_or_alloc_mut(&x)?, &dy, mask);
            put_grad(grads, &out_id, dy)
        });
    }
    out.put_tape(tape)
}

impl Backend for CpuDevice {
    fn attention<T: Tape<f32, Self>>(
        q: T2<Self, T>,
        k: T2<Self, T>,
        v: T2<Self, T>,
        b: usize,
        heads: usize,
    ) -> T2<Self, T> {
        let (q, tq) = contiguous(q).split_tape();
        let (k, tk) = contiguous(k).split_tape();
        let (v, tv) = contiguous(v).split_tape();
        let mut tape = tq.merge(tk).merge(tv);
        let (rows, w) = *q.shape();
        let dims = attention::Dims { n: rows / b, heads, dh: w / heads };
        let dev = q.device().clone();
        let qkv = attention::pack([&host(&q), &host(&k), &host(&v)], w);
        let mut out = cached_buf(&dev, rows * w);
        let mut probs = vec![0.0; b * heads * dims.n * dims.n];
        attention::forward(&qkv, dims, &mut out, &mut probs);
        let out = tensor(&dev, out, (rows, w));
        if T::OWNS_TAPE {
            let out_id = out.clone();
            tape.add_backward_op(move |grads| {
                let dout = take_grad(grads, &out_id)?;
                let mut dqkv = Buf::scratch(3 * rows * w);
                attention::backward(&qkv, &probs, &dout, dims, &mut dqkv);
                let (mut dq, mut dk, mut dv) = (take_grad(grads, &q)?, take_grad(grads, &k)?, take_grad(grads, &v)?);
                attention::add_unpacked(&dqkv, w, [&mut dq, &mut dk, &mut dv]);
                put_grad(grads, &q, dq)?;
                put_grad(grads, &k, dk)?;
                put_grad(grads, &v, dv)?;
                put_grad(grads, &out_id, dout)
            });
        }
        out.put_tape(tape)
    }

    fn self_attention<T: Tape<f32, Self>>(
        x: T2<Self, T>,
        qkvo: [Layer<Self, T>; 4],
        b: usize,
        heads: usize,
    ) -> T2<Self, T> {
        attn_layer::self_attention(x, qkvo, b, heads)
    }

    fn norm_modulate<T: Tape<f32, Self>>(
        x: T2<Self, T>,
        shift: T2<Self, T>,
        scale: T2<Self, T>,
        b: usize,
    ) -> T2<Self, T> {
        let (x, tx) = contiguous(x).split_tape();
        let (shift, tsh) = contiguous(shift).split_tape();
        let (scale, tsc) = contiguous(scale).split_tape();
        let mut tape = tx.merge(tsh).merge(tsc);
        let (rows, w) = *x.shape();
        let dev = x.device().clone();
        let (xh, shh, sch) = (host(&x), host(&shift), host(&scale));
        let mut out = cached_buf(&dev, rows * w);
        let mut stats = vec![0.0; 2 * rows];
        norm::forward(&xh, &shh, &sch, (rows / b, w), &mut out, &mut stats);
        let out = tensor(&dev, out, (rows, w));
        if T::OWNS_TAPE {
            let out_id = out.clone();
            tape.add_backward_op(move |grads| {
                let dy = take_grad(grads, &out_id)?;
                let (mut dx, mut dshift, mut dscale) =
                    (take_grad(grads, &x)?, take_grad(grads, &shift)?, take_grad(grads, &scale)?);
                norm::backward(&xh, &sch, &stats, &dy, (rows / b, w), (&mut dx, &mut dshift, &mut dscale));
                put_grad(grads, &x, dx)?;
                put_grad(grads, &shift, dshift)?;
                put_grad(grads, &scale, dscale)?;
                put_grad(grads, &out_id, dy)
            });
        }
        out.put_tape(tape)
    }

    fn gate_residual<T: Tape<f32, Self>>(h: T2<Self, T>, gate: T2<Self, T>, res: T2<Self, T>, b: usize) -> T2<Self, T> {
        let (h, th) = contiguous(h).split_tape();
        let (gate, tg) = contiguous(gate).split_tape();
        let (res, tr) = contiguous(res).split_tape();
        let mut tape = th.merge(tg).merge(tr);
        let (rows, w) = *h.shape();
        let dev = h.device().clone();
        let (hh, gh) = (host(&h), host(&gate));
        let mut out = cached_buf(&dev, rows * w);
        res.copy_into(&mut out);
        rowwise::gate_residual(&hh, &gh, (rows / b, w), &mut out);
        let out = tensor(&dev, out, (rows, w));
        if T::OWNS_TAPE {
            let out_id = out.clone();
            tape.add_backward_op(move |grads| {
                let dy = take_grad(grads, &out_id)?;
                rowwise::add_assign(grads.get_or_alloc_mut(&res)?, &dy);
                let (mut dh, mut dgate) = (take_grad(grads, &h)?, take_grad(grads, &gate)?);
                rowwise::gate_backward(&hh, &gh, &dy, (rows / b, w), (&mut dh, &mut dgate));
                put_grad(grads, &h, dh)?;
                put_grad(grads, &gate, dgate)?;
                put_grad(grads, &out_id, dy)
            });
        }
        out.put_tape(tape)
    }

    fn add_bias<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        bias_act(x, bias, rowwise::Act::Identity)
    }

    fn add_bias_relu<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        bias_act(x, bias, rowwise::Act::Relu)
    }

    fn linear<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        linear::linear(x, w, bias, rowwise::Act::Identity)
    }

    fn linear_relu<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        linear::linear(x, w, bias, rowwise::Act::Relu)
    }

    fn mlp_relu<T: Tape<f32, Self>>(x: T2<Self, T>, fc1: Layer<Self, T>, fc2: Layer<Self, T>) -> T2<Self, T> {
        linear::mlp_relu(x, fc1, fc2)
    }

    fn adamw_update(param: &mut T1<Self>, m: &mut T1<Self>, v: &mut T1<Self>, grad: &T1<Self>, step: &AdamStep) {
        let (mut ph, mut mh, mut vh) = (host(param), host(m), host(v));
        rowwise::adamw(&mut ph, &mut mh, &mut vh, &host(grad), step);
        // `copy_from` writes in place, or into a private copy when the buffer is shared (an EMA or pool clone).
        param.copy_from(&ph);
        m.copy_from(&mh);
        v.copy_from(&vh);
    }
}
