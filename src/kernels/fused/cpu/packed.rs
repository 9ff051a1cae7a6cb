//! The packed single-precision matrix product shared by the x86-64 micro-kernels (`avx2.rs`, `avx512.rs`), in
//! the classic blocked layout: `B` is copied into `kc × NR` column panels and `A` into `MR × kc` row panels (from
//! any strided view, so transposed operands cost nothing extra), and a register-blocked micro-kernel multiplies
//! one `A` panel by one `B` panel into an `MR × NR` tile of `C`. Panels are zero-padded, so edge tiles run the
//! same kernel into a scratch tile whose valid part is then added to `C`. Everything here is generic over the
//! tile (`MR`, `NR`) and the cache blocks ([`Blocking`]); a kernel module supplies only its micro-kernel.
//!
//! Cache blocking: a `kc × nc` block of `B` is packed once per call (it stays in L2/L3), an `mc × kc` block of `A`
//! per row block (L2), and each `kc × NR` panel of `B` is reused against every `A` panel of the block while it
//! sits in L1; the tile of `C` is prefetched while the kernel runs its depth loop. Packing buffers are per thread
//! and reused across calls. The weights are packed on every call: on the DiT's shapes packing `B` measured
//! 0.3–4 % of a product's time (up to 11 % when `B` is an activation gradient, for `dW = Xᵀ · dY`, which no
//! cache could reuse), and a weight is used in one layout per step, so packed weights are not kept. In the
//! layers' row split every thread packs all of `B` for itself: packing it once, in parallel, and sharing the
//! panels measured 5–15 % slower per DiT step (one more fork-join, and panels packed on the other core are not in
//! this core's L2).

use super::mat::Mat;
use std::cell::RefCell;

/// A micro-kernel: `C (+)= A_panel · B_panel` for one full `MR × NR` tile, `C[i][j]` at `c + i·ldc + j`, adding
/// to the old values when `load`; `a` holds `kc` columns of `MR` values, `b` `kc` rows of `NR` values.
pub(super) type MicroKernel = unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load: bool);

/// Largest `MR · NR` of a micro-kernel (the size of the edge tiles' scratch).
const MAX_TILE: usize = 1024;

/// Cache block sizes of a micro-kernel.
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocking {
    /// Largest depth of one packed block (longer depths are split into equal blocks).
    pub kc: usize,
    /// Rows of `A` packed at a time (a multiple of `MR`).
    pub mc: usize,
    /// Columns of `B` packed at a time (a multiple of `NR`).
    pub nc: usize,
}

/// A micro-kernel for `MR × NR` tiles with its cache blocks and the test of whether this CPU runs it.
pub(super) struct Micro<const MR: usize, const NR: usize> {
    kernel: MicroKernel,
    available: fn() -> bool,
    blocking: Blocking,
}

impl<const MR: usize, const NR: usize> Micro<MR, NR> {
    /// # Safety
    /// Whenever `available()` returns true, `kernel` must be sound to call with `a` valid for `kc·MR` reads, `b`
    /// for `kc·NR` reads and `c` for reads and writes at `i·ldc + j` for every `i < MR`, `j < NR` (the contract
    /// of [`MicroKernel`]), and touch no other memory.
    pub(super) const unsafe fn new(kernel: MicroKernel, available: fn() -> bool, blocking: Blocking) -> Self {
        assert!(MR > 0 && NR > 0 && MR * NR <= MAX_TILE, "tile size");
        assert!(blocking.kc > 0 && blocking.mc.is_multiple_of(MR) && blocking.nc.is_multiple_of(NR), "blocks");
        assert!(blocking.mc > 0 && blocking.nc > 0, "blocks");
        Micro { kernel, available, blocking }
    }

    /// Whether this CPU runs the kernel.
    pub(super) fn available(&self) -> bool {
        (self.available)()
    }

