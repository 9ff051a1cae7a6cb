//! Multi-head attention `softmax(Q_h K_hᵀ / √d_h) V_h` on row-major `(b·n, w)` slices, one rayon task per sample.
//!
//! The per-head products run through the register-tiled `tile::gemm_acc`; the probabilities are kept for
//! backward.

use super::tile::{gemm_acc, transpose, View};
use rayon::prelude::*;

/// Sizes: `n` tokens per sample, `heads` heads of width `dh` (so `w = heads · dh`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    pub n: usize,
    pub heads: usize,
    pub dh: usize,
}

/// Turns scores into probabilities in place: `p_j = exp(s_j − max) / Σ exp(s − max)`.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|p| *p *= inv);
}

/// The `(n, dh)` block of head `h` inside one sample's `(n, w)` rows.
fn head(x: &[f32], h: usize, d: Dims) -> View<'_> {
    View { data: &x[h * d.dh..], ld: d.heads * d.dh }
}

/// Writes the attention output into `out` (`(b·n, w)`) and the probabilities into `probs` (`(b, heads, n, n)`).
pub(super) fn forward(q: &[f32], k: &[f32], v: &[f32], d: Dims, out: &mut [f32], probs: &mut [f32]) {
    let (n, dh, w) = (d.n, d.dh, d.heads * d.dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let per = n * w;
    out.par_chunks_mut(per).zip(probs.par_chunks_mut(d.heads * n * n)).enumerate().for_each(|(s, (out, probs))| {
        let (q, k, v) = (&q[s * per..(s + 1) * per], &k[s * per..(s + 1) * per], &v[s * per..(s + 1) * per]);
        let mut kt = vec![0.0; dh * n];
        out.fill(0.0);
        for (h, p) in probs.chunks_exact_mut(n * n).enumerate() {
            transpose(head(k, h, d), (n, dh), &mut kt);
            p.fill(0.0);
            gemm_acc(head(q, h, d), View { data: &kt, ld: n }, p, n, (n, dh, n));
            for row in p.chunks_exact_mut(n) {
                row.iter_mut().for_each(|s| *s *= scale);
                softmax(row);
            }
            gemm_acc(View { data: p, ld: n }, head(v, h, d), &mut out[h * dh..], w, (n, n, dh));
        }
    });
}

/// Adds `(dq, dk, dv)` (each `(b·n, w)`) computed from the forward inputs, the probabilities and `dout`.
pub(super) fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dout: &[f32],
    d: Dims,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (n, dh, w) = (d.n, d.dh, d.heads * d.dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let per = n * w;
    let chunks = dq.par_chunks_mut(per).zip(dk.par_chunks_mut(per)).zip(dv.par_chunks_mut(per));
    chunks.enumerate().for_each(|(s, ((dq, dk), dv))| {
        let rows = s * per..(s + 1) * per;
        let (q, k, v, dout) = (&q[rows.clone()], &k[rows.clone()], &v[rows.clone()], &dout[rows]);
        let probs = &probs[s * d.heads * n * n..(s + 1) * d.heads * n * n];
        let (mut vt, mut ds, mut tr) = (vec![0.0; dh * n], vec![0.0; n * n], vec![0.0; n * n]);
        for (h, p) in probs.chunks_exact(n * n).enumerate() {
            let go = head(dout, h, d);
            // dV_h += Pᵀ dO_h.
            transpose(View { data: p, ld: n }, (n, n), &mut tr);
            gemm_acc(View { data: &tr, ld: n }, go, &mut dv[h * dh..], w, (n, n, dh));
            // dP = dO_h V_hᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √d_h.
            transpose(head(v, h, d), (n, dh), &mut vt);
            ds.fill(0.0);
            gemm_acc(go, View { data: &vt, ld: n }, &mut ds, n, (n, dh, n));
            for (g, p) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
                let dot: f32 = p.iter().zip(g.iter()).map(|(p, g)| p * g).sum();
                g.iter_mut().zip(p).for_each(|(g, p)| *g = p * (*g - dot) * scale);
            }
            // dQ_h += dS K_h and dK_h += dSᵀ Q_h.
            gemm_acc(View { data: &ds, ld: n }, head(k, h, d), &mut dq[h * dh..], w, (n, n, dh));
            transpose(View { data: &ds, ld: n }, (n, n), &mut tr);
            gemm_acc(View { data: &tr, ld: n }, head(q, h, d), &mut dk[h * dh..], w, (n, n, dh));
        }
    });
}
