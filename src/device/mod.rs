//! Devices, at the bottom of the crate: the one file that names dfdx's concrete devices, the [`Backend`] trait
//! everything else is generic over, and the `--device cpu|cuda` choice: [`with_device`] turns a [`DeviceKind`]
//! into a device and runs a generic job on it, with a clear error when CUDA is not compiled in or not usable.

mod backend;
pub mod composite;
mod types;

use dfdx::shapes::{Shape, Unit};
use dfdx::tensor::{Cache, CopySlice, Tensor, ZerosTensor};
use std::fmt;

pub use backend::Backend;
pub use types::{AdamStep, Layer, T1, T2};

/// The CPU device.
pub type CpuDevice = dfdx::tensor::Cpu;

/// The CUDA device (feature `cuda`).
#[cfg(feature = "cuda")]
pub type CudaDevice = dfdx::tensor::Cuda;

/// CUDA runs the DiT's fused ops as their composite dfdx versions (cuBLAS and dfdx's elementwise kernels).
#[cfg(feature = "cuda")]
impl Backend for CudaDevice {}

/// `data` as a tensor of `shape` whose buffer comes from the device's allocation cache; `data.len()` must be
/// the shape's element count.
///
/// Use this, not dfdx's `tensor_from_vec`, for anything made every step. `tensor_from_vec` wraps the `Vec`
/// itself, and with the cache enabled the CPU device moves that buffer into its cache when the tensor drops.
/// Buffers the cache handed out return to it and are reused, but every fresh `Vec` adds one more that nothing
/// takes back: a pretraining run grew by about 0.5 MB per step (3.6 GB resident after 7,000 steps). Copying
/// into a cache-allocated tensor keeps the cache no larger than the peak working set.
pub fn upload<S: Shape, E: Unit, D: ZerosTensor<E> + CopySlice<E>>(dev: &D, data: &[E], shape: S) -> Tensor<S, E, D> {
    let mut t = dev.zeros_like(&shape);
    t.copy_from(data);
    t
}

/// Creates a CPU device with dfdx's allocation cache enabled (the cache cuts elementwise-op time ~2×).
pub fn cpu() -> CpuDevice {
    let dev = CpuDevice::default();
    dev.enable_cache();
    dev
}

/// Which device a command runs on (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// dfdx's CPU backend.
    Cpu,
    /// dfdx's CUDA backend on GPU 0 (needs the `cuda` feature).
    Cuda,
}

/// Why the requested device cannot be used; the message says what is missing and how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceError(pub String);

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeviceError {}

/// A computation written once for every device; [`with_device`] picks the device and calls [`OnDevice::run`].
pub trait OnDevice {
    /// What the job returns.
    type Output;
    /// Runs the job on `dev`.
    fn run<D: Backend>(self, dev: D) -> Self::Output;
}

/// Creates the device `kind` names and runs `job` on it.
pub fn with_device<J: OnDevice>(kind: DeviceKind, job: J) -> Result<J::Output, DeviceError> {
    match kind {
        DeviceKind::Cpu => Ok(job.run(cpu())),
        DeviceKind::Cuda => run_on_cuda(job),
    }
}

/// Fails before any work is done when `kind` is not compiled into this binary (a cheap check for the CLI).
pub fn ensure_built(kind: DeviceKind) -> Result<(), DeviceError> {
    match kind {
        DeviceKind::Cuda if !cfg!(feature = "cuda") => Err(not_built()),
        _ => Ok(()),
    }
}

fn not_built() -> DeviceError {
    DeviceError(
        "`--device cuda`: this seppoc binary was built without the `cuda` feature; rebuild it with \
         `cargo build --release --features cuda` on a machine with the CUDA toolkit (nvcc matching the driver's \
         CUDA version; see scripts/gpu-check.sh), or use `--device cpu`"
            .into(),
    )
}

#[cfg(not(feature = "cuda"))]
fn run_on_cuda<J: OnDevice>(_job: J) -> Result<J::Output, DeviceError> {
    Err(not_built())
}

/// Runs `job` on GPU 0. dfdx's infallible ops panic on a CUDA error (out of memory, a kernel that fails to
/// compile or launch); such a panic ends the job with a [`DeviceError`] that says what happened, and any other
/// panic (a bug) is raised again.
#[cfg(feature = "cuda")]
fn run_on_cuda<J: OnDevice>(job: J) -> Result<J::Output, DeviceError> {
    let dev = cuda()?;
    match crate::panics::quiet_catch(|| job.run(dev)) {
        Ok(out) => Ok(out),
        Err(message) => match cuda_failure(&message) {
            Some(error) => Err(error),
            None => panic!("{message}"),
        },
    }
}

