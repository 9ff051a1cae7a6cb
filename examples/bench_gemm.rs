//! Benchmarks the fused CPU layers' matrix product on the DiT's shapes: GFLOP/s of every kernel this CPU runs
//! (the packed kernel with its AVX-512F and AVX2/FMA micro-kernels, the `gemm` crate), on one thread and through
//! the layers' row split over the rayon pool; median of the repetitions, the kernels interleaved within each
//! repetition.
//!
//! `cargo run --release --example bench_gemm -- [reps] [forward]` (default 9 repetitions; `forward`: only the
//! forward products, without the backward forms `dX = dY · Wᵀ` and `dW = Xᵀ · dY`).
//!
//! It first measures the ceiling each packed kernel works against on this machine: the GFLOP/s of one core
//! running only independent fused multiply-adds on registers, at the kernel's vector width (no memory traffic,
//! at whatever clock the core runs), so the products' rates can be read as a share of it.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::kernels::fused::gemm::{product, product_rows, Kernel, Mat};

/// `(rows, inner, out)` of the DiT's forward products (rows = batch · tokens).
const SHAPES: [(usize, usize, usize); 8] = [
    (4096, 128, 128),
    (4096, 128, 384),
    (4096, 128, 512),
    (4096, 512, 128),
    (1024, 96, 96),
    (1024, 96, 288),
    (1024, 96, 384),
    (1024, 384, 96),
];

/// Which product of a linear layer `Y = X · W` (`X` rows × inner, `W` inner × out).
#[derive(Clone, Copy)]
enum Form {
    /// `Y = X · W`.
    Forward,
    /// `dX = dY · Wᵀ` (`b` a transposed view).
    InputGrad,
    /// `dW = Xᵀ · dY` (`a` a transposed view, the long inner dimension).
    WeightGrad,
}

impl Form {
    fn name(self) -> &'static str {
        match self {
            Form::Forward => "X·W",
            Form::InputGrad => "dY·Wᵀ",
            Form::WeightGrad => "Xᵀ·dY",
        }
    }
}

/// One product to time: its operands' buffers and shapes.
struct Problem {
    form: Form,
    shape: (usize, usize, usize),
    x: Vec<f32>,
    w: Vec<f32>,
    dy: Vec<f32>,
}

impl Problem {
    fn new(form: Form, shape @ (rows, inner, out): (usize, usize, usize), rng: &mut ChaCha8Rng) -> Self {
        let mut normal = |n: usize| (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect::<Vec<_>>();
        Problem { form, shape, x: normal(rows * inner), w: normal(inner * out), dy: normal(rows * out) }
    }

    /// `(a, b)` of the product.
    fn operands(&self) -> (Mat<'_>, Mat<'_>) {
        let (rows, inner, out) = self.shape;
        let (x, w, dy) = (
            Mat::row_major(&self.x, rows, inner),
            Mat::row_major(&self.w, inner, out),
            Mat::row_major(&self.dy, rows, out),
        );
        match self.form {
            Form::Forward => (x, w),
            Form::InputGrad => (dy, w.t()),
            Form::WeightGrad => (x.t(), dy),
        }
    }

    fn flops(&self) -> f64 {
        let (rows, inner, out) = self.shape;
        2.0 * (rows * inner * out) as f64
    }

    /// Seconds for `calls` products into `c` (accumulating, as the layers do).
    fn time(&self, kernel: Kernel, split: bool, calls: usize, c: &mut [f32]) -> f64 {
        let (a, b) = self.operands();
        let start = Instant::now();
        for _ in 0..calls {
            match split {
                true => product_rows(kernel, a, b, c, true),
                false => product(kernel, a, b, c, b.cols, true),
            }
        }
        start.elapsed().as_secs_f64()
    }
}

/// Independent FMA chains per loop iteration of the peak probes: at least an FMA's latency times the FMA units
/// of current x86-64 cores (4 × 2), so the loop is bound by FMA throughput alone, and few enough to stay in
/// registers with the two constants (AVX2 has 16 vector registers, AVX-512 32).
const CHAINS_AVX2: usize = 12;
/// As [`CHAINS_AVX2`], for AVX-512.
const CHAINS_AVX512: usize = 16;

/// GFLOP/s of one core running `iters` rounds of independent FMAs at `kernel`'s vector width, median of 5 runs;
/// `None` for a kernel that is not a packed micro-kernel or that this CPU cannot run.
fn fma_peak(kernel: Kernel, iters: usize) -> Option<f64> {
    if !kernel.available() {
        return None;
    }
    let (fmas, run): (usize, fn(usize) -> f32) = match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` checked AVX2 and FMA.
        Kernel::Avx2 => (8 * CHAINS_AVX2, |n| unsafe { fma_loop_avx2(n) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` checked AVX-512F.
        Kernel::Avx512 => (16 * CHAINS_AVX512, |n| unsafe { fma_loop_avx512(n) }),
        _ => return None,
    };
    let secs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(run(std::hint::black_box(iters)));
            start.elapsed().as_secs_f64()
        })
        .collect();
    Some((iters * fmas * 2) as f64 / median(secs) / 1e9)
}

