//! The fused linear layer `act(x · W + b)` on dfdx's tape: the bias is the GEMM's starting value, ReLU runs on
//! each row block right after its product, and backward computes `dX`, `dW` and `db` from one masked gradient.

use super::gemm::{gemm_rows, no_epilogue, relu_epilogue, Init, Mat};
use super::pool::Buf;
use super::rowwise::{self, Act};
use super::{cached_buf, contiguous, host, put_grad, take_grad, tensor};
use crate::device::{CpuDevice, T1, T2};
use dfdx::prelude::*;

/// `act(x · w + bias)` for `x` `(rows, i)`, `w` `(i, o)`, `bias` `(o,)`, with its backward:
/// `d = dy ⊙ act'`, `dx += d · wᵀ`, `dw += xᵀ · d`, `dbias += Σ_rows d`.
pub(super) fn linear<T: Tape<f32, CpuDevice>>(
    x: T2<CpuDevice, T>,
    w: T2<CpuDevice, T>,
    bias: T1<CpuDevice, T>,
    act: Act,
) -> T2<CpuDevice, T> {
    let (x, tx) = contiguous(x).split_tape();
    let (w, tw) = contiguous(w).split_tape();
    let (bias, tb) = bias.split_tape();
    let mut tape = tx.merge(tw).merge(tb);
    let ((rows, i), (wi, o)) = (*x.shape(), *w.shape());
    assert_eq!((wi, bias.shape().0), (i, o), "linear: x is (rows, {i}), w ({wi}, {o}), bias ({},)", bias.shape().0);
    let dev = x.device().clone();
    let (xh, wh) = (host(&x), host(&w));
    let mut out = cached_buf(&dev, rows * o);
    let relu = act == Act::Relu;
    let (xm, wm, bh) = (Mat::row_major(&xh, rows, i), Mat::row_major(&wh, i, o), host(&bias));
    match relu {
        true => gemm_rows(xm, wm, &mut out, Init::Bias(&bh), relu_epilogue),
        false => gemm_rows(xm, wm, &mut out, Init::Bias(&bh), no_epilogue),
    }
    // ReLU's derivative needs the output's sign; the identity's does not.
    let kept = (T::OWNS_TAPE && relu).then(|| Buf::copy_of(&out));
    let out = tensor(&dev, out, (rows, o));
    if T::OWNS_TAPE {
        let out_id = out.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out_id)?;
            let masked = kept.map(|y| rowwise::relu_mask(&dy, &y));
            let d = masked.as_deref().unwrap_or(&dy);
            rowwise::add_column_sums(grads.get_or_alloc_mut(&bias)?, d, None);
            let dmat = Mat::row_major(d, rows, o);
            let mut dx = take_grad(grads, &x)?;
            gemm_rows(dmat, Mat::row_major(&wh, i, o).t(), &mut dx, Init::Accumulate, no_epilogue);
            put_grad(grads, &x, dx)?;
            let mut dw = take_grad(grads, &w)?;
            gemm_rows(Mat::row_major(&xh, rows, i).t(), dmat, &mut dw, Init::Accumulate, no_epilogue);
            put_grad(grads, &w, dw)?;
            put_grad(grads, &out_id, dy)
        });
    }
    out.put_tape(tape)
}

/// `max(x · w1 + b1, 0) · w2 + b2` (a ReLU MLP) for `x` `(rows, i)`, `w1` `(i, h)`, `w2` `(h, o)`. The hidden
/// activation never becomes a tensor: it is kept on the host for backward and doubles as ReLU's mask.
///
/// Backward: `dbias2 += Σ_rows dy`, `dw2 += hidᵀ · dy`, `d = (dy · w2ᵀ) ⊙ [hid > 0]`, then `dbias1 += Σ_rows d`,
/// `dx += d · w1ᵀ`, `dw1 += xᵀ · d`.
pub(super) fn mlp_relu<T: Tape<f32, CpuDevice>>(
    x: T2<CpuDevice, T>,
    (w1, b1): (T2<CpuDevice, T>, T1<CpuDevice, T>),
    (w2, b2): (T2<CpuDevice, T>, T1<CpuDevice, T>),
) -> T2<CpuDevice, T> {
    let (x, tx) = contiguous(x).split_tape();
    let ((w1, t1), (b1, t2)) = (contiguous(w1).split_tape(), b1.split_tape());
    let ((w2, t3), (b2, t4)) = (contiguous(w2).split_tape(), b2.split_tape());
    let mut tape = tx.merge(t1).merge(t2).merge(t3).merge(t4);
    let ((rows, i), (i1, h), (h2, o)) = (*x.shape(), *w1.shape(), *w2.shape());
    assert_eq!((i1, h2, b1.shape().0, b2.shape().0), (i, h, h, o), "mlp_relu: shapes do not chain");
    let dev = x.device().clone();
    let (xh, w1h, w2h) = (host(&x), host(&w1), host(&w2));
    let mut hid = Buf::scratch(rows * h);
    let (xm, w1m, w2m) = (Mat::row_major(&xh, rows, i), Mat::row_major(&w1h, i, h), Mat::row_major(&w2h, h, o));
    gemm_rows(xm, w1m, &mut hid, Init::Bias(&host(&b1)), relu_epilogue);
    let mut out = cached_buf(&dev, rows * o);
    gemm_rows(Mat::row_major(&hid, rows, h), w2m, &mut out, Init::Bias(&host(&b2)), no_epilogue);
    let out = tensor(&dev, out, (rows, o));
    if T::OWNS_TAPE {
        let out_id = out.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out_id)?;
            let (xm, w1m, w2m) = (Mat::row_major(&xh, rows, i), Mat::row_major(&w1h, i, h), Mat::row_major(&w2h, h, o));
            let (dym, hm) = (Mat::row_major(&dy, rows, o), Mat::row_major(&hid, rows, h));
            rowwise::add_column_sums(grads.get_or_alloc_mut(&b2)?, &dy, None);
            let mut dw2 = take_grad(grads, &w2)?;
            gemm_rows(hm.t(), dym, &mut dw2, Init::Accumulate, no_epilogue);
            put_grad(grads, &w2, dw2)?;
            // ReLU's derivative masks each block of `dy · w2ᵀ` as it is produced.
            let mut d = Buf::scratch(rows * h);
            gemm_rows(dym, w2m.t(), &mut d, Init::Overwrite, |r0: usize, block: &mut [f32]| {
                let y = &hid[r0 * h..r0 * h + block.len()];
                block.iter_mut().zip(y).for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 });
            });
            rowwise::add_column_sums(grads.get_or_alloc_mut(&b1)?, &d, None);
            let dm = Mat::row_major(&d, rows, h);
            let mut dx = take_grad(grads, &x)?;
            gemm_rows(dm, w1m.t(), &mut dx, Init::Accumulate, no_epilogue);
            put_grad(grads, &x, dx)?;
            let mut dw1 = take_grad(grads, &w1)?;
            gemm_rows(xm.t(), dm, &mut dw1, Init::Accumulate, no_epilogue);
            put_grad(grads, &w1, dw1)?;
            put_grad(grads, &out_id, dy)
        });
    }
    out.put_tape(tape)
}
