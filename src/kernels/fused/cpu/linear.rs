//! The fused linear layer `act(x · W + b)` on dfdx's tape: the bias is the GEMM's starting value, ReLU runs on
//! each row block right after its product, and backward computes `dX`, `dW` and `db` from one masked gradient.

use super::gemm::{gemm_rows, Init, Mat};
use super::rowwise::{self, Act};
use super::{cached_buf, contiguous, host, put_grad, take_grad, tensor, T1, T2};
use crate::model::CpuDevice;
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
    gemm_rows(Mat::row_major(&xh, rows, i), Mat::row_major(&wh, i, o), &mut out, Init::Bias(&host(&bias)), relu);
    // ReLU's derivative needs the output's sign; the identity's does not.
    let kept = (T::OWNS_TAPE && relu).then(|| out.clone());
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
            gemm_rows(dmat, Mat::row_major(&wh, i, o).t(), &mut dx, Init::Accumulate, false);
            put_grad(grads, &x, dx)?;
            let mut dw = take_grad(grads, &w)?;
            gemm_rows(Mat::row_major(&xh, rows, i).t(), dmat, &mut dw, Init::Accumulate, false);
            put_grad(grads, &w, dw)?;
            put_grad(grads, &out_id, dy)
        });
    }
    out.put_tape(tape)
}
