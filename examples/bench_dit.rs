//! Benchmarks the DiT: training step (fwd + bwd + AdamW) and no-grad forward, median ms and peak RSS, on CPU or
//! (with `--features cuda`) on GPU 0.
//!
//! `cargo run --release --example bench_dit -- [small|bench] [batch] [out_dir] [width,patch,depth] [--device cpu|cuda]
//! [--composite]` (`--composite`: dfdx's composite ops instead of the device's fused ones, for before/after timings)
//! also writes `init.safetensors` and `batch.safetensors` to `out_dir` so `bench/dit_torch.py` can run the
//! identical model on the same batch. Every timed region ends with a device-to-host read, so CUDA work is finished.
//! On CPU, `SEPPOC_GEMM_KERNEL=avx512|avx2|gemm` picks the fused layers' matrix-product kernel (default: the
//! fastest this CPU runs), e.g. to time two kernels against each other.

use std::collections::HashMap;
use std::time::Instant;

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use seppoc::device::Backend;
use seppoc::device::{cpu, with_device, DeviceKind, OnDevice};
use seppoc::kernels::fused::OpPath;
use seppoc::model::{
    per_sample_error, save_checkpoint, AdamW, AdamWConfig, CheckpointMeta, Dit, DitConfig, ParamGrads, ScheduleSpec,
};

const VOCAB: usize = 32;
const MAX_TOKENS: usize = 8;
const WARMUP: usize = 3;
const TIMED: usize = 15;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kb.unwrap_or(0.0) / 1024.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let path = match args.iter().position(|a| a == "--composite") {
        Some(i) => {
            args.remove(i);
            OpPath::Composite
        }
        None => OpPath::Device,
    };
    let kind = match args.iter().position(|a| a == "--device") {
        Some(i) => {
            let value = args.get(i + 1).cloned().unwrap_or_default();
            args.drain(i..(i + 2).min(args.len()));
            match value.as_str() {
                "cpu" => DeviceKind::Cpu,
                "cuda" => DeviceKind::Cuda,
                other => {
                    eprintln!("bench_dit: --device must be cpu or cuda, found `{other}`");
                    return std::process::ExitCode::from(2);
                }
            }
        }
        None => DeviceKind::Cpu,
    };
    // On a rayon worker, as `seppoc`'s commands run (src/cli/mod.rs).
    match rayon::scope(move |_| with_device(kind, Bench { args, kind, path })) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_dit: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The benchmark, written once for every device.
struct Bench {
    args: Vec<String>,
    kind: DeviceKind,
    path: OpPath,
}

impl OnDevice for Bench {
    type Output = ();

    fn run<D: Backend>(self, dev: D) {
        bench(dev, &self.args, self.kind, self.path)
    }
}

