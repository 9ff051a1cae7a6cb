//! GPU tests (feature `cuda`; run by scripts/gpu-check.sh on a machine with an NVIDIA GPU): for every shipped
//! objective the same inputs on `Cpu` and `Cuda` give the same per-sample errors (2 ulps), compiled loss (1e-6) and
//! step (within the objective's β conditioning); running out of GPU memory is a clear error.
#![cfg(feature = "cuda")]

mod common;

use common::{load, max_rel, objective_step, shipped};
use seppoc::device::{cpu, cuda, CudaDevice};

fn gpu() -> CudaDevice {
    cuda().unwrap_or_else(|e| panic!("the GPU tests need a working CUDA device: {e}"))
}

/// `‖a − b‖ / ‖b‖` over every parameter.
fn norm_rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n.max(1e-300)).sqrt()
}

/// How far a whole step may differ between two devices whose leaves differ by an ulp each: the DPO family
/// multiplies differences of four leaves by β/2, so the loss (and the weight of each pair in the gradient) moves by
/// up to `β/2 · 4ε · max e`, never less than 1e-4.
fn step_tolerance(obj: &seppoc::ir::Objective, step: &common::StepResult) -> f64 {
    let beta = obj.params.iter().find(|p| p.name == "beta").map_or(0.0, |p| p.default);
    let e_max = step.leaves.inputs.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    (0.5 * beta * 4.0 * f32::EPSILON as f64 * e_max).max(1e-4)
}

/// Every shipped objective, one step on the same batch on CPU and on CUDA. Failures are collected so one run
/// reports every objective.
///
/// - Per-sample errors are correctly rounded f64 means on both devices (`per_sample_error`), so the leaves agree to
///   2 ulps; the DiT's f32 passes themselves differ in their last bits between devices.
/// - The compiled objective on identical leaves agrees to 1e-6, and so does its gradient w.r.t. each leaf.
/// - The whole step's loss and parameter gradient agree within [`step_tolerance`]: for objectives that multiply
///   leaf differences by a large β, an ulp in a leaf is a 1e-4-scale change of the loss on any two f32 devices.
///   Gradients are compared over all parameters in norm; an entry that is a near-cancelling f32 sum (a bias
///   gradient near zero) differs a lot relatively on any two devices, so the entry-wise figure is printed only.
#[test]
fn every_shipped_objective_agrees_between_cpu_and_cuda() {
    let dev = gpu();
    let mut failures = Vec::new();
    for name in shipped() {
        let obj = load(&name);
        let batch = common::whole_groups(&obj, 4);
        let on_cpu = objective_step(&cpu(), &obj, batch);
        let on_gpu = objective_step(&dev, &obj, batch);
        let mut check = |what: &str, value: f64, tol: f64| {
            println!("{name} {what}: {value:.2e} (tolerance {tol:.1e})");
            if !(value <= tol) {
                failures.push(format!("{name} {what}: {value:.3e} > {tol:.1e}"));
            }
        };
        // 1. The DiT passes: every per-sample error (the objective's leaves).
        let leaves = |s: &common::StepResult| s.leaves.inputs.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>();
        let (lg, lc) = (leaves(&on_gpu), leaves(&on_cpu));
        let scale = lc.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let two_ulps = 2.0 * f32::EPSILON as f64;
        check("per-sample errors, max relative difference", max_rel(&lg, &lc, 1e-3 * scale) as f64, two_ulps);
        // 2. The compiled objective on identical leaf values: loss and gradient w.r.t. every policy error.
        let (loss_c, grad_c) = common::loss_on_leaves(&cpu(), &obj, &on_cpu, batch);
        let (loss_g, grad_g) = common::loss_on_leaves(&dev, &obj, &on_cpu, batch);
        check("compiled loss on the same leaves, relative", (loss_g - loss_c).abs() / loss_c.abs().max(1e-6), 1e-6);
        let gscale = grad_c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        check("d loss / d leaf, max relative", max_rel(&grad_g, &grad_c, 1e-3 * gscale) as f64, 1e-6);
        // 3. The whole step (DiT + loss + backward into the parameters).
        let tol = step_tolerance(&obj, &on_cpu);
        println!("{name}: step loss cpu {:.7} cuda {:.7}", on_cpu.loss, on_gpu.loss);
        check("step loss, relative", (on_gpu.loss - on_cpu.loss).abs() / on_cpu.loss.abs().max(1e-6), tol);
        let flat = |g: &[Vec<f32>]| g.iter().flatten().copied().collect::<Vec<f32>>();
        let (fg, fc) = (flat(&on_gpu.grads), flat(&on_cpu.grads));
        check("parameter gradient, ‖Δg‖/‖g‖", norm_rel(&fg, &fc), tol);
        let pscale = fc.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let entry = max_rel(&fg, &fc, 1e-3 * pscale);
        println!("{name} parameter gradient, entry-wise max relative (printed only): {entry:.2e}");
    }
    assert!(failures.is_empty(), "CPU and CUDA disagree:\n{}", failures.join("\n"));
}

/// Holds 4 GiB buffers on the GPU until it runs out of memory (it never returns normally on a real card).
struct Exhaust;

impl seppoc::device::OnDevice for Exhaust {
    type Output = usize;
    fn run<D: seppoc::device::Backend>(self, dev: D) -> usize {
        use dfdx::tensor::Tensor;
        let mut held: Vec<Tensor<(usize,), f32, D>> = Vec::new();
        while held.len() < 4096 {
            held.push(dev.zeros_like(&(1usize << 30,)));
        }
        held.len()
    }
}

/// Running out of GPU memory inside dfdx (whose infallible ops panic) ends the job with an error that says so.
#[test]
fn running_out_of_gpu_memory_is_a_clear_error() {
    let e = seppoc::device::with_device(seppoc::device::DeviceKind::Cuda, Exhaust)
        .expect_err("16 TiB cannot fit on one GPU")
        .to_string();
    println!("out of memory: {e}");
    assert!(e.contains("ran out of memory") && e.contains("--batch"), "{e}");
    // The GPU is usable again afterwards: the buffers were freed when the job unwound.
    assert!(seppoc::device::cuda().is_ok());
}
