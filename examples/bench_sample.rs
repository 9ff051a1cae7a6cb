//! Reference-sampling throughput on CPU: samples per second of the sampler a SePPO step runs for its references
//! (deterministic DDIM, 10 steps, classifier-free guidance 5, the `[cond; null]` batch in one forward per step),
//! on a checkpoint's model.
//!
//! `cargo run --release --example bench_sample -- [checkpoint] [batch] [reps]` (defaults
//! `assets/base/model.safetensors`, 16, 5): one untimed warm-up call, then `reps` timed calls of `batch` samples;
//! prints `RESULT seppoc batch B ms_per_call M samples_per_s S` (median call). The captions are the fixed token
//! rows of `bench/sample_torch.py` (colour, shape, position), so both sides sample the same prompts.
//! `SEPPOC_GEMM_KERNEL=avx512|avx2|gemm` picks the matrix-product kernel, as for `seppoc`.

use std::path::Path;
use std::time::Instant;

use seppoc::device::cpu;
use seppoc::model::load_checkpoint;
use seppoc::sampler::{sample, SamplerConfig};

/// The `i`-th benchmark caption, as token ids padded to `max_tokens`: colour, shape and position words of the
/// image world's vocabulary (ids 9–12, 13–15 and 16–20; `bench/sample_torch.py` builds the same rows).
fn caption(i: usize, max_tokens: usize) -> Vec<usize> {
    let mut ids = vec![9 + i % 4, 13 + i % 3, 16 + i % 5];
    ids.resize(max_tokens, 0);
    ids
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("assets/base/model.safetensors", String::as_str);
    let parse = |i: usize, default: usize, what: &str| match args.get(i) {
        None => Ok(default),
        Some(s) => {
            s.parse::<usize>().ok().filter(|&v| v > 0).ok_or(format!("{what} must be a positive integer, got `{s}`"))
        }
    };
    let (batch, reps) = match (parse(2, 16, "batch"), parse(3, 5, "reps")) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("bench_sample: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // On a rayon worker, as `seppoc`'s commands run (src/cli/mod.rs).
    match rayon::scope(|_| bench(Path::new(path), batch, reps)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_sample: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn bench(path: &Path, batch: usize, reps: usize) -> Result<(), String> {
    let (model, meta) = load_checkpoint(path, &cpu()).map_err(|e| e.to_string())?;
    let schedule = meta.schedule.build();
    let cfg = SamplerConfig::ddim(10, 5.0);
    let max_tokens = model.config().max_tokens;
    if model.config().vocab_size < 21 {
        return Err(format!("{}: the benchmark captions need the image world's 21-word vocabulary", path.display()));
    }
    let tokens: Vec<Vec<usize>> = (0..batch).map(|i| caption(i, max_tokens)).collect();
    let mut ms = Vec::with_capacity(reps);
    for rep in 0..=reps {
        let t0 = Instant::now();
        let images = sample(&model, &schedule, &cfg, &tokens, rep as u64).map_err(|e| e.to_string())?;
        let elapsed = t0.elapsed().as_secs_f64() * 1e3;
        assert_eq!(images.len(), batch);
        if rep > 0 {
            ms.push(elapsed);
        }
    }
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!("{}: {} ({} params), batch {batch}, {}", path.display(), meta.world, model.n_params(), cfg.describe());
    println!("RESULT seppoc batch {batch} ms_per_call {median:.1} samples_per_s {:.1}", batch as f64 * 1e3 / median);
    Ok(())
}
