//! Row reductions and the exponential in forms the compiler vectorizes: a plain `iter().sum()` over `f32` is one
//! serial chain of additions (the order is fixed, so it cannot use SIMD lanes), and `f32::exp` is a libm call per
//! element. These run 8 independent partial sums and a branch-free polynomial exp over a slice instead, as
//! vectorising compilers for deep-learning graphs do for LayerNorm statistics and softmax.

/// Partial sums kept side by side (one AVX register of `f32`).
const LANES: usize = 8;

/// `Σ f(x_j)` with [`LANES`] interleaved partial sums, combined pairwise at the end; deterministic for a given
/// length (the summation order depends only on it).
#[inline]
fn sum_by(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
}

/// `Σ x_j`.
pub(super) fn sum(x: &[f32]) -> f32 {
    sum_by(x, |v| v)
}

/// `Σ (x_j − c)²`.
pub(super) fn sum_sq_dev(x: &[f32], c: f32) -> f32 {
    sum_by(x, |v| (v - c) * (v - c))
}

/// `Σ x_j · y_j` over the common length.
pub(super) fn dot(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0.0f32; LANES];
    let (mut xc, mut yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    for (a, b) in (&mut xc).zip(&mut yc) {
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += u * v;
        }
    }
    for ((s, &u), &v) in acc.iter_mut().zip(xc.remainder()).zip(yc.remainder()) {
        *s += u * v;
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7))
}

/// `e^x` for `x ≤ 0` (softmax's shifted scores), relative error below 4e-7 (about 3 ulp) against the exact value;
/// inputs below −87 (where `e^x` is under `f32`'s normal range) give 0, and NaN stays NaN.
///
/// Cody–Waite reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, with `ln 2` split in a high part exact in `f32` and
/// a low correction; `e^r` by its Taylor polynomial to degree 7 (the first omitted term is below
/// `0.347⁸/8! < 5e-9`), then `2^n` built directly in the exponent bits (J.-M. Muller, *Elementary Functions*,
/// ch. 11).
#[inline]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 0x3f317200: its 16 low mantissa bits are zero, so n · LN2_HI is exact; LN2_LO = ln 2 − LN2_HI.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 · 2²³ rounds to the nearest integer for |v| < 2²².
    const ROUND: f32 = 12_582_912.0;
    let under = x < -87.0;
    let xc = if under { -87.0 } else { x };
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n ∈ [−126, 0] here, so 127 + n is a valid biased exponent of a normal number.
    let scale = f32::from_bits(((127 + n as i32) as u32) << 23);
    let y = p * scale;
    if under {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_exact_value() {
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x > -87.0 {
            let (got, want) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x -= 0.000_37;
        }
        assert!(worst < 4e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn sums_match_f64_on_every_length() {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.37).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) * 1.1).collect();
            let s64: f64 = x.iter().map(|&v| v as f64).sum();
            let c = 0.25f32;
            let q64: f64 = x.iter().map(|&v| (v as f64 - c as f64).powi(2)).sum();
            let d64: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
            assert!((sum(&x) as f64 - s64).abs() <= 1e-5 * (1.0 + s64.abs()), "sum, n = {n}");
            assert!((sum_sq_dev(&x, c) as f64 - q64).abs() <= 1e-5 * (1.0 + q64), "sum_sq_dev, n = {n}");
            assert!((dot(&x, &y) as f64 - d64).abs() <= 1e-5 * (1.0 + d64.abs()), "dot, n = {n}");
        }
    }
}
