//! Matrix products for the fused linear layers, behind one safe entry point that checks every operand against its
//! slice, and a driver that splits the rows of the result over the rayon pool (one single-threaded product per
//! block, with the bias as the block's starting value and an epilogue such as ReLU applied while the block is
//! still in cache).
//!
//! Three implementations, the first this CPU runs being the default ([`Kernel::best`]): the packed kernels of
//! `packed.rs` with the AVX-512F micro-kernel (`avx512.rs`) or the AVX2/FMA one (`avx2.rs`), and the `gemm` crate
//! (the one dfdx's own matmul calls) on any CPU.

pub use super::mat::Mat;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};
use ::gemm::Parallelism;
use rayon::prelude::*;

/// Which implementation computes a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The packed kernel with an 8 × 32 AVX-512F micro-kernel (x86-64 CPUs with AVX-512F only).
    Avx512,
    /// The packed kernel with a 6 × 16 AVX2/FMA micro-kernel (x86-64 CPUs with AVX2 and FMA only).
    Avx2,
    /// The `gemm` crate, on any CPU.
    GemmCrate,
}

/// The environment variable that overrides [`Kernel::best`]: `avx512`, `avx2` or `gemm`.
pub const KERNEL_VAR: &str = "SEPPOC_GEMM_KERNEL";

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 3] = [Kernel::Avx512, Kernel::Avx2, Kernel::GemmCrate];

    /// The one the fused layers use on this CPU, decided once: the first of [`Kernel::ALL`] it runs, unless the
    /// environment variable [`KERNEL_VAR`] names another (e.g. `SEPPOC_GEMM_KERNEL=avx2` to compare the kernels
    /// end to end).
    ///
    /// A name that is not a kernel's, or one this CPU cannot run, is reported once on stderr and the fastest
    /// kernel runs instead.
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let fastest = Kernel::ALL.into_iter().find(|k| k.available()).unwrap_or(Kernel::GemmCrate);
            let Some(name) = std::env::var_os(KERNEL_VAR) else { return fastest };
            let name = name.to_string_lossy();
            let why = match Kernel::ALL.into_iter().find(|k| k.name() == name.trim()) {
                Some(k) if k.available() => return k,
                Some(_) => "this CPU cannot run that kernel",
                None => "not a kernel (avx512, avx2 or gemm)",
            };
            eprintln!("warning: {KERNEL_VAR}={name}: {why}; using the {} kernel", fastest.name());
            fastest
        })
    }

    /// Its name in [`KERNEL_VAR`].
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::GemmCrate => "gemm",
        }
    }

    /// The instruction set and register tile it computes with, e.g. `AVX-512F, 8 × 32 tile`.
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX-512F, 8 × 32 f32 tile",
            Kernel::Avx2 => "AVX2 + FMA, 6 × 16 f32 tile",
            Kernel::GemmCrate => "the gemm crate's own kernels",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::MICRO.available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::MICRO.available(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx512 | Kernel::Avx2 => false,
            Kernel::GemmCrate => true,
        }
    }
}

/// `c = a · b`, or `c += a · b` when `accumulate`, single-threaded, by `kernel`; `c` is row-major
/// `a.rows × b.cols` with leading dimension `ldc`. Without `accumulate` the old values of `c` are never read.
///
/// Panics if the inner dimensions differ, an operand does not fit its slice, or this CPU cannot run `kernel`.
pub fn product(kernel: Kernel, a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => avx512::MICRO.gemm(a, b, c, ldc, accumulate),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => avx2::MICRO.gemm(a, b, c, ldc, accumulate),
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx512 | Kernel::Avx2 => panic!("the {kernel:?} kernel runs on x86-64 only"),
        Kernel::GemmCrate => gemm_crate(a, b, c, ldc, accumulate),
    }
}

/// [`product`] through the `gemm` crate.
fn gemm_crate(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert!(a.fits() && b.fits(), "gemm: an operand view exceeds its slice");
    assert!(ldc >= n && (m == 0 || n == 0 || (m - 1) * ldc + n <= c.len()), "gemm: result exceeds its slice");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every element gemm reads (`a`, `b`: `(r, c)` at `r·rs + c·cs`, all below
    // `len`) and writes (`c`: `r·ldc + j` with `j < n ≤ ldc`, so rows do not overlap) inside the three slices;
    // `c` is borrowed mutably and `a`, `b` shared, so the output aliases no input. `Parallelism::None` runs on
    // this thread, so no pointer outlives the borrows. With `read_dst` false gemm ignores `c`'s old values
    // (alpha is forced to zero), so they need not be initialised in any particular way.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// What the rows of the result hold before the product is added.
#[derive(Clone, Copy, Debug)]
pub(super) enum Init<'a> {
    /// Their current values (`c += a · b`).
    Accumulate,
    /// Nothing: `c = a · b`, whatever `c` held.
    Overwrite,
    /// The bias row, in every row (`c = bias + a · b`).
    Bias(&'a [f32]),
}

/// Below this many multiply-adds a product runs on one thread (splitting costs more than it saves).
const PARALLEL_WORK: usize = 1 << 18;

/// `c = epilogue(init + a · b)` for a contiguous row-major `c` (`a.rows × b.cols`), with row blocks of `c` (and
/// `a`) spread over the rayon pool, one single-threaded product per block; `epilogue(first_row, block)` then runs
/// on each block while it is still in cache (e.g. ReLU).
///
/// One single-threaded product per core measured faster on 2 cores than gemm's own rayon split for the DiT's shapes
/// (BENCHMARKS.md).
pub(super) fn gemm_rows<F>(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], init: Init<'_>, epilogue: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    gemm_rows_by(Kernel::best(), a, b, c, init, epilogue)
}

/// [`product`] on a contiguous row-major `c` with the row split of the fused layers (`c += a · b` when
/// `accumulate`, else `c = a · b`).
pub fn product_rows(kernel: Kernel, a: Mat<'_>, b: Mat<'_>, c: &mut [f32], accumulate: bool) {
    let init = if accumulate { Init::Accumulate } else { Init::Overwrite };
    gemm_rows_by(kernel, a, b, c, init, no_epilogue)
}

/// [`gemm_rows`] by `kernel`.
fn gemm_rows_by<F>(kernel: Kernel, a: Mat<'_>, b: Mat<'_>, c: &mut [f32], init: Init<'_>, epilogue: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let (m, n) = (a.rows, b.cols);
    assert_eq!(c.len(), m * n, "gemm_rows: result length");
    if m == 0 || n == 0 {
        return;
    }
    let work = m * n * a.cols;
    let blocks = if work < PARALLEL_WORK { 1 } else { rayon::current_num_threads().clamp(1, m) };
    let per = m.div_ceil(blocks);
    c.par_chunks_mut(per * n).enumerate().for_each(|(i, block)| {
        let rows = block.len() / n;
        if let Init::Bias(bias) = init {
            block.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(bias));
        }
        product(kernel, a.row_block(i * per, rows), b, block, n, !matches!(init, Init::Overwrite));
        epilogue(i * per, block);
    });
}

/// An epilogue for [`gemm_rows`] that does nothing.
pub(super) fn no_epilogue(_: usize, _: &mut [f32]) {}

/// An epilogue for [`gemm_rows`]: ReLU in place.
pub(super) fn relu_epilogue(_: usize, block: &mut [f32]) {
    block.iter_mut().for_each(|v| *v = v.max(0.0));
}