/// The [`DeviceError`] for a panic message that reports a CUDA, cuBLAS or NVRTC error, or `None` for any other.
pub fn cuda_failure(message: &str) -> Option<DeviceError> {
    const CUDA_ERRORS: [&str; 5] = ["CUDA_ERROR_", "CUBLAS_STATUS_", "CURAND_STATUS_", "NvrtcError", "CudaError"];
    if !CUDA_ERRORS.iter().any(|m| message.contains(m)) {
        return None;
    }
    let hint = if message.contains("OUT_OF_MEMORY") || message.contains("ALLOC_FAILED") {
        "the GPU ran out of memory: lower `--batch` (or the model size), or free the GPU (`nvidia-smi` lists its users)"
    } else if message.contains("CUDA_ERROR_INVALID_VALUE") {
        "a kernel launch or copy was refused, which dfdx reports for tensors of 2^31 elements or more: lower \
         `--batch` or the model size"
    } else if message.contains("NvrtcError") {
        "NVRTC could not compile one of dfdx's run-time kernels: the CUDA headers this binary was built against \
         must exist at the same path here (scripts/gpu-build.sh, scripts/gpu-check.sh)"
    } else {
        "the GPU reported an error inside dfdx"
    };
    let first_line = message.lines().next().unwrap_or(message);
    Some(DeviceError(format!("CUDA error during the run: {hint} ({first_line})")))
}

/// Opens GPU 0 and checks that it can run dfdx's kernels and cuBLAS, so a missing GPU or
/// a driver older than the toolkit becomes an error here instead of a panic inside the first forward pass.
#[cfg(feature = "cuda")]
pub fn cuda() -> Result<CudaDevice, DeviceError> {
    use dfdx::prelude::*;
    let dev = CudaDevice::try_build(0, 0).map_err(|e| DeviceError(describe_cuda("cannot open CUDA device 0", &e)))?;
    // Reusing freed device buffers avoids a cudaMalloc/cudaFree pair per op (as `enable_cache` does on CPU).
    dev.try_enable_cache().map_err(|e| DeviceError(describe_cuda("cannot enable dfdx's CUDA allocation cache", &e)))?;
    // dfdx loads its precompiled PTX lazily, op by op; one fallible elementwise op and one matmul (cuBLAS) surface
    // a PTX/driver mismatch now.
    let probe = || -> Result<f32, dfdx::tensor::CudaError> {
        let a: Tensor<(usize, usize), f32, CudaDevice> = dev.try_tensor_from_vec(vec![0.5f32; 4], (2, 2))?;
        let b = a.clone().try_exp()?;
        Ok(a.try_matmul(b)?.try_sum::<Rank0, _>()?.array())
    };
    let value = probe().map_err(|e| DeviceError(describe_cuda("CUDA device 0 cannot run dfdx's kernels", &e)))?;
    if !value.is_finite() {
        return Err(DeviceError(format!("CUDA device 0 computed a non-finite probe value ({value})")));
    }
    Ok(dev)
}

/// Turns dfdx's CUDA error into a sentence that names the missing piece.
#[cfg(feature = "cuda")]
fn describe_cuda(what: &str, e: &dfdx::tensor::CudaError) -> String {
    let text = format!("{e:?}");
    let hint = if text.contains("NO_DEVICE") {
        "the driver sees no NVIDIA GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
    } else if text.contains("INSUFFICIENT_DRIVER") || text.contains("UNSUPPORTED_PTX_VERSION") {
        "the NVIDIA driver is older than the CUDA toolkit this binary was built with; rebuild with the nvcc/NVRTC \
         version `nvidia-smi` reports (scripts/gpu-check.sh pins it)"
    } else if text.contains("NO_BINARY_FOR_GPU") || text.contains("INVALID_PTX") {
        "the kernels were compiled for another GPU architecture; rebuild with CUDA_COMPUTE_CAP set to this GPU's"
    } else if text.contains("NOT_INITIALIZED") || text.contains("SYSTEM_DRIVER_MISMATCH") {
        "the CUDA driver could not be initialised (is the NVIDIA kernel module loaded?)"
    } else if text.contains("OUT_OF_MEMORY") {
        "the GPU is out of memory"
    } else {
        "see the CUDA error above"
    };
    format!("{what}: {text}; {hint}")
}

/// With `--features cuda`, proves at compile time that dfdx's CUDA device is a [`Backend`], so the model, the loss
/// graph and the trainer run on it (`cargo check --features cuda,ci-check` runs in CI without a GPU).
#[cfg(feature = "cuda")]
const _: fn() = || {
    fn is_backend<D: Backend>() {}
    is_backend::<CudaDevice>();
};
