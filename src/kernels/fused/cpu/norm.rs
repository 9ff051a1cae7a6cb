//! LayerNorm over features (eps 1e-5, no affine) fused with the adaLN modulation `· (1 + scale) + shift`, on
//! row-major slices, one rayon task per sample.

use super::vmath;
use rayon::prelude::*;

/// LayerNorm's epsilon (dfdx's `normalize(1e-5)`, PyTorch's default).
const EPS: f32 = 1e-5;

/// Mean and `1/sqrt(var + eps)` of one row (population variance, as dfdx's `normalize`).
fn moments(x: &[f32]) -> (f32, f32) {
    let w = x.len() as f32;
    let mean = vmath::sum(x) / w;
    let var = vmath::sum_sq_dev(x, mean) / w;
    (mean, 1.0 / (var + EPS).sqrt())
}

/// Writes `LN(x) · (1 + scale) + shift` into `out` and `(mean, rstd)` per row into `stats`; `(n, w)` are the
/// tokens per sample and the features.
pub(super) fn forward(
    x: &[f32],
    shift: &[f32],
    scale: &[f32],
    (n, w): (usize, usize),
    out: &mut [f32],
    stats: &mut [f32],
) {
    let chunks = out.par_chunks_mut(n * w).zip(stats.par_chunks_mut(2 * n));
    chunks.enumerate().for_each(|(s, (out, stats))| {
        let (sh, sc) = (&shift[s * w..(s + 1) * w], &scale[s * w..(s + 1) * w]);
        for (r, (o, st)) in out.chunks_exact_mut(w).zip(stats.chunks_exact_mut(2)).enumerate() {
            let xr = &x[(s * n + r) * w..(s * n + r + 1) * w];
            let (mean, rstd) = moments(xr);
            st.copy_from_slice(&[mean, rstd]);
            for j in 0..w {
                o[j] = (xr[j] - mean) * rstd * (1.0 + sc[j]) + sh[j];
            }
        }
    });
}

/// Adds `(dx, dshift, dscale)` computed from the forward input, `scale`, the row statistics and `dy`.
pub(super) fn backward(
    x: &[f32],
    scale: &[f32],
    stats: &[f32],
    dy: &[f32],
    (n, w): (usize, usize),
    (dx, dshift, dscale): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let chunks = dx.par_chunks_mut(n * w).zip(dshift.par_chunks_mut(w)).zip(dscale.par_chunks_mut(w));
    chunks.enumerate().for_each(|(s, ((dx, dsh), dsc))| {
        let sc = &scale[s * w..(s + 1) * w];
        let (mut xhat, mut g) = (vec![0.0; w], vec![0.0; w]);
        for (r, dxr) in dx.chunks_exact_mut(w).enumerate() {
            let row = (s * n + r) * w..(s * n + r + 1) * w;
            let (xr, dyr) = (&x[row.clone()], &dy[row]);
            let (mean, rstd) = (stats[2 * (s * n + r)], stats[2 * (s * n + r) + 1]);
            for j in 0..w {
                xhat[j] = (xr[j] - mean) * rstd;
                dsh[j] += dyr[j];
                dsc[j] += dyr[j] * xhat[j];
                g[j] = dyr[j] * (1.0 + sc[j]);
            }
            let m1 = vmath::sum(&g) / w as f32;
            let m2 = vmath::dot(&g, &xhat) / w as f32;
            for j in 0..w {
                dxr[j] += rstd * (g[j] - m1 - xhat[j] * m2);
            }
        }
    });
}
