//! The DiT's self-attention layer as one op on dfdx's tape: the q/k/v projections as one GEMM against the three
//! weights packed side by side (the stored parameters are unchanged), the attention core on the packed result,
//! then the output projection. Nothing between the input and the output becomes a tensor.

use super::attention::{self, add_unpacked, Dims};
use super::gemm::{gemm_rows, no_epilogue, Init, Mat};
use super::pool::Buf;
use super::rowwise::add_column_sums;
use super::{cached_buf, contiguous, host, put_grad, take_grad, tensor};
use crate::device::{CpuDevice, Layer, T1, T2};
use dfdx::prelude::*;

type Tensor2 = T2<CpuDevice>;
type Tensor1 = T1<CpuDevice>;

/// The layer's parameters once split from their tapes: `[(w, b); 4]` for q, k, v, o.
type Params = [(Tensor2, Tensor1); 4];

/// See `Backend::self_attention`. Backward: `dbo += Σ_rows dy`, `dWo += attᵀ · dy`, `datt = dy · Woᵀ`, the
/// attention backward into the packed `dqkv`, then `db_{q,k,v} += Σ_rows dqkv`, `dx += dqkv · Wqkvᵀ`,
/// `dW_{q,k,v} += xᵀ · dqkv` (split back into the three weights).
pub(super) fn self_attention<T: Tape<f32, CpuDevice>>(
    x: T2<CpuDevice, T>,
    qkvo: [Layer<CpuDevice, T>; 4],
    b: usize,
    heads: usize,
) -> T2<CpuDevice, T> {
    let (x, mut tape) = contiguous(x).split_tape();
    let params: Params = qkvo.map(|(w, bias)| {
        let ((w, tw), (bias, tb)) = (contiguous(w).split_tape(), bias.split_tape());
        tape = std::mem::take(&mut tape).merge(tw).merge(tb);
        (w, bias)
    });
    let (rows, w) = *x.shape();
    for (wt, bias) in &params {
        assert_eq!((*wt.shape(), bias.shape().0), ((w, w), w), "self_attention: projections must be (w, w)");
    }
    let dims = Dims { n: rows / b, heads, dh: w / heads };
    let dev = x.device().clone();
    let xh = host(&x);
    let [wq, wk, wv, wo] = [0, 1, 2, 3].map(|i| host(&params[i].0));
    let wqkv = attention::pack([&wq, &wk, &wv], w);
    let bqkv: Vec<f32> = params[..3].iter().flat_map(|(_, bias)| host(bias).to_vec()).collect();
    let mut qkv = Buf::scratch(rows * 3 * w);
    let xm = Mat::row_major(&xh, rows, w);
    gemm_rows(xm, Mat::row_major(&wqkv, w, 3 * w), &mut qkv, Init::Bias(&bqkv), no_epilogue);
    let mut att = Buf::scratch(rows * w);
    let mut probs = Buf::scratch(b * heads * dims.n * dims.n);
    attention::forward(&qkv, dims, &mut att, &mut probs);
    let mut out = cached_buf(&dev, rows * w);
    let wom = Mat::row_major(&wo, w, w);
    gemm_rows(Mat::row_major(&att, rows, w), wom, &mut out, Init::Bias(&host(&params[3].1)), no_epilogue);
    let out = tensor(&dev, out, (rows, w));
    if T::OWNS_TAPE {
        let out_id = out.clone();
        tape.add_backward_op(move |grads| {
            let dy = take_grad(grads, &out_id)?;
            let (dym, wom) = (Mat::row_major(&dy, rows, w), Mat::row_major(&wo, w, w));
            let [_, _, _, (wo_t, bo_t)] = &params;
            add_column_sums(grads.get_or_alloc_mut(bo_t)?, &dy, None);
            let mut dwo = take_grad(grads, wo_t)?;
            gemm_rows(Mat::row_major(&att, rows, w).t(), dym, &mut dwo, Init::Accumulate, no_epilogue);
            put_grad(grads, wo_t, dwo)?;
            let mut datt = Buf::scratch(rows * w);
            gemm_rows(dym, wom.t(), &mut datt, Init::Overwrite, no_epilogue);
            let mut dqkv = Buf::scratch(rows * 3 * w);
            attention::backward(&qkv, &probs, &datt, dims, &mut dqkv);
            let mut dbqkv = vec![0.0; 3 * w];
            add_column_sums(&mut dbqkv, &dqkv, None);
            let dm = Mat::row_major(&dqkv, rows, 3 * w);
            let mut dx = take_grad(grads, &x)?;
            gemm_rows(dm, Mat::row_major(&wqkv, w, 3 * w).t(), &mut dx, Init::Accumulate, no_epilogue);
            put_grad(grads, &x, dx)?;
            let mut dwqkv = Buf::scratch(w * 3 * w);
            gemm_rows(Mat::row_major(&xh, rows, w).t(), dm, &mut dwqkv, Init::Overwrite, no_epilogue);
            let [(wq, bq), (wk, bk), (wv, bv), _] = &params;
            let (mut dwq, mut dwk, mut dwv) = (take_grad(grads, wq)?, take_grad(grads, wk)?, take_grad(grads, wv)?);
            add_unpacked(&dwqkv, w, [&mut dwq, &mut dwk, &mut dwv]);
            put_grad(grads, wq, dwq)?;
            put_grad(grads, wk, dwk)?;
            put_grad(grads, wv, dwv)?;
            let (mut dbq, mut dbk, mut dbv) = (take_grad(grads, bq)?, take_grad(grads, bk)?, take_grad(grads, bv)?);
            add_unpacked(&dbqkv, w, [&mut dbq, &mut dbk, &mut dbv]);
            put_grad(grads, bq, dbq)?;
            put_grad(grads, bk, dbk)?;
            put_grad(grads, bv, dbv)?;
            put_grad(grads, &out_id, dy)
        });
    }
    out.put_tape(tape)
}
