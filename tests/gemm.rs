//! The dense matrix product behind the fused CPU layers (`seppoc::kernels::fused::gemm`) against a naive f64
//! triple loop: every kernel this CPU runs, on one thread and through the layers' row split, over random shapes
//! (edge tiles, zero sizes), operand layouts (row-major, transposed, padded and non-unit strides), and both the
//! overwrite and the accumulate mode.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::kernels::fused::gemm::{product, product_rows, Kernel, Mat};

/// How an operand's elements lie in its slice.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Row-major with `pad` unused values after each row.
    RowMajor { pad: usize },
    /// The transpose of a row-major matrix with `pad` unused values after each of its rows (`rs = 1`).
    Transposed { pad: usize },
    /// Every other element of a row-major buffer (`cs = 2`).
    Strided,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        (0usize..3).prop_map(|pad| Layout::RowMajor { pad }),
        (0usize..3).prop_map(|pad| Layout::Transposed { pad }),
        Just(Layout::Strided),
    ]
}

/// A random `rows × cols` operand: its buffer and strides `(rs, cs)`.
fn operand(rows: usize, cols: usize, layout: Layout, rng: &mut ChaCha8Rng) -> (Vec<f32>, usize, usize) {
    let (len, rs, cs) = match layout {
        Layout::RowMajor { pad } => (rows * (cols + pad), cols + pad, 1),
        Layout::Transposed { pad } => (cols * (rows + pad), 1, rows + pad),
        Layout::Strided => (rows * 2 * cols, 2 * cols, 2),
    };
    ((0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), rs, cs)
}

/// One product case: shapes, layouts, the result's row padding, the mode and the data seed.
#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    la: Layout,
    lb: Layout,
    ldc_pad: usize,
    accumulate: bool,
    seed: u64,
}

/// Runs `case` with `kernel` (single-threaded, or through the row split when `split`) and checks every element
/// of the result against f64: `|c − ref| ≤ 1e-6 · (k + 2) · (Σ_p |a_ip·b_pj| + |c₀|) + 1e-30`.
fn check(case: Case, kernel: Kernel, split: bool) -> Result<(), TestCaseError> {
    let Case { m, k, n, la, lb, ldc_pad, accumulate, seed } = case;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (ad, ars, acs) = operand(m, k, la, &mut rng);
    let (bd, brs, bcs) = operand(k, n, lb, &mut rng);
    let a = Mat { data: &ad, rows: m, cols: k, rs: ars, cs: acs };
    let b = Mat { data: &bd, rows: k, cols: n, rs: brs, cs: bcs };
    let ldc = if split { n } else { n + ldc_pad };
    // The rows' padding holds a sentinel that must survive; the old values matter only when accumulating.
    let mut c: Vec<f32> = (0..m * ldc).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let before = c.clone();
    match split {
        true => product_rows(kernel, a, b, &mut c, accumulate),
        false => product(kernel, a, b, &mut c, ldc, accumulate),
    }
    for i in 0..m {
        for j in 0..ldc {
            let got = c[i * ldc + j];
            if j >= n {
                prop_assert_eq!(got.to_bits(), before[i * ldc + j].to_bits(), "padding ({}, {}) written", i, j);
                continue;
            }
            let c0 = if accumulate { before[i * ldc + j] as f64 } else { 0.0 };
            let (mut want, mut mag) = (c0, c0.abs());
            for p in 0..k {
                let t = ad[i * ars + p * acs] as f64 * bd[p * brs + j * bcs] as f64;
                want += t;
                mag += t.abs();
            }
            let tol = 1e-6 * (k as f64 + 2.0) * mag + 1e-30;
            prop_assert!(
                (got as f64 - want).abs() <= tol,
                "{:?} split {}: ({}, {}) = {} want {} (tol {:e})",
                kernel,
                split,
                i,
                j,
                got,
                want,
                tol
            );
        }
    }
    Ok(())
}

/// The kernels this CPU runs; the first call names on stderr those it cannot run (skipped), past the test
/// harness's output capture so that a passing run shows it too.
fn kernels() -> Vec<Kernel> {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let skipped: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| !k.available()).collect();
        if !skipped.is_empty() {
            let line = format!("gemm tests: this CPU cannot run {skipped:?}; skipped\n");
            _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
    });
    Kernel::ALL.into_iter().filter(|k| k.available()).collect()
}

fn case(dims: impl Strategy<Value = usize> + Clone) -> impl Strategy<Value = Case> {
    (dims.clone(), dims.clone(), dims, layout(), layout(), 0usize..3, any::<bool>(), any::<u64>())
        .prop_map(|(m, k, n, la, lb, ldc_pad, accumulate, seed)| Case { m, k, n, la, lb, ldc_pad, accumulate, seed })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Small shapes: every edge-tile combination of the 6 × 16 and 8 × 32 register tiles, including empty products.
    #[test]
    fn small_products_match_f64(case in case(0usize..=70)) {
        for kernel in kernels() {
            check(case, kernel, false)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Larger shapes: several cache blocks in every dimension (depth beyond one 512-deep block, rows beyond one
    /// 120-row block, columns beyond one 1024-column block), single-threaded and through the row split.
    #[test]
    fn large_products_match_f64(case in case(1usize..=1100), split in any::<bool>()) {
        // Bound the work (about 2·10⁷ multiply-adds) so the naive check stays quick.
        let Case { m, k, n, .. } = case;
        prop_assume!(m * k * n <= 20_000_000);
        for kernel in kernels() {
            check(case, kernel, split)?;
        }
    }
}

/// The DiT's shapes, including the backward forms (`dX = dY · Wᵀ`, `dW = Xᵀ · dY` with a long inner dimension).
#[test]
fn dit_shapes_match_f64() {
    let row = Layout::RowMajor { pad: 0 };
    let tr = Layout::Transposed { pad: 0 };
    let shapes =
        [(512, 128, 384, row, row), (256, 384, 96, row, tr), (128, 4096, 128, tr, row), (96, 1024, 288, tr, row)];
    for (seed, (m, k, n, la, lb)) in shapes.into_iter().enumerate() {
        for accumulate in [false, true] {
            let case = Case { m, k, n, la, lb, ldc_pad: 0, accumulate, seed: seed as u64 };
            for kernel in kernels() {
                for split in [false, true] {
                    check(case, kernel, split).unwrap_or_else(|e| panic!("{m}×{k}×{n}: {e}"));
                }
            }
        }
    }
}

/// Every kernel is tested where the CPU runs it; the default is the first one it runs (this test process does
/// not set the override variable).
#[test]
fn the_default_is_the_fastest_kernel_the_cpu_runs() {
    assert!(Kernel::GemmCrate.available());
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(Kernel::Avx512.available(), is_x86_feature_detected!("avx512f"));
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(Kernel::Avx2.available(), avx2);
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert!(!Kernel::Avx512.available() && !Kernel::Avx2.available());
    if std::env::var_os(seppoc::kernels::fused::gemm::KERNEL_VAR).is_none() {
        let first = Kernel::ALL.into_iter().find(|k| k.available());
        assert_eq!(Some(Kernel::best()), first);
    }
    assert_eq!(kernels(), Kernel::ALL.into_iter().filter(|k| k.available()).collect::<Vec<_>>());
}
