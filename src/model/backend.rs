//! The only file that names dfdx's concrete devices; everything else is generic over [`ModelDevice`].

use dfdx::tensor::{Cache, TensorToArray};
use dfdx::tensor_ops::Device;

/// What the model, optimizer and sampler need from a dfdx device.
pub trait ModelDevice: Device<f32> + Cache + TensorToArray<(), f32, Array = f32> {}

impl<D: Device<f32> + Cache + TensorToArray<(), f32, Array = f32>> ModelDevice for D {}

/// The CPU device.
pub type CpuDevice = dfdx::tensor::Cpu;

/// The CUDA device (feature `cuda`).
#[cfg(feature = "cuda")]
pub type CudaDevice = dfdx::tensor::Cuda;

/// Creates a CPU device with dfdx's allocation cache enabled (the cache cuts elementwise-op time ~2×).
pub fn cpu() -> CpuDevice {
    let dev = CpuDevice::default();
    dev.enable_cache();
    dev
}
