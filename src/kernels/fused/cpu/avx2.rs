//! The AVX2/FMA micro-kernel of the packed matrix product (`packed.rs`): a 6 × 16 tile of `C` held in twelve
//! 8-wide accumulators, for x86-64 CPUs with AVX2 and FMA (compiled on
//! x86-64 only).

use super::packed::{Blocking, Micro};

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile (two 8-wide vectors).
const NR: usize = 16;

/// The kernel and its cache blocks. Depth blocks of 512: the DiT's products with a depth of at most 512 then run
/// as one block, which measured 25–40 % faster there than two blocks of 256 (a `B` panel is 32 KiB, within a
/// 48 KiB L1); 120 rows of `A` (240 KiB at full depth, for L2; 48–240 measured alike); 1024 columns of `B`.
pub(super) static MICRO: Micro<MR, NR> =
    // SAFETY: `kernel` needs AVX2 and FMA, which `available` checks, and touches only the `MR × NR` tile and the
    // `kc` columns/rows of its panels (see its contract, the same as `MicroKernel`'s).
    unsafe { Micro::new(kernel, available, Blocking { kc: 512, mc: 120, nc: 1024 }) };

/// Whether this CPU has AVX2 and FMA (`is_x86_feature_detected!` caches its answer).
fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// The micro-kernel: `C (+)= A_panel · B_panel` for one `MR × NR` tile, `C[i][j]` at `c + i·ldc + j`. Each
/// depth step broadcasts the six `A` values of a column against the two 8-wide vectors of a `B` row (12 FMAs).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must be valid for `kc·MR` reads, `b` for `kc·NR`, and `c` for reads
/// and writes at `i·ldc + j` for every `i < MR`, `j < NR`.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load: bool) {
    use std::arch::x86_64::*;
    if load {
        // Start fetching the tile of `C` now: it is read only after the depth loop.
        for i in 0..MR {
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + NR - 1) as *const i8);
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm256_broadcast_ss(&*a.add(i));
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    for (i, row) in acc.iter().enumerate() {
        let ci = c.add(i * ldc);
        let (mut lo, mut hi) = (row[0], row[1]);
        if load {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(ci));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(ci.add(8)));
        }
        _mm256_storeu_ps(ci, lo);
        _mm256_storeu_ps(ci.add(8), hi);
    }
}
