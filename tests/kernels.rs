//! CPU tests of the custom kernels' twins (src/kernels/twin.rs) against the existing paths: the compiled
//! objectives' dfdx loss and gradients, the fused op on dfdx's tape, and the sampler; plus `--device` errors.

mod common;

use common::{load, max_rel, objective_step, shipped, S};
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use seppoc::compile::loss_graph;
use seppoc::ir::{ImageRef, LeafValues, ModelRef, Objective};
use seppoc::kernels::{self, twin, DdimCoeffs, DdimInputs};
use seppoc::model::{cpu, per_sample_error, CpuDevice, Dit, DitConfig, NoiseSchedule};
use seppoc::sampler::{sample_fused, sample_with_rng, SamplerConfig, SamplerKind};

const P: usize = 3;
const C: usize = 3;

/// Random `[winners; losers]` rows: policy prediction, reference prediction, true eps. The reference is 1% away
/// from the policy, so `beta · (e_θ − e_ref)` is of order one (as in training) and no pair saturates.
fn rows(seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    common::pair_rows(2 * P * C * S * S, seed)
}

/// The compiled objective's loss and gradient w.r.t. the policy prediction, on `rows`; the second image kind of
/// the objective (loser or reference sample) is the second half of the rows.
fn compiled(obj: &Objective, beta: f32, pol: &[f32], rf: &[f32], eps: &[f32]) -> (f32, Vec<f32>) {
    let dev = cpu();
    let shape = (2 * P, C, S, S);
    let x: Tensor<_, f32, CpuDevice> = dev.tensor_from_vec(pol.to_vec(), shape);
    let eps_t = dev.tensor_from_vec(eps.to_vec(), shape);
    let e_ref = per_sample_error(dev.tensor_from_vec(rf.to_vec(), shape), &eps_t).as_vec();
    let errs = per_sample_error(x.leaky_trace(), &eps_t);
    let e_pol = errs.retaped::<NoneTape>().as_vec();
    let policy_kinds = common::kinds(obj, &ModelRef::Policy);
    assert_eq!(policy_kinds.len(), 2, "{}: two image kinds", obj.name);
    let mut offsets = vec![None; obj.inputs.len()];
    let inputs = obj
        .inputs
        .iter()
        .enumerate()
        .map(|(k, input)| {
            let pos = policy_kinds.iter().position(|i| *i == input.images).unwrap();
            let from = if input.model == ModelRef::Policy {
                offsets[k] = Some(pos * P);
                &e_pol
            } else {
                &e_ref
            };
            from[pos * P..(pos + 1) * P].iter().map(|&v| v as f64).collect()
        })
        .collect();
    let params: Vec<(&str, f64)> =
        obj.params.iter().map(|p| (p.name.as_str(), if p.name == "beta" { beta as f64 } else { p.default })).collect();
    let obj = obj.bind(&params).expect("beta is in its domain");
    let graph = loss_graph(&obj, errs, &offsets, &LeafValues { inputs }, P);
    let loss = graph.loss.array();
    (loss, graph.loss.backward().get(&x).as_vec())
}

/// SePPO's anchor gate `s = sign(e_ref(x_w) − e_θ(x_w))`, tie = +1, from the twin's own errors.
fn anchor_gate(host: &twin::PairLossHost) -> Vec<f32> {
    (0..P).map(|i| if host.e_ref[i] - host.e_pol[i] >= 0.0 { 1.0 } else { -1.0 }).collect()
}

/// Relative loss tolerance at the shipped betas. The twin sums errors in f64 and dfdx in f32; at beta = 5000 one
/// f32 rounding of a per-sample error (~1e-7) moves the margin by ~2.5e-4, so the losses agree to ~2e-4. At
/// beta = 20 the same comparison must hold to 1e-5, which pins the formula (factor 0.5, gate sign, mean).
const LOSS_TOL_SHIPPED_BETA: f32 = 2e-3;