    /// `c = a · b`, or `c += a · b` when `accumulate`, on this thread; `c` is row-major `a.rows × b.cols` with
    /// leading dimension `ldc`. Same contract as `gemm::product`.
    ///
    /// Panics if the CPU cannot run the kernel, the inner dimensions differ or an operand does not fit its slice.
    pub(super) fn gemm(&self, a: Mat<'_>, b: Mat<'_>, c: &mut [f32], ldc: usize, accumulate: bool) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        assert!(self.available(), "packed gemm: the CPU lacks the kernel's instructions");
        assert_eq!(b.rows, k, "gemm: inner dimensions differ");
        assert!(a.fits() && b.fits(), "gemm: an operand view exceeds its slice");
        assert!(ldc >= n && (m == 0 || n == 0 || (m - 1) * ldc + n <= c.len()), "gemm: result exceeds its slice");
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
            }
            return;
        }
        let Blocking { kc: kc_block, mc: mc_block, nc: nc_block } = self.blocking;
        // Equal depth blocks (e.g. 384 = 2 × 192 rather than 256 + 128).
        let kc_max = k.div_ceil(k.div_ceil(kc_block));
        let mut fresh = (Vec::new(), Vec::new());
        SCRATCH.with(|scratch| {
            let mut held = scratch.try_borrow_mut();
            let (abuf, bbuf) = match held.as_deref_mut() {
                Ok((abuf, bbuf)) => (abuf, bbuf),
                Err(_) => (&mut fresh.0, &mut fresh.1),
            };
            let apack = aligned(abuf, mc_block * kc_max);
            let bpack = aligned(bbuf, nc_block.min(n.next_multiple_of(NR)) * kc_max);
            for jc in (0..n).step_by(nc_block) {
                let nc = nc_block.min(n - jc);
                for pc in (0..k).step_by(kc_max) {
                    let kc = kc_max.min(k - pc);
                    pack_b::<NR>(b, (pc, kc), (jc, nc), bpack);
                    let load = accumulate || pc > 0;
                    for ic in (0..m).step_by(mc_block) {
                        let mc = mc_block.min(m - ic);
                        pack_a::<MR>(a, (ic, mc), (pc, kc), apack);
                        self.macro_block(kc, apack, bpack, (ic, mc), (jc, nc), (c, ldc), load);
                    }
                }
            }
        });
    }

    /// The products of one packed `mc × kc` block of `A` (`apack`) with one packed `kc × nc` block of `B`
    /// (`bblock`) into rows `ic..ic + mc` and columns `jc..jc + nc` of `c`: each `B` panel against every `A` panel.
    #[allow(clippy::too_many_arguments)]
    fn macro_block(
        &self,
        kc: usize,
        apack: &[f32],
        bblock: &[f32],
        (ic, mc): (usize, usize),
        (jc, nc): (usize, usize),
        (c, ldc): (&mut [f32], usize),
        load: bool,
    ) {
        for jr in 0..nc.div_ceil(NR) {
            let bp = &bblock[jr * kc * NR..(jr + 1) * kc * NR];
            let (j0, w) = (jc + jr * NR, NR.min(nc - jr * NR));
            for ir in 0..mc.div_ceil(MR) {
                let ap = &apack[ir * kc * MR..(ir + 1) * kc * MR];
                let (i0, h) = (ic + ir * MR, MR.min(mc - ir * MR));
                let ct = &mut c[i0 * ldc + j0..];
                if h == MR && w == NR {
                    self.tile(kc, ap, bp, ct, ldc, load);
                } else {
                    self.edge_tile(kc, ap, bp, (h, w), ct, ldc, load);
                }
            }
        }
    }

    /// One full `MR × NR` tile: `c[i·ldc + j] (+)= Σ_p a[p·MR + i] · b[p·NR + j]`.
    fn tile(&self, kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, load: bool) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR && ldc >= NR && c.len() >= (MR - 1) * ldc + NR);
        // SAFETY: `tile` is only reached through `gemm`, which asserted `available()`, so by the contract of
        // `Micro::new` the kernel may run. It reads `a[0..kc·MR]` and `b[0..kc·NR]` and reads/writes
        // `c[i·ldc + j]` for `i < MR`, `j < NR`, the largest index being `(MR − 1)·ldc + NR − 1`; the assert
        // above keeps all three inside their slices. `c` is borrowed mutably and `a`, `b` shared, so the output
        // aliases no input.
        unsafe { (self.kernel)(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, load) }
    }

    /// A partial tile (`h ≤ MR` rows, `w ≤ NR` columns of `c`): the kernel runs into a scratch tile, whose valid
    /// part is then stored or added.
    #[allow(clippy::too_many_arguments)]
    fn edge_tile(
        &self,
        kc: usize,
        a: &[f32],
        b: &[f32],
        (h, w): (usize, usize),
        c: &mut [f32],
        ldc: usize,
        load: bool,
    ) {
        let mut scratch = [0.0f32; MAX_TILE];
        self.tile(kc, a, b, &mut scratch[..MR * NR], NR, false);
        for (i, part) in scratch.chunks_exact(NR).take(h).enumerate() {
            let row = &mut c[i * ldc..i * ldc + w];
            match load {
                true => row.iter_mut().zip(part).for_each(|(c, p)| *c += p),
                false => row.copy_from_slice(&part[..w]),
            }
        }
    }
}

