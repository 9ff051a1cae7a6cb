//! The objective evaluated twice on given leaf values — by the f64 oracle and by the compiled dfdx graph —
//! with gradients with respect to every policy leaf (`seppoc loss`, and the backend-agreement tests).

use super::loss_graph;
use crate::device::CpuDevice as Cpu;
use crate::ir::{Bound, Evaluation, LeafValues, ModelRef};
use dfdx::prelude::*;

/// What the dfdx graph computed (f32).
#[derive(Clone, Debug, PartialEq)]
pub struct DfdxResult {
    /// The loss.
    pub loss: f64,
    /// `d loss / d leaf` for each policy leaf (`None` for frozen leaves), in input order.
    pub grads: Vec<Option<Vec<f64>>>,
}

/// Evaluates on CPU with both backends.
pub fn both(obj: &Bound, leaves: &LeafValues) -> (Evaluation, DfdxResult) {
    let batch = leaves.inputs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let dev = Cpu::default();
    // Every leaf, policy and frozen alike, is rounded to f32 as in training (where all errors come from f32
    // models): the oracle and the graph see the same values, and an exact policy/reference tie given in f64
    // stays a tie instead of being decided by the rounding direction of one side.
    let rounded = LeafValues {
        inputs: leaves.inputs.iter().map(|l| l.iter().map(|&v| v as f32 as f64).collect()).collect(),
        data: leaves.data.clone(),
    };
    let mut offsets = vec![None; obj.inputs.len()];
    let mut stacked: Vec<f32> = Vec::new();
    for (k, input) in obj.inputs.iter().enumerate() {
        if input.model == ModelRef::Policy {
            offsets[k] = Some(stacked.len());
            stacked.extend(rounded.inputs[k].iter().map(|&v| v as f32));
        }
    }
    let n = stacked.len();
    let policy: Tensor<(usize,), f32, Cpu> = dev.tensor_from_vec(stacked, (n,));
    let graph = loss_graph(obj, policy.leaky_trace(), &offsets, &rounded, batch);
    let loss = graph.loss.array() as f64;
    let grads = graph.loss.backward();
    let g = grads.get(&policy).as_vec();
    let grads = offsets.iter().map(|off| off.map(|o| g[o..o + batch].iter().map(|&v| v as f64).collect())).collect();
    (graph.host, DfdxResult { loss, grads })
}
