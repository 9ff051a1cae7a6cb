//! The kernels on dfdx's CUDA device: NVRTC compiles the `.cu` sources once per process, and the launches run
//! on a second cudarc handle to GPU 0. That handle retains the same primary context as dfdx's `Cuda` and issues
//! work on the same (null) stream, so device pointers are shared and our launches are ordered with dfdx's ops.
//!
//! dfdx keeps a tensor's device buffer crate-private, so kernel *inputs* are staged through the host (`as_vec`,
//! then one upload); the pair loss's gradient stays on the GPU and backward adds it straight into the
//! `CudaSlice` that `Gradients::get_or_alloc_mut` exposes. Besides the one `gemm` call in `fused/cpu/gemm.rs`,
//! this is the only file with `unsafe` (kernel launches).

use super::twin::PairLossHost;
use super::{DdimInputs, KernelDevice, KernelError, PairInputs, SOURCES};
use crate::model::backend::CudaDevice;
use crate::model::Images;
use cudarc::driver::{
    CudaDevice as Driver, CudaFunction, CudaSlice, DeviceRepr, DeviceSlice, DriverError, LaunchAsync, LaunchConfig,
};
use cudarc::nvrtc::{compile_ptx, CompileError};
use dfdx::prelude::*;
use std::sync::{Arc, OnceLock};

/// Threads per block of `pair_loss_fwd` (`SEPPOC_BLOCK` in `pair_loss.cu`).
const PAIR_BLOCK: u32 = 256;

/// The compiled kernels, loaded into GPU 0's primary context.
pub struct Kernels {
    dev: Arc<Driver>,
    pair_loss: CudaFunction,
    axpy: CudaFunction,
    ddim: CudaFunction,
}

/// The pair loss's gradient, kept on the GPU until backward.
pub struct CudaGrad {
    grad: CudaSlice<f32>,
    kernels: &'static Kernels,
}

static KERNELS: OnceLock<Result<Kernels, KernelError>> = OnceLock::new();

/// Compiles and loads every kernel on first use; later calls return the same handles (or the same error).
pub fn kernels() -> Result<&'static Kernels, KernelError> {
    KERNELS.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Kernels, KernelError> {
    let dev = Driver::new(0).map_err(|e| driver("cannot open CUDA device 0", e))?;
    for (file, src, funcs) in SOURCES {
        let ptx = compile_ptx(src).map_err(|e| compile(file, e))?;
        dev.load_ptx(ptx, file, funcs).map_err(|e| driver(&format!("cannot load the PTX of `{file}`"), e))?;
    }
    let func = |module: &str, name: &str| {
        dev.get_func(module, name).ok_or_else(|| {
            KernelError(format!("internal error: kernel `{name}` missing from `{module}` after loading"))
        })
    };
    Ok(Kernels {
        pair_loss: func("pair_loss.cu", "pair_loss_fwd")?,
        axpy: func("pair_loss.cu", "axpy_scaled")?,
        ddim: func("ddim_cfg.cu", "ddim_cfg_step")?,
        dev,
    })
}

fn driver(what: &str, e: DriverError) -> KernelError {
    KernelError(format!("{what}: CUDA driver error {e:?}"))
}

fn compile(file: &str, e: CompileError) -> KernelError {
    let detail = match e {
        CompileError::CompileError { log, .. } => format!("compile log:\n{}", log.to_string_lossy()),
        other => format!("{other:?}"),
    };
    KernelError(format!("NVRTC could not compile seppoc's kernel `{file}` ({detail})"))
}

/// A length as the `int` a kernel takes.
fn as_int(what: &str, len: usize) -> Result<i32, KernelError> {
    i32::try_from(len).map_err(|_| KernelError(format!("{what} = {len} is too large for one kernel launch")))
}

impl Kernels {
    fn upload<T: DeviceRepr + Unpin>(&self, v: Vec<T>) -> Result<CudaSlice<T>, KernelError> {
        self.dev.htod_copy(v).map_err(|e| driver("cannot copy to the GPU", e))
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>, KernelError> {
        self.dev.alloc_zeros(len).map_err(|e| driver("cannot allocate GPU memory", e))
    }

    fn download(&self, v: &CudaSlice<f32>) -> Result<Vec<f32>, KernelError> {
        self.dev.dtoh_sync_copy(v).map_err(|e| driver("cannot copy from the GPU", e))
    }
}

impl KernelDevice for CudaDevice {
    type GradBuf = CudaGrad;

