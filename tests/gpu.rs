//! GPU tests (feature `cuda`; run by scripts/gpu-check.sh on a machine with an NVIDIA GPU): for every shipped
//! objective the same inputs on `Cpu` and `Cuda` give the same per-sample errors, compiled loss and gradients
//! (≤ 1e-4 relative; a whole step within the beta-conditioning bound of `step_tolerance`).
#![cfg(feature = "cuda")]

mod common;

use common::{load, max_rel, objective_step, shipped};
use seppoc::device::{cpu, cuda, CudaDevice};

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

/// The CPU/CUDA tolerance of a whole step. Per-sample errors are f32 means whose rounding (and summation order)
/// differs by ~1e-7 relative between devices; the DPO family multiplies their differences by beta/2, so the
/// loss and gradients can only agree to about `beta/2 · 4ε · max e` (2e-3 at beta = 5000), never better than 1e-4.
fn step_tolerance(obj: &seppoc::ir::Objective, step: &common::StepResult) -> f64 {
    let beta = obj.params.iter().find(|p| p.name == "beta").map_or(0.0, |p| p.default);
    let e_max = step.leaves.inputs.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    (0.5 * beta * 4.0 * f32::EPSILON as f64 * e_max).max(1e-4)
}

#[test]
fn every_shipped_objective_agrees_between_cpu_and_cuda() {
    let dev = gpu();
    let flat = |g: &[Vec<f32>]| g.iter().flatten().copied().collect::<Vec<f32>>();
    for name in shipped() {
        let obj = load(&name);
        let on_cpu = objective_step(&cpu(), &obj, 4);
        let on_gpu = objective_step(&dev, &obj, 4);
        // 1. The DiT passes: every per-sample error (the objective's leaves).
        let leaves = |s: &common::StepResult| s.leaves.inputs.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>();
        assert_close(&format!("{name} per-sample errors"), &leaves(&on_gpu), &leaves(&on_cpu), 1e-4);
        // 2. The compiled objective on identical leaf values: loss and gradient w.r.t. every policy error.
        let (loss_c, grad_c) = common::loss_on_leaves(&cpu(), &obj, &on_cpu, 4);
        let (loss_g, grad_g) = common::loss_on_leaves(&dev, &obj, &on_cpu, 4);
        let rel = (loss_g - loss_c).abs() / loss_c.abs().max(1e-6);
        println!("{name}: compiled loss on the same leaves cpu {loss_c:.7} cuda {loss_g:.7} (relative {rel:.2e})");
        assert!(rel <= 1e-4, "{name}: compiled loss differs by {rel}");
        assert_close(&format!("{name} d loss / d leaf"), &grad_g, &grad_c, 1e-4);
        // 3. The whole step (DiT + loss + backward into the parameters), within the conditioning bound.
        let tol = step_tolerance(&obj, &on_cpu);
        let rel = (on_gpu.loss - on_cpu.loss).abs() / on_cpu.loss.abs().max(1e-6);
        println!(
            "{name}: step loss cpu {:.7} cuda {:.7} (relative {rel:.2e}, bound {tol:.1e})",
            on_cpu.loss, on_gpu.loss
        );
        assert!(rel <= tol, "{name}: step loss differs by {rel} > {tol}");
        assert_close(&format!("{name} parameter gradients"), &flat(&on_gpu.grads), &flat(&on_cpu.grads), tol as f32);
    }
}