fn bench<D: Backend>(dev: D, args: &[String], kind: DeviceKind, path: OpPath) {
    let which = args.get(1).map_or("small", String::as_str);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let out = std::path::PathBuf::from(args.get(3).map_or("target/bench", String::as_str));
    let mut cfg = if which == "bench" {
        DitConfig::bench(16, VOCAB, MAX_TOKENS)
    } else {
        DitConfig::small(16, VOCAB, MAX_TOKENS)
    };
    // Optional override `width,patch,depth` for sizing experiments.
    if let Some(o) = args.get(4) {
        let v: Vec<usize> = o.split(',').filter_map(|x| x.parse().ok()).collect();
        if let [w, p, d] = v[..] {
            (cfg.width, cfg.patch_size, cfg.depth) = (w, p, d);
        }
    }
    // Weights are drawn on the host, so every device starts from the same model.
    let mut model = Dit::new(&cfg, &cpu(), 0).expect("valid config").to_device(&dev).expect("same layout");
    model.set_op_path(path);
    std::fs::create_dir_all(&out).expect("create out dir");
    let meta = CheckpointMeta::new("image", "{}".into(), ScheduleSpec::default_linear());
    save_checkpoint(&out.join("init.safetensors"), &model, &meta).expect("write init");

    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let per = cfg.image_len();
    let x_t: Vec<f32> = (0..batch * per).map(|_| rng.sample(StandardNormal)).collect();
    let eps: Vec<f32> = (0..batch * per).map(|_| rng.sample(StandardNormal)).collect();
    let t: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..1000)).collect();
    let tokens: Vec<Vec<usize>> = (0..batch)
        .map(|i| (0..MAX_TOKENS).map(|j| if j < 2 + i % 5 { rng.gen_range(1..VOCAB) } else { 0 }).collect())
        .collect();
    write_batch(&out.join("batch.safetensors"), &x_t, &eps, &t, &tokens, &cfg);

    let x_dev = model.images(x_t.clone()).expect("shape");
    let x_img = || x_dev.clone();
    let eps_img = model.images(eps.clone()).expect("shape");
    let init_loss = per_sample_error(model.forward(x_img(), &t, &tokens).expect("fwd"), &eps_img).mean().array();
    println!(
        "config {which}: {} params, batch {batch}, device {kind:?}, ops {path:?}, initial loss {init_loss:.6}",
        model.n_params()
    );

    let mut fwd_ms = Vec::new();
    for i in 0..WARMUP + TIMED {
        let t0 = Instant::now();
        let y = model.forward(x_img(), &t, &tokens).expect("fwd");
        let _ = y.as_vec();
        if i >= WARMUP {
            fwd_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut opt = AdamW::new(&model, AdamWConfig::with_lr(1e-3));
    let (mut step_ms, mut fw, mut bw, mut up, mut losses) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..WARMUP + TIMED {
        let t0 = Instant::now();
        let pred = model.forward(x_img().traced(model.alloc_grads()), &t, &tokens).expect("fwd");
        let loss = per_sample_error(pred, &eps_img).mean();
        losses.push(loss.array());
        let t1 = Instant::now();
        let grads = ParamGrads::backward(&model, loss);
        let t2 = Instant::now();
        opt.update(&mut model, &grads);
        let _ = model.params()[0].as_vec();
        let t3 = Instant::now();
        if i >= WARMUP {
            step_ms.push((t3 - t0).as_secs_f64() * 1e3);
            fw.push((t1 - t0).as_secs_f64() * 1e3);
            bw.push((t2 - t1).as_secs_f64() * 1e3);
            up.push((t3 - t2).as_secs_f64() * 1e3);
        }
    }
    println!("losses (first 5 AdamW steps): {:?}", &losses[..5]);
    let (step, fwd) = (median(step_ms), median(fwd_ms));
    println!(
        "RESULT dfdx step_ms {:.1} fwd {:.1} bwd {:.1} adamw {:.1} nograd_fwd_ms {:.1} peak_rss_mib {:.0}",
        step,
        median(fw),
        median(bw),
        median(up),
        fwd,
        peak_rss_mib()
    );
    // Matmul throughput: the forward's matmul FLOPs over the no-grad forward's time, and three times them (forward,
    // plus the two matmuls per matmul of backward) over the step's time. Elementwise ops are not counted.
    let flops = forward_matmul_flops(&cfg, batch);
    println!(
        "GEMM matmul GFLOP/s: no-grad forward {:.1}, train step {:.1} ({:.2} GFLOP per forward)",
        flops / fwd / 1e6,
        3.0 * flops / step / 1e6,
        flops / 1e9
    );
}

/// Multiply-add FLOPs (2 per multiply-add) of every matmul in one forward pass of the DiT (`src/model/dit.rs`):
/// per token the patch embedding, each block's q/k/v/o projections, attention scores and their weighted sum, the
/// MLP and the output layer; per sample the timestep MLP, the text table and each block's six modulations and the
/// final two.
fn forward_matmul_flops(cfg: &DitConfig, batch: usize) -> f64 {
    let (w, n, pd) = (cfg.width as f64, cfg.n_tokens() as f64, cfg.patch_dim() as f64);
    let (depth, r) = (cfg.depth as f64, cfg.mlp_ratio as f64);
    let rows = (cfg.vocab_size * (cfg.max_tokens + 1)) as f64;
    let per_token = 2.0 * pd * w + depth * (8.0 * w * w + 4.0 * n * w + 4.0 * r * w * w) + 2.0 * w * pd;
    let per_sample = 4.0 * w * w + 2.0 * rows * w + depth * 12.0 * w * w + 4.0 * w * w;
    batch as f64 * (n * per_token + per_sample)
}

fn write_batch(path: &std::path::Path, x_t: &[f32], eps: &[f32], t: &[usize], tok: &[Vec<usize>], cfg: &DitConfig) {
    let b = t.len();
    let s = cfg.image_size;
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    let kf: Vec<f32> = tok.iter().flatten().map(|&v| v as f32).collect();
    let data = [
        ("x_t", bytes(x_t), vec![b, cfg.channels, s, s]),
        ("eps", bytes(eps), vec![b, cfg.channels, s, s]),
        ("t", bytes(&tf), vec![b]),
        ("tokens", bytes(&kf), vec![b, cfg.max_tokens]),
    ];
    let views: Vec<_> = data
        .iter()
        .map(|(n, d, sh)| {
            (
                n.to_string(),
                ::safetensors::tensor::TensorView::new(::safetensors::Dtype::F32, sh.clone(), d).expect("view"),
            )
        })
        .collect();
    let buf = ::safetensors::serialize(views, &None::<HashMap<String, String>>).expect("serialize");
    std::fs::write(path, buf).expect("write batch");
}