/// `n` rounds of [`CHAINS_AVX2`] independent 8-wide FMAs on registers; returns the first lane of their sum.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS_AVX2];
    for _ in 0..n {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    _mm256_cvtss_f32(acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)))
}

/// As [`fma_loop_avx2`], [`CHAINS_AVX512`] 16-wide FMAs (returns the mean lane of the sum).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS_AVX512];
    for _ in 0..n {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v))) / 16.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // On a rayon worker, as `seppoc`'s commands run (src/cli/mod.rs), so the row split starts on this thread.
    rayon::scope(|_| bench());
}

fn bench() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(9);
    let forms: &[Form] = match args.iter().any(|a| a == "forward") {
        true => &[Form::Forward],
        false => &[Form::Forward, Form::InputGrad, Form::WeightGrad],
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average (1, 5, 15 min): {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let kernels: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| k.available()).collect();
    let names: Vec<&str> = kernels.iter().map(|k| k.name()).collect();
    let skipped: Vec<&str> = Kernel::ALL.iter().filter(|k| !k.available()).map(|k| k.name()).collect();
    println!(
        "rayon threads: {}, kernels: {}, not on this CPU: {:?}",
        rayon::current_num_threads(),
        names.join(", "),
        skipped
    );
    for &k in &kernels {
        if let Some(peak) = fma_peak(k, 20_000_000) {
            println!("FMA peak of one core, registers only ({}): {peak:.1} GFLOP/s", k.describe());
        }
    }
    println!("median of {reps} repetitions, GFLOP/s ({})", names.join(" / "));
    let width = 7 * kernels.len() + 2;
    println!("{:<18} {:<7} {:>width$} {:>width$}", "rows×inner×out", "form", "1 thread", "row split");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for &shape in &SHAPES {
        for &form in forms {
            let problem = Problem::new(form, shape, &mut rng);
            let (a, b) = problem.operands();
            let mut c = vec![0.0f32; a.rows * b.cols];
            // About 0.1 GFLOP per timed repetition.
            let calls = (1e8 / problem.flops()).ceil() as usize;
            let variants: Vec<(Kernel, bool)> =
                [false, true].into_iter().flat_map(|split| kernels.iter().map(move |&k| (k, split))).collect();
            variants.iter().for_each(|&(k, split)| _ = problem.time(k, split, 1, &mut c));
            let mut secs = vec![Vec::new(); variants.len()];
            for _ in 0..reps {
                for (v, &(k, split)) in variants.iter().enumerate() {
                    secs[v].push(problem.time(k, split, calls, &mut c));
                }
            }
            let gflops: Vec<f64> = secs.into_iter().map(|s| problem.flops() * calls as f64 / median(s) / 1e9).collect();
            let row = |split: bool| {
                let of = |k: &Kernel| variants.iter().position(|v| *v == (*k, split)).map_or(0.0, |i| gflops[i]);
                kernels.iter().map(|k| format!("{:5.1}", of(k))).collect::<Vec<_>>().join(" / ")
            };
            let (rows, inner, out) = shape;
            println!(
                "{:<18} {:<7} {:>width$} {:>width$}",
                format!("{rows}×{inner}×{out}"),
                form.name(),
                row(false),
                row(true)
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
