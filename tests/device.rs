//! The CPU side of the device tests: every shipped objective's compiled step on `Cpu` against its oracle (the
//! GPU tests compare `Cuda` with this), and the `--device cuda` error of a binary built without CUDA.

mod common;

use common::{load, objective_step, shipped};
use seppoc::device::cpu;

#[test]
fn every_shipped_objective_runs_one_step_on_cpu_like_its_oracle() {
    for name in shipped() {
        let obj = load(&name);
        let batch = common::whole_groups(&obj, 2);
        let r = objective_step(&cpu(), &obj, batch);
        assert!(r.loss.is_finite() && r.grads.iter().flatten().all(|g| g.is_finite()), "{name}");
        assert!((r.loss - r.oracle).abs() <= 1e-4 * r.oracle.abs().max(1e-3), "{name}: {} vs {}", r.loss, r.oracle);
        // The GPU test re-evaluates the compiled loss on these leaves; on one device it must give the same loss.
        let (again, grad) = common::loss_on_leaves(&cpu(), &obj, &r, batch);
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

/// A CUDA error that dfdx raises as a panic inside a job becomes a sentence that says what to change; any other
/// panic is not mistaken for one.
#[test]
fn cuda_panics_become_clear_errors() {
    use seppoc::device::cuda_failure;
    let oom =
        "called `Result::unwrap()` on an `Err` value: Driver(DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\"))";
    let e = cuda_failure(oom).expect("an out-of-memory panic is a CUDA failure").to_string();
    assert!(e.contains("ran out of memory") && e.contains("--batch") && e.contains("CUDA_ERROR_OUT_OF_MEMORY"), "{e}");
    let big = "called `Result::unwrap()` on an `Err` value: Driver(DriverError(CUDA_ERROR_INVALID_VALUE, \"invalid argument\"))";
    assert!(cuda_failure(big).unwrap().to_string().contains("2^31"));
    let nvrtc =
        "called `Result::unwrap()` on an `Err` value: CompileError { nvrtc: NvrtcError(NVRTC_ERROR_COMPILATION) }";
    assert!(cuda_failure(nvrtc).unwrap().to_string().contains("NVRTC"));
    assert!(cuda_failure("index out of bounds: the len is 3 but the index is 7").is_none());
}