    fn pair_loss_kernel(&self, inputs: &PairInputs<'_, Self>) -> Result<(PairLossHost, CudaGrad), KernelError> {
        let PairInputs { pred_pol, pred_ref, eps, gate, beta } = *inputs;
        let k = kernels()?;
        let (rows, c, h, w) = *pred_pol.shape();
        let (p, n) = (gate.len(), c * h * w);
        let (p_int, n_int) = (as_int("pairs", p)?, as_int("C·H·W", n)?);
        let pol = k.upload(pred_pol.as_vec())?;
        let rf = k.upload(pred_ref.as_vec())?;
        let ep = k.upload(eps.as_vec())?;
        let gt = k.upload(gate.to_vec())?;
        let (mut e_pol, mut e_ref, mut loss, mut grad) =
            (k.zeros(rows)?, k.zeros(rows)?, k.zeros(p)?, k.zeros(rows * n)?);
        let cfg = LaunchConfig { grid_dim: (p as u32, 1, 1), block_dim: (PAIR_BLOCK, 1, 1), shared_mem_bytes: 0 };
        let args = (&pol, &rf, &ep, &gt, beta, p_int, n_int, &mut e_pol, &mut e_ref, &mut loss, &mut grad);
        // SAFETY: the argument list matches `pair_loss_fwd`'s signature; every buffer holds what the kernel
        // indexes (2P rows of n values, P gates and losses, 2P errors).
        unsafe { k.pair_loss.clone().launch(cfg, args) }.map_err(|e| driver("pair_loss_fwd failed", e))?;
        let host = PairLossHost { e_pol: k.download(&e_pol)?, e_ref: k.download(&e_ref)?, loss: k.download(&loss)? };
        Ok((host, CudaGrad { grad, kernels: k }))
    }

    fn accumulate_grad(
        &self,
        grads: &mut Gradients<f32, Self>,
        pred: &Images<Self>,
        loss: &Tensor<Rank0, f32, Self>,
        stored: &CudaGrad,
    ) -> Result<(), Self::Err> {
        let upstream: CudaSlice<f32> = grads.get_or_alloc_mut(loss)?.try_clone()?;
        let g: &mut CudaSlice<f32> = grads.get_or_alloc_mut(pred)?;
        let len = g.len().min(stored.grad.len());
        let n = i32::try_from(len).unwrap_or(i32::MAX);
        // SAFETY: `axpy_scaled(dst, src, scale, len)` touches `len` values of dst and src and one of scale; all
        // three buffers live in GPU 0's primary context, which dfdx's device and ours share.
        unsafe {
            stored.kernels.axpy.clone().launch(LaunchConfig::for_num_elems(n as u32), (g, &stored.grad, &upstream, n))
        }?;
        Ok(())
    }

    fn ddim_cfg_step(&self, inputs: &DdimInputs<'_>) -> Result<Vec<f32>, KernelError> {
        let DdimInputs { x, eps_cond, eps_uncond, noise, coeffs } = *inputs;
        let k = kernels()?;
        let len = as_int("image values", x.len())?;
        let xs = k.upload(x.to_vec())?;
        let cond = k.upload(eps_cond.to_vec())?;
        let uncond = k.upload(eps_uncond.to_vec())?;
        // Without noise the kernel never reads `noise`; it still needs a valid pointer.
        let z = k.upload(noise.map_or_else(|| vec![0.0f32], |z| z.iter().map(|&v| v as f32).collect()))?;
        let coef = k.upload(coeffs.to_f32().to_vec())?;
        let mut out = k.zeros(x.len())?;
        let args = (&xs, &cond, &uncond, &z, i32::from(noise.is_some()), &coef, len, &mut out);
        // SAFETY: the argument list matches `ddim_cfg_step`'s signature; every buffer holds `len` values (the
        // noise buffer only when `has_noise` is 1) and `coef` holds the six scalars.
        unsafe { k.ddim.clone().launch(LaunchConfig::for_num_elems(len as u32), args) }
            .map_err(|e| driver("ddim_cfg_step failed", e))?;
        k.download(&out)
    }
}

/// CUDA runs the DiT's fused ops as their composite dfdx versions (cuBLAS and dfdx's elementwise kernels).
impl super::fused::FusedOps for CudaDevice {}
