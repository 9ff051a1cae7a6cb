//! The kernels on dfdx's CPU device: the CPU twins, reading and writing dfdx's host buffers directly.

use super::twin::{self, PairLossHost};
use super::{DdimInputs, KernelDevice, KernelError, PairInputs};
use crate::model::{CpuDevice, Images};
use dfdx::prelude::*;

impl KernelDevice for CpuDevice {
    type GradBuf = Vec<f32>;

    fn pair_loss_kernel(&self, inputs: &PairInputs<'_, Self>) -> Result<(PairLossHost, Vec<f32>), KernelError> {
        let PairInputs { pred_pol, pred_ref, eps, gate, beta } = inputs;
        let (_, c, h, w) = *pred_pol.shape();
        Ok(twin::pair_loss(&pred_pol.as_vec(), &pred_ref.as_vec(), &eps.as_vec(), gate, *beta, c * h * w))
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

    fn ddim_cfg_step(&self, inputs: &DdimInputs<'_>) -> Result<Vec<f32>, KernelError> {
        Ok(twin::ddim_cfg_step(inputs))
    }
}
