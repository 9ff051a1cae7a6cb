//! Row-wise kernels on row-major slices: bias add and its column sums, the gated residual, gradient
//! accumulation, and the AdamW update.

use super::pool::Buf;
use super::AdamStep;
use rayon::prelude::*;

/// Rows per rayon task for the memory-bound row-wise loops.
const ROWS_PER_TASK: usize = 256;

/// `dst += src`.
pub(super) fn add_assign(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// The activation applied after a bias add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Act {
    /// None.
    Identity,
    /// `max(x, 0)`.
    Relu,
}

/// Adds `bias` (`w` values) to every row of `x`, then applies `act`.
pub(super) fn add_rows(x: &mut [f32], bias: &[f32], act: Act) {
    x.par_chunks_mut(ROWS_PER_TASK * bias.len()).for_each(|chunk| {
        for row in chunk.chunks_exact_mut(bias.len()) {
            add_assign(row, bias);
            if act == Act::Relu {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    });
}

/// `dst += dy`, or `dst += dy ⊙ [y > 0]` (ReLU's derivative read off its output `y`) with a mask.
pub(super) fn add_masked(dst: &mut [f32], dy: &[f32], mask: Option<&[f32]>) {
    match mask {
        None => add_assign(dst, dy),
        // A select rather than a branch, so the loop vectorises.
        Some(y) => dst.iter_mut().zip(dy).zip(y).for_each(|((d, &g), &y)| *d += if y > 0.0 { g } else { 0.0 }),
    }
}

/// `sums += Σ_rows x` of a `(rows, w)` slice, `w = sums.len()`; a mask as in [`add_masked`]. Blocks of rows are
/// summed in parallel, then the partial sums are added in block order.
pub(super) fn add_column_sums(sums: &mut [f32], x: &[f32], mask: Option<&[f32]>) {
    let w = sums.len();
    let block = ROWS_PER_TASK * w;
    let partial = |(i, xb): (usize, &[f32])| {
        let mut acc = vec![0.0; w];
        match mask {
            None => xb.chunks_exact(w).for_each(|row| add_assign(&mut acc, row)),
            Some(y) => {
                let yb = y[i * block..].chunks_exact(w);
                xb.chunks_exact(w).zip(yb).for_each(|(row, y)| add_masked(&mut acc, row, Some(y)))
            }
        }
        acc
    };
    let parts: Vec<Vec<f32>> = x.par_chunks(block).enumerate().map(partial).collect();
    parts.iter().for_each(|p| add_assign(sums, p));
}

/// `d = dy ⊙ [y > 0]`: ReLU's derivative read off its output `y`, into a (pooled) buffer.
pub(super) fn relu_mask(dy: &[f32], y: &[f32]) -> Buf {
    let mut d = Buf::scratch(dy.len());
    let block = ROWS_PER_TASK * 64;
    d.par_chunks_mut(block).zip(dy.par_chunks(block)).zip(y.par_chunks(block)).for_each(|((d, dy), y)| {
        d.iter_mut().zip(dy).zip(y).for_each(|((d, &g), &y)| *d = if y > 0.0 { g } else { 0.0 })
    });
    d
}

/// `out += h · gate[sample]`, with `(n, w)` the tokens per sample and the features.
pub(super) fn gate_residual(h: &[f32], gate: &[f32], (n, w): (usize, usize), out: &mut [f32]) {
    out.par_chunks_mut(n * w).enumerate().for_each(|(s, out)| {
        let g = &gate[s * w..(s + 1) * w];
        for (r, o) in out.chunks_exact_mut(w).enumerate() {
            let hr = &h[(s * n + r) * w..(s * n + r + 1) * w];
            for j in 0..w {
                o[j] += hr[j] * g[j];
            }
        }
    });
}

/// Adds the gradients of [`gate_residual`] into `(dh, dgate)`: `dh += dy ⊙ gate`, `dgate += Σ_tokens dy ⊙ h`.
pub(super) fn gate_backward(
    h: &[f32],
    gate: &[f32],
    dy: &[f32],
    (n, w): (usize, usize),
    (dh, dgate): (&mut [f32], &mut [f32]),
) {
    dh.par_chunks_mut(n * w).zip(dgate.par_chunks_mut(w)).enumerate().for_each(|(s, (dh, dg))| {
        let g = &gate[s * w..(s + 1) * w];
        for (r, dhr) in dh.chunks_exact_mut(w).enumerate() {
            let row = (s * n + r) * w..(s * n + r + 1) * w;
            let (hr, dyr) = (&h[row.clone()], &dy[row]);
            for j in 0..w {
                dhr[j] += dyr[j] * g[j];
                dg[j] += dyr[j] * hr[j];
            }
        }
    });
}

/// One AdamW update in place, with the operations in the order of `composite::adamw_update`.
pub(super) fn adamw(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: &AdamStep) {
    let (bc1, bc2) = s.bias_correction;
    let (inv_bc2, step) = (1.0 / bc2, s.lr / bc1);
    for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        *m = *m * s.beta1 + g * (1.0 - s.beta1);
        *v = *v * s.beta2 + g * g * (1.0 - s.beta2);
        let denom = (*v * inv_bc2).sqrt() + s.eps;
        *p = *p * s.decay - (*m * step) / denom;
    }
}
