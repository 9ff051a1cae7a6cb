//! Multi-head attention `softmax(Q_h K_hᵀ / √d_h) V_h` on row-major slices (`q`, `k`, `v` packed as the rows of
//! one `(b·n, 3w)` matrix, the layout of the fused q/k/v projection), one rayon task per sample.
//!
//! The per-head products run through the register-tiled `tile::gemm_acc`; the probabilities are kept for
//! backward.

use super::pool::Buf;
use super::tile::{gemm_acc, transpose, View};
use super::vmath;
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
    // Exponentials first, then their sum: both loops vectorize (vmath.rs).
    row.iter_mut().for_each(|s| *s = vmath::exp_nonpositive(*s - max));
    let inv = 1.0 / vmath::sum(row);
    row.iter_mut().for_each(|p| *p *= inv);
}

/// Which of the packed projections a head block belongs to (its column offset is `part · w`).
#[derive(Clone, Copy)]
enum Part {
    Q = 0,
    K = 1,
    V = 2,
}

/// The `(n, dh)` block of head `h` of `part` inside one sample's packed `(n, 3w)` rows `[q | k | v]`.
fn head(qkv: &[f32], part: Part, h: usize, d: Dims) -> View<'_> {
    let w = d.heads * d.dh;
    View { data: &qkv[part as usize * w + h * d.dh..], ld: 3 * w }
}

/// Writes the attention output into `out` (`(b·n, w)`) and the probabilities into `probs` (`(b, heads, n, n)`),
/// reading `q`, `k` and `v` packed as the rows `[q | k | v]` of `qkv` (`(b·n, 3w)`).
pub(super) fn forward(qkv: &[f32], d: Dims, out: &mut [f32], probs: &mut [f32]) {
    let (n, dh, w) = (d.n, d.dh, d.heads * d.dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let per = n * w;
    out.par_chunks_mut(per).zip(probs.par_chunks_mut(d.heads * n * n)).enumerate().for_each(|(s, (out, probs))| {
        let qkv = &qkv[3 * s * per..3 * (s + 1) * per];
        let mut kt = vec![0.0; dh * n];
        out.fill(0.0);
        for (h, p) in probs.chunks_exact_mut(n * n).enumerate() {
            transpose(head(qkv, Part::K, h, d), (n, dh), &mut kt);
            p.fill(0.0);
            gemm_acc(head(qkv, Part::Q, h, d), View { data: &kt, ld: n }, p, n, (n, dh, n));
            for row in p.chunks_exact_mut(n) {
                row.iter_mut().for_each(|s| *s *= scale);
                softmax(row);
            }
            gemm_acc(View { data: p, ld: n }, head(qkv, Part::V, h, d), &mut out[h * dh..], w, (n, n, dh));
        }
    });
}

/// Writes the gradients of packed `[q | k | v]` into `dqkv` (`(b·n, 3w)`, old contents ignored), from the forward
/// input, the probabilities and `dout`.
pub(super) fn backward(qkv: &[f32], probs: &[f32], dout: &[f32], d: Dims, dqkv: &mut [f32]) {
    let (n, dh, w) = (d.n, d.dh, d.heads * d.dh);
    let scale = 1.0 / (dh as f32).sqrt();
    let per = n * w;
    dqkv.par_chunks_mut(3 * per).enumerate().for_each(|(s, dqkv)| {
        let (qkv, dout) = (&qkv[3 * s * per..3 * (s + 1) * per], &dout[s * per..(s + 1) * per]);
        let probs = &probs[s * d.heads * n * n..(s + 1) * d.heads * n * n];
        let (mut vt, mut ds, mut tr) = (vec![0.0; dh * n], vec![0.0; n * n], vec![0.0; n * n]);
        dqkv.fill(0.0);
        // Column offset of head `h` of `part` in the packed gradient rows.
        let at = |part: Part, h: usize| part as usize * w + h * dh;
        for (h, p) in probs.chunks_exact(n * n).enumerate() {
            let go = View { data: &dout[h * dh..], ld: w };
            // dV_h += Pᵀ dO_h.
            transpose(View { data: p, ld: n }, (n, n), &mut tr);
            gemm_acc(View { data: &tr, ld: n }, go, &mut dqkv[at(Part::V, h)..], 3 * w, (n, n, dh));
            // dP = dO_h V_hᵀ, then dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √d_h.
            transpose(head(qkv, Part::V, h, d), (n, dh), &mut vt);
            ds.fill(0.0);
            gemm_acc(go, View { data: &vt, ld: n }, &mut ds, n, (n, dh, n));
            for (g, p) in ds.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
                let dot = vmath::dot(p, g);
                g.iter_mut().zip(p).for_each(|(g, p)| *g = p * (*g - dot) * scale);
            }
            // dQ_h += dS K_h and dK_h += dSᵀ Q_h.
            let k = head(qkv, Part::K, h, d);
            gemm_acc(View { data: &ds, ld: n }, k, &mut dqkv[at(Part::Q, h)..], 3 * w, (n, n, dh));
            transpose(View { data: &ds, ld: n }, (n, n), &mut tr);
            let q = head(qkv, Part::Q, h, d);
            gemm_acc(View { data: &tr, ld: n }, q, &mut dqkv[at(Part::K, h)..], 3 * w, (n, n, dh));
        }
    });
}

/// Packs three `(rows, w)` matrices as the rows `[a | b | c]` of one `(rows, 3w)` matrix.
pub(super) fn pack(parts: [&[f32]; 3], w: usize) -> Buf {
    let rows = parts[0].len() / w;
    let mut out = Buf::scratch(3 * rows * w);
    for (r, dst) in out.chunks_exact_mut(3 * w).enumerate() {
        for (dst, part) in dst.chunks_exact_mut(w).zip(parts) {
            dst.copy_from_slice(&part[r * w..(r + 1) * w]);
        }
    }
    out
}

/// Adds the column blocks of a packed `(rows, 3w)` matrix into three `(rows, w)` matrices (the inverse of
/// [`pack`], accumulating).
pub(super) fn add_unpacked(packed: &[f32], w: usize, parts: [&mut [f32]; 3]) {
    for (p, part) in parts.into_iter().enumerate() {
        for (dst, src) in part.chunks_exact_mut(w).zip(packed.chunks_exact(3 * w)) {
            dst.iter_mut().zip(&src[p * w..(p + 1) * w]).for_each(|(d, s)| *d += s);
        }
    }
}