fn check_twin_against_compiled(name: &str, gated: bool) {
    let obj = load(name);
    let shipped = obj.params.iter().find(|p| p.name == "beta").unwrap().default as f32;
    for (beta, tol) in [(shipped, LOSS_TOL_SHIPPED_BETA), (20.0, 1e-5)] {
        for seed in [1, 7, 23] {
            let (pol, rf, eps) = rows(seed);
            let (loss, grad) = compiled(&obj, beta, &pol, &rf, &eps);
            let (probe, _) = twin::pair_loss(&pol, &rf, &eps, &[1.0; P], beta, C * S * S);
            let gate = if gated { anchor_gate(&probe) } else { vec![1.0; P] };
            let (host, twin_grad) = twin::pair_loss(&pol, &rf, &eps, &gate, beta, C * S * S);
            let rel = (host.mean_loss() - loss).abs() / loss.abs().max(1e-6);
            assert!(rel < tol, "{name} beta {beta} seed {seed}: twin loss {} vs compiled {loss}", host.mean_loss());
            let scale = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            assert!(scale > 0.0, "{name}: zero gradient");
            let err = max_rel(&twin_grad, &grad, 1e-3 * scale);
            assert!(err < 10.0 * tol, "{name} beta {beta} seed {seed}: gradient differs by {err}");
        }
    }
}

#[test]
fn pair_loss_twin_matches_compiled_dpo() {
    check_twin_against_compiled("dpo", false);
}

#[test]
fn pair_loss_twin_matches_compiled_seppo_with_its_gate() {
    check_twin_against_compiled("seppo", true);
}

#[test]
fn pair_loss_twin_matches_compiled_ungated_sample_objectives() {
    check_twin_against_compiled("seppo_nogate", false);
    check_twin_against_compiled("spin", false);
}

#[test]
fn fused_pair_loss_on_the_tape_gives_the_compiled_gradient() {
    let obj = load("dpo");
    let (pol, rf, eps) = rows(5);
    let (loss, grad) = compiled(&obj, 5000.0, &pol, &rf, &eps);
    let dev = cpu();
    let shape = (2 * P, C, S, S);
    let x: Tensor<_, f32, CpuDevice> = dev.tensor_from_vec(pol, shape);
    let (rf_t, eps_t) = (dev.tensor_from_vec(rf, shape), dev.tensor_from_vec(eps, shape));
    let fused = kernels::pair_loss(x.leaky_trace(), &rf_t, &eps_t, &[1.0; P], 5000.0).unwrap();
    // Scaling the loss checks that backward multiplies by the upstream gradient.
    let scaled = fused.loss * 2.0;
    assert!((scaled.array() - 2.0 * loss).abs() < LOSS_TOL_SHIPPED_BETA * loss.abs().max(1e-6));
    let got = scaled.backward().get(&x).as_vec();
    let want: Vec<f32> = grad.iter().map(|g| 2.0 * g).collect();
    let scale = want.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    assert!(max_rel(&got, &want, 1e-3 * scale) < 10.0 * LOSS_TOL_SHIPPED_BETA);
}

#[test]
fn fused_pair_loss_accepts_a_non_contiguous_prediction() {
    let (pol, rf, eps) = rows(3);
    let dev = cpu();
    let shape = (2 * P, C, S, S);
    let (rf_t, eps_t) = (dev.tensor_from_vec(rf, shape), dev.tensor_from_vec(eps, shape));
    let x: Tensor<_, f32, CpuDevice> = dev.tensor_from_vec(pol.clone(), shape);
    let want = kernels::pair_loss(x.leaky_trace(), &rf_t, &eps_t, &[1.0; P], 5000.0).unwrap().loss.backward().get(&x);
    // The same values stored channels-last, so the permuted view handed to the kernel is not contiguous.
    let idx = |r: usize, c: usize, i: usize, j: usize| ((r * C + c) * S + i) * S + j;
    let mut last = vec![0.0; pol.len()];
    for (r, i, j, c) in
        (0..2 * P).flat_map(|r| (0..S).flat_map(move |i| (0..S).flat_map(move |j| (0..C).map(move |c| (r, i, j, c)))))
    {
        last[((r * S + i) * S + j) * C + c] = pol[idx(r, c, i, j)];
    }
    let y: Tensor<_, f32, CpuDevice> = dev.tensor_from_vec(last, (2 * P, S, S, C));
    let view = y.leaky_trace().permute::<(usize, usize, usize, usize), Axes4<0, 3, 1, 2>>();
    let got = kernels::pair_loss(view, &rf_t, &eps_t, &[1.0; P], 5000.0).unwrap().loss.backward().get(&y);
    let got = got.permute::<(usize, usize, usize, usize), Axes4<0, 3, 1, 2>>().as_vec();
    assert_eq!(got, want.as_vec());
}