thread_local! {
    /// This thread's packing buffers for `A` and `B`.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A sub-slice of `buf` of `len` values that starts on a 64-byte boundary (growing `buf` as needed).
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        *buf = vec![0.0; len + 16];
    }
    let off = buf.as_ptr().align_offset(64).min(16);
    &mut buf[off..off + len]
}

/// Packs rows `pc..pc + kc` and columns `jc..jc + nc` of `b` into `kc × NR` panels (panel `j` holds columns
/// `jc + j·NR ..`, row after row), zero-padding the last panel to `NR` columns.
fn pack_b<const NR: usize>(b: Mat<'_>, (pc, kc): (usize, usize), (jc, nc): (usize, usize), dst: &mut [f32]) {
    for (jp, panel) in dst[..nc.div_ceil(NR) * kc * NR].chunks_exact_mut(kc * NR).enumerate() {
        let j0 = jc + jp * NR;
        let w = NR.min(jc + nc - j0);
        for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
            let row = (pc + p) * b.rs;
            if b.cs == 1 && w == NR {
                // Fixed-size copies compile to a few vector moves (a variable-length one calls `memcpy`).
                let src: &[f32; NR] = b.data[row + j0..][..NR].try_into().expect("NR values");
                out.copy_from_slice(src);
            } else if b.cs == 1 {
                out[..w].copy_from_slice(&b.data[row + j0..row + j0 + w]);
            } else {
                out[..w].iter_mut().enumerate().for_each(|(j, v)| *v = b.data[row + (j0 + j) * b.cs]);
            }
            out[w..].fill(0.0);
        }
    }
}

/// Packs rows `ic..ic + mc` and columns `pc..pc + kc` of `a` into `MR × kc` panels (panel `i` holds rows
/// `ic + i·MR ..`, column after column), zero-padding the last panel to `MR` rows.
fn pack_a<const MR: usize>(a: Mat<'_>, (ic, mc): (usize, usize), (pc, kc): (usize, usize), dst: &mut [f32]) {
    for (ip, panel) in dst[..mc.div_ceil(MR) * kc * MR].chunks_exact_mut(kc * MR).enumerate() {
        let i0 = ic + ip * MR;
        let h = MR.min(ic + mc - i0);
        if a.rs == 1 {
            // Columns are contiguous (a transposed row-major matrix): copy `h` values per column.
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                let col = (pc + p) * a.cs + i0;
                if h == MR {
                    let src: &[f32; MR] = a.data[col..][..MR].try_into().expect("MR values");
                    out.copy_from_slice(src);
                } else {
                    out[..h].copy_from_slice(&a.data[col..col + h]);
                    out[h..].fill(0.0);
                }
            }
        } else if a.cs == 1 && h == MR {
            // Rows are contiguous (row-major): interleave `MR` row slices.
            let rows: [&[f32]; MR] = std::array::from_fn(|i| &a.data[(i0 + i) * a.rs + pc..][..kc]);
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                for (v, row) in out.iter_mut().zip(&rows) {
                    *v = row[p];
                }
            }
        } else {
            for i in 0..MR {
                let row = (i0 + i) * a.rs + pc * a.cs;
                for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                    out[i] = if i < h { a.data[row + p * a.cs] } else { 0.0 };
                }
            }
        }
    }
}
