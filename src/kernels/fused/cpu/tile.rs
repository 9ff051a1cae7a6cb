//! `C += A · B` for the small per-head matrices of attention, in register tiles of 4 rows × 16 columns.
//!
//! Every operand is a row-major view `(data, leading dimension)`. The tile's accumulators are fixed-size arrays,
//! which LLVM keeps in vector registers; edges fall back to narrower tiles. `gemm_acc` is compiled for AVX2+FMA
//! and AVX besides the baseline, picked at run time by `multiversion` (as dfdx's `gemm` does for its kernels);
//! with FMA each step is one fused multiply-add (one rounding instead of two).

/// A row-major matrix view: element `(r, c)` is `data[r * ld + c]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub ld: usize,
}

/// Adds the `R × J` tile of `A · B` at `(i0, j0)` into `c`, summing over `k` columns of `A`; `FMA` fuses each
/// multiply-add (only inlined into a caller compiled with FMA, where `mul_add` is one instruction).
#[inline(always)]
fn tile<const R: usize, const J: usize, const FMA: bool>(
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    ldc: usize,
    (i0, j0, k): (usize, usize, usize),
) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &a.data[(i0 + r) * a.ld..(i0 + r) * a.ld + k]);
    let mut acc = [[0.0f32; J]; R];
    for p in 0..k {
        let brow: &[f32; J] = b.data[p * b.ld + j0..p * b.ld + j0 + J].try_into().expect("tile width");
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = row[p];
            for (a, &y) in acc.iter_mut().zip(brow) {
                *a = if FMA { x.mul_add(y, *a) } else { *a + x * y };
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out = &mut c[(i0 + r) * ldc + j0..(i0 + r) * ldc + j0 + J];
        out.iter_mut().zip(acc).for_each(|(o, v)| *o += v);
    }
}

/// Adds the `R`-row strip at `i0` of `A · B` (`n` columns) into `c`.
#[inline(always)]
fn strip<const R: usize, const FMA: bool>(
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    ldc: usize,
    (i0, k, n): (usize, usize, usize),
) {
    let mut j0 = 0;
    while j0 + 16 <= n {
        tile::<R, 16, FMA>(a, b, c, ldc, (i0, j0, k));
        j0 += 16;
    }
    while j0 + 8 <= n {
        tile::<R, 8, FMA>(a, b, c, ldc, (i0, j0, k));
        j0 += 8;
    }
    while j0 < n {
        tile::<R, 1, FMA>(a, b, c, ldc, (i0, j0, k));
        j0 += 1;
    }
}

/// `C += A · B` with `A` `(m, k)`, `B` `(k, n)` and `C` `(m, n)` with leading dimension `ldc`.
#[multiversion::multiversion(targets("x86_64+avx+avx2+fma", "x86_64+avx"))]
pub(super) fn gemm_acc<'a, 'b>(a: View<'a>, b: View<'b>, c: &mut [f32], ldc: usize, dims: (usize, usize, usize)) {
    if multiversion::target::target_cfg_f!(target_feature = "fma") {
        rows::<true>(a, b, c, ldc, dims)
    } else {
        rows::<false>(a, b, c, ldc, dims)
    }
}

/// The body of [`gemm_acc`]: 4-row strips, then single rows.
#[inline(always)]
fn rows<const FMA: bool>(a: View<'_>, b: View<'_>, c: &mut [f32], ldc: usize, (m, k, n): (usize, usize, usize)) {
    let mut i0 = 0;
    while i0 + 4 <= m {
        strip::<4, FMA>(a, b, c, ldc, (i0, k, n));
        i0 += 4;
    }
    while i0 < m {
        strip::<1, FMA>(a, b, c, ldc, (i0, k, n));
        i0 += 1;
    }
}

/// Writes the transpose of the `(rows, cols)` view `src` into `dst` as `(cols, rows)`, row-major.
pub(super) fn transpose(src: View<'_>, (rows, cols): (usize, usize), dst: &mut [f32]) {
    for r in 0..rows {
        for (c, &x) in src.data[r * src.ld..r * src.ld + cols].iter().enumerate() {
            dst[c * rows + r] = x;
        }
    }
}
