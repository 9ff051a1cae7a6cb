//! GPU tests (feature `cuda`; run by scripts/gpu-check.sh on a machine with an NVIDIA GPU): the same inputs on
//! `Cpu` and `Cuda` give the same loss and gradients (≤ 1e-4 relative) for every shipped objective, and every
//! custom kernel agrees with its CPU twin.
#![cfg(feature = "cuda")]

mod common;

use common::{load, max_rel, normals, objective_step, shipped, S};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::kernels::{self, twin, DdimCoeffs};
use seppoc::model::backend::{cuda, CudaDevice};
use seppoc::model::{cpu, CpuDevice, Dit, DitConfig, NoiseSchedule};
use seppoc::sampler::{sample_fused, sample_with_rng, SamplerConfig, SamplerKind};

fn gpu() -> CudaDevice {
    cuda().unwrap_or_else(|e| panic!("the GPU tests need a working CUDA device: {e}"))
}

/// `max |a − b| / max(|b|, 1e-3·max|b|)` must stay under `tol`.
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = max_rel(a, b, (1e-3 * scale).max(1e-12));
    println!("{what}: max relative difference {err:.2e}");
    assert!(err <= tol, "{what}: {err} > {tol}");
}

#[test]
fn every_shipped_objective_agrees_between_cpu_and_cuda() {
    let dev = gpu();
    for name in shipped() {
        let obj = load(&name);
        let on_cpu = objective_step(&cpu(), &obj, 4);
        let on_gpu = objective_step(&dev, &obj, 4);
        let rel = (on_gpu.loss - on_cpu.loss).abs() / on_cpu.loss.abs().max(1e-6);
        println!("{name}: loss cpu {:.7} cuda {:.7} (relative {rel:.2e})", on_cpu.loss, on_gpu.loss);
        assert!(rel <= 1e-4, "{name}: loss differs by {rel}");
        let flat = |g: &[Vec<f32>]| g.iter().flatten().copied().collect::<Vec<f32>>();
        assert_close(&format!("{name} gradients"), &flat(&on_gpu.grads), &flat(&on_cpu.grads), 1e-4);
    }
}

#[test]
fn pair_loss_kernel_matches_its_twin_and_backprops_on_cuda() {
    let dev = gpu();
    let (p, c) = (16, 3);
    let shape = (2 * p, c, S, S);
    let n = 2 * p * c * S * S;
    let eps = normals(n, 1);
    let pol: Vec<f32> = normals(n, 2).iter().zip(&eps).map(|(v, e)| e + 0.7 * v).collect();
    let rf: Vec<f32> = normals(n, 3).iter().zip(&eps).map(|(v, e)| e + 0.7 * v).collect();
    let gate: Vec<f32> = (0..p).map(|i| if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
    let (want, want_grad) = twin::pair_loss(&pol, &rf, &eps, &gate, 2000.0, c * S * S);
    let x: Tensor<_, f32, CudaDevice> = dev.tensor_from_vec(pol, shape);
    let (rf_t, eps_t) = (dev.tensor_from_vec(rf, shape), dev.tensor_from_vec(eps, shape));
    let fused = kernels::pair_loss(x.leaky_trace(), &rf_t, &eps_t, &gate, 2000.0).unwrap();
    assert_close("e_theta", &fused.host.e_pol, &want.e_pol, 1e-5);
    assert_close("e_ref", &fused.host.e_ref, &want.e_ref, 1e-5);
    assert_close("per-pair loss", &fused.host.loss, &want.loss, 1e-4);
    let got = (fused.loss * 3.0).backward().get(&x).as_vec();
    let want3: Vec<f32> = want_grad.iter().map(|g| 3.0 * g).collect();
    assert_close("gradient w.r.t. the policy's eps", &got, &want3, 1e-4);
}

#[test]
fn ddim_kernel_matches_its_twin_and_the_sampler() {
    let dev = gpu();
    let n = 2 * 3 * S * S;
    let (x, c, u, z) = (normals(n, 4), normals(n, 5), normals(n, 6), normals(n, 7));
    let noise: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    for (eta, w, with_noise) in [(0.0, 5.0, false), (0.8, 3.0, true), (0.3, 1.0, true)] {
        let coeffs = DdimCoeffs::new(0.3, 0.6, eta, w);
        let z = with_noise.then_some(&noise[..]);
        let want = twin::ddim_cfg_step(&x, &c, &u, z, &coeffs);
        let got = kernels::ddim_cfg_step(&dev, &x, &c, &u, z, &coeffs).unwrap();
        assert_close(&format!("ddim step eta {eta} cfg {w}"), &got, &want, 1e-5);
    }
    let model_cpu = Dit::<CpuDevice>::new(&DitConfig::tiny(S, 10, 4), &cpu(), 5).unwrap();
    let model_gpu = model_cpu.to_device(&dev).unwrap();
    let schedule = NoiseSchedule::default_linear();
    let caps = vec![vec![1, 2, 0, 0], vec![3, 0, 0, 0]];
    let cfg = SamplerConfig { kind: SamplerKind::Ddim, steps: 4, cfg_scale: 4.0, eta: 0.5 };
    let want = sample_with_rng(&model_cpu, &schedule, &cfg, &caps, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    let got = sample_fused(&model_gpu, &schedule, &cfg, &caps, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
    assert_close("4 fused DDIM steps on CUDA vs the CPU sampler", &got.concat(), &want.concat(), 1e-3);
}
