//! The AVX-512F micro-kernel of the packed matrix product (`packed.rs`): an 8 × 32 tile of `C` held in sixteen
//! 16-wide accumulators, for x86-64 CPUs with AVX-512F. The kernel is written for any `MR × 16·NV` tile.

use super::packed::{Blocking, Micro};

/// Whether this CPU has AVX-512F (`is_x86_feature_detected!` caches its answer).
fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// Rows of the register tile.
const MR: usize = 8;
/// 16-wide vectors per row of the register tile.
const NV: usize = 2;
/// Columns of the register tile.
const NR: usize = 16 * NV;

/// The kernel and its cache blocks. An 8 × 32 tile (16 accumulators) measured fastest on the DiT's shapes, whose
/// row counts are all multiples of 8 and column counts multiples of 32 (single thread, geometric mean over the
/// shapes and their three forms): 6 × 32 alike, 8 × 48 3 % slower, 10 × 32 and 12 × 32 4–5 %, 14 × 32 7 %,
/// 4 × 64 9 %. It runs at 215–265 GFLOP/s on one thread there, close to the 256 GFLOP/s of two 16-wide FMAs per
/// cycle at 4 GHz, so larger tiles have little to gain and lose more to partial edge tiles. Blocks as for the AVX2
/// kernel: depth 512 (256 measured 1 % slower), 120 rows of `A` (64–240 measured alike), 1024 columns of `B` (512
/// alike).
pub(super) static MICRO: Micro<MR, NR> =
    // SAFETY: `kernel::<MR, NV>` needs AVX-512F, which `available` checks, and touches only the `MR × 16·NV`
    // tile (`16·NV` = `NR`) and the `kc` columns/rows of its panels (see its contract, the same as
    // `MicroKernel`'s).
    unsafe { Micro::new(kernel::<MR, NV>, available, Blocking { kc: 512, mc: 120, nc: 1024 }) };

/// The micro-kernel: `C (+)= A_panel · B_panel` for one `MR × 16·NV` tile, `C[i][j]` at `c + i·ldc + j`. Each
/// depth step broadcasts the `MR` values of an `A` column against the `NV` 16-wide vectors of a `B` row
/// (`MR · NV` FMAs).
///
/// # Safety
/// The CPU must support AVX-512F; `a` must be valid for `kc·MR` reads, `b` for `kc·16·NV`, and `c` for reads and
/// writes at `i·ldc + j` for every `i < MR`, `j < 16·NV`.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    use std::arch::x86_64::*;
    if load {
        // Start fetching the tile of `C` now: it is read only after the depth loop.
        for i in 0..MR {
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 16 * v) as *const i8);
            }
            _mm_prefetch::<_MM_HINT_T0>(c.add(i * ldc + 16 * NV - 1) as *const i8);
        }
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, bv) in bv.iter_mut().enumerate() {
            *bv = _mm512_loadu_ps(b.add(16 * v));
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            for (acc, &bv) in row.iter_mut().zip(&bv) {
                *acc = _mm512_fmadd_ps(ai, bv, *acc);
            }
        }
        a = a.add(MR);
        b = b.add(16 * NV);
    }
    for (i, row) in acc.iter().enumerate() {
        let ci = c.add(i * ldc);
        for (v, &acc) in row.iter().enumerate() {
            let mut sum = acc;
            if load {
                sum = _mm512_add_ps(sum, _mm512_loadu_ps(ci.add(16 * v)));
            }
            _mm512_storeu_ps(ci.add(16 * v), sum);
        }
    }
}
