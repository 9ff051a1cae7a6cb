//! The one place that names a dfdx device: CPU by default, CUDA with the `cuda` feature.

/// The CPU device.
pub type Cpu = dfdx::tensor::Cpu;

/// The default device for training and the loss graph.
#[cfg(not(feature = "cuda"))]
pub type Dev = Cpu;

/// The default device for training and the loss graph.
#[cfg(feature = "cuda")]
pub type Dev = dfdx::tensor::Cuda;