#[test]
fn fused_pair_loss_rejects_bad_shapes_and_beta() {
    let dev = cpu();
    let a: Tensor<_, f32, CpuDevice> = dev.tensor_from_vec(vec![0.0; 4 * C * S * S], (4, C, S, S));
    let b = a.clone();
    let taped = || a.leaky_trace();
    let three = kernels::pair_loss(taped(), &b, &b, &[1.0; 3], 1.0).err().unwrap();
    assert!(three.0.contains("(2P, C, H, W)"), "{three}");
    let nan = kernels::pair_loss(taped(), &b, &b, &[1.0; 2], f32::NAN).err().unwrap();
    assert!(nan.0.contains("beta"), "{nan}");
    let coeffs = DdimCoeffs::new(0.5, 0.9, 0.0, 1.0);
    let inputs = DdimInputs { x: &[0.0; 4], eps_cond: &[0.0; 3], eps_uncond: &[0.0; 4], noise: None, coeffs: &coeffs };
    let short = kernels::ddim_cfg_step(&dev, &inputs).err().unwrap();
    assert!(short.0.contains("x has 4 values"), "{short}");
}

#[test]
fn fused_sampler_step_reproduces_the_sampler_exactly() {
    let model = Dit::new(&DitConfig::tiny(S, 10, 4), &cpu(), 5).unwrap();
    let schedule = NoiseSchedule::default_linear();
    let caps = vec![vec![1, 2, 0, 0], vec![3, 0, 0, 0]];
    for (eta, cfg_scale) in [(0.0, 5.0), (0.7, 3.0), (0.5, 1.0)] {
        let cfg = SamplerConfig { kind: SamplerKind::Ddim, steps: 4, cfg_scale, eta };
        let a = sample_with_rng(&model, &schedule, &cfg, &caps, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        let b = sample_fused(&model, &schedule, &cfg, &caps, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        assert_eq!(a, b, "eta {eta}, cfg {cfg_scale}");
    }
    let ddpm = SamplerConfig { kind: SamplerKind::Ddpm, steps: 2, cfg_scale: 1.0, eta: 0.0 };
    assert!(sample_fused(&model, &schedule, &ddpm, &caps, &mut ChaCha8Rng::seed_from_u64(0)).is_err());
}

#[test]
fn every_shipped_objective_runs_one_step_on_cpu_like_its_oracle() {
    for name in shipped() {
        let obj = load(&name);
        let r = objective_step(&cpu(), &obj, 2);
        assert!(r.loss.is_finite() && r.grads.iter().flatten().all(|g| g.is_finite()), "{name}");
        assert!((r.loss - r.oracle).abs() <= 1e-4 * r.oracle.abs().max(1e-3), "{name}: {} vs {}", r.loss, r.oracle);
        // The GPU test re-evaluates the compiled loss on these leaves; on one device it must give the same loss.
        let (again, grad) = common::loss_on_leaves(&cpu(), &obj, &r, 2);
        assert!((again - r.loss).abs() <= 1e-6 * r.loss.abs().max(1e-3), "{name}: {again} vs {}", r.loss);
        assert!(grad.len() == r.policy_values.len() && grad.iter().any(|g| *g != 0.0), "{name}: {grad:?}");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn device_cuda_without_the_feature_is_a_clear_error() {
    for cmd in [&["run", "objectives/dpo.obj", "--steps", "1"][..], &["sample", "--prompt", "a red circle"][..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_seppoc"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(cmd)
            .args(["--device", "cuda", "--out", std::env::temp_dir().join("seppoc-device-test").to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.contains("built without the `cuda` feature") && err.contains("--features cuda"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn twin_matches_image_kinds_used_above() {
    // The helper above assumes the second policy image kind is the loser or a reference sample.
    for name in ["dpo", "seppo", "seppo_nogate", "spin"] {
        let kinds = common::kinds(&load(name), &ModelRef::Policy);
        assert!(matches!(kinds[..], [ImageRef::Winner, ImageRef::Loser | ImageRef::Sample(0)]), "{name}: {kinds:?}");
    }
}
