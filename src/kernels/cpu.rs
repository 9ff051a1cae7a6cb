//! The kernels on dfdx's CPU device: the CPU twins, reading and writing dfdx's host buffers directly.

use super::twin::{self, DdimCoeffs, PairLossHost};
use super::{KernelDevice, KernelError};
use crate::model::{CpuDevice, Images};
use dfdx::prelude::*;

impl KernelDevice for CpuDevice {
    type GradBuf = Vec<f32>;

    fn pair_loss_kernel(
        &self,
        pred_pol: &Images<Self>,
        pred_ref: &Images<Self>,
        eps: &Images<Self>,
        gate: &[f32],
        beta: f32,
    ) -> Result<(PairLossHost, Vec<f32>), KernelError> {
        let (_, c, h, w) = *pred_pol.shape();
        Ok(twin::pair_loss(&pred_pol.as_vec(), &pred_ref.as_vec(), &eps.as_vec(), gate, beta, c * h * w))
    }

    fn accumulate_grad(
        &self,
        grads: &mut Gradients<f32, Self>,
        pred: &Images<Self>,
        loss: &Tensor<Rank0, f32, Self>,
        stored: &Vec<f32>,
    ) -> Result<(), Self::Err> {
        let upstream = grads.get_or_alloc_mut(loss)?[0];
        let g = grads.get_or_alloc_mut(pred)?;
        g.iter_mut().zip(stored).for_each(|(g, s)| *g += upstream * s);
        Ok(())
    }

    fn ddim_cfg_step(
        &self,
        x: &[f32],
        eps_cond: &[f32],
        eps_uncond: &[f32],
        noise: Option<&[f64]>,
        coeffs: &DdimCoeffs,
    ) -> Result<Vec<f32>, KernelError> {
        Ok(twin::ddim_cfg_step(x, eps_cond, eps_uncond, noise, coeffs))
    }
}
