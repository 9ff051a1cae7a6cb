//! The typed IR of an objective: a DAG of scalar operations in topological order over leaf inputs (the
//! per-sample denoising errors `err(M, x)`), with spans in a side table and common subexpressions shared.

mod bind;
mod eval;
mod leaf;
mod lower;
pub mod print;

pub use bind::{BindError, Bound};
pub use eval::{
    evaluate, group_rows, log_sigmoid, nonfinite_constants, sigmoid, Evaluation, GroupRows, LeafValues, NonFinite,
};
pub use leaf::{Datum, DatumId, ImageRef, Input, ModelRef, TimeQty, View};
pub use lower::lower;

use crate::check::{DataKind, Noise, Pool, Reference, SampleSpec};
use crate::source::Span;

/// Index of a node in [`Objective::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// Index of a leaf in [`Objective::inputs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InputId(pub u32);

/// Index of a parameter in [`Objective::params`] (its value lives in a [`Bound`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub u32);

/// Elementwise functions of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `log σ(x)`
    LogSigmoid,
    /// `σ(x)`
    Sigmoid,
    /// `log(1 + e^x)`
    Softplus,
    /// `max(x, 0)`
    Relu,
    /// `e^x`
    Exp,
    /// `ln x`
    Log,
    /// `ln(1 + x)`
    Log1p,
    /// `x^2`
    Square,
    /// `|x|`
    Abs,
    /// `e^x - 1`, accurate near 0
    Expm1,
    /// `sqrt(x)`
    Sqrt,
    /// `tanh(x)`
    Tanh,
}

/// Elementwise functions of two values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
    /// `a^b`; the checker keeps `b` free of the batch axis and of gradient.
    Pow,
}

/// Comparisons (gates): 1.0 where true, 0.0 where false; never carry gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// Batch reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Mean over the batch.
    Mean,
    /// Sum over the batch.
    Sum,
}

/// Statistics over each group of K rows (the K samples of one prompt, `sample(..., group = K)`), broadcast
/// back to the group's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupOp {
    /// `group_mean(x)`: the mean of the group's K values.
    Mean,
    /// `group_std(x)`: the population standard deviation (ddof 0) of the group's K values.
    Std,
}

impl GroupOp {
    /// The function's name in `.obj` files.
    pub fn name(self) -> &'static str {
        match self {
            GroupOp::Mean => "group_mean",
            GroupOp::Std => "group_std",
        }
    }
}

/// One IR operation. Operands always have smaller ids (topological order).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A leaf value, per sample.
    Input(InputId),
    /// A value of the step's data or noise draw (timestep quantities, training progress): never on the tape.
    Datum(DatumId),
    /// A parameter's value, read from the [`Bound`] objective.
    Param(ParamId),
    /// A constant, stored as `f64::to_bits` so nodes hash.
    Const(u64),
    /// `op(x)`
    Unary(UnOp, NodeId),
    /// `op(a, b)`
    Binary(BinOp, NodeId, NodeId),
    /// `clamp(x, lo, hi)`
    Clamp(NodeId, NodeId, NodeId),
    /// `a op b` as 0.0 / 1.0, no gradient.
    Compare(CmpOp, NodeId, NodeId),
    /// `sign(x)` with the stated value at 0, no gradient.
    Sign {
        /// The gated value.
        arg: NodeId,
        /// Value at exactly 0 (bits of -1.0, 0.0 or 1.0).
        tie: u64,
    },
    /// `where(c, a, b)`: `a` where `c` is 1, else `b`; gradient flows to `a` and `b` only.
    Where(NodeId, NodeId, NodeId),
    /// Value of `x`, no gradient.
    StopGrad(NodeId),
    /// Reduction over the batch.
    Reduce(ReduceOp, NodeId),
    /// A statistic over each group of [`Objective::group`] consecutive rows, per row; no gradient.
    Group(GroupOp, NodeId),
}

impl Node {
    /// The nodes this one reads, in order.
    pub fn operands(&self) -> Vec<NodeId> {
        match self {
            Node::Input(_) | Node::Datum(_) | Node::Param(_) | Node::Const(_) => Vec::new(),
            Node::Unary(_, x)
            | Node::StopGrad(x)
            | Node::Reduce(_, x)
            | Node::Group(_, x)
            | Node::Sign { arg: x, .. } => vec![*x],
            Node::Binary(_, a, b) | Node::Compare(_, a, b) => vec![*a, *b],
            Node::Clamp(x, y, z) | Node::Where(x, y, z) => vec![*x, *y, *z],
        }
    }
}

/// The lowered objective.
#[derive(Clone, Debug)]
pub struct Objective {
    /// `objective NAME`.
    pub name: String,
    /// Data kind.
    pub data: DataKind,
    /// Noise coupling.
    pub noise: Noise,
    /// Checkpoint pool.
    pub pool: Option<Pool>,
    /// Parameters with their default values.
    pub params: Vec<crate::check::Param>,
    /// Reference models.
    pub references: Vec<Reference>,
    /// Reference-sample generators (`ImageRef::Sample(k)` indexes here).
    pub samples: Vec<SampleSpec>,
    /// Leaves in first-use order.
    pub inputs: Vec<Input>,
    /// Data and noise-draw values (`Node::Datum` indexes here), in first-use order.
    pub datums: Vec<Datum>,
    /// Operations in topological order.
    pub nodes: Vec<Node>,
    /// `spans[id]`: where the node came from (the first occurrence when shared).
    pub spans: Vec<Span>,
    /// The loss node (batch-reduced).
    pub loss: NodeId,
    /// Logged quantities.
    pub logs: Vec<(String, NodeId)>,
}

impl Objective {
    /// The node behind an id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// Whether gradient reaches the policy through a node: it depends on a policy leaf other than through
    /// `stopgrad`, a comparison or a gate condition.
    pub fn taped(&self) -> Vec<bool> {
        let mut taped = vec![false; self.nodes.len()];
        for (k, node) in self.nodes.iter().enumerate() {
            let t = |id: &NodeId| taped[id.0 as usize];
            taped[k] = match node {
                Node::Input(i) => self.inputs[i.0 as usize].model == ModelRef::Policy,
                Node::Datum(_)
                | Node::Param(_)
                | Node::Const(_)
                | Node::Compare(..)
                | Node::Sign { .. }
                | Node::StopGrad(_)
                | Node::Group(..) => false,
                Node::Unary(_, x) | Node::Reduce(_, x) => t(x),
                Node::Binary(_, a, b) => t(a) || t(b),
                Node::Clamp(x, lo, hi) => t(x) || t(lo) || t(hi),
                Node::Where(_, a, b) => t(a) || t(b),
            };
        }
        taped
    }

    /// The group size K of the step's rows: the `group = K` of its `sample(...)` calls (the checker makes them
    /// agree), or 1 when none has one. Rows `gK..(g+1)K` share one data item.
    pub fn group(&self) -> u32 {
        self.samples.iter().map(|s| s.group).max().unwrap_or(1).max(1)
    }

    /// Every (images, draw) view a model, or any model when `None`, is evaluated on or a datum reads, in
    /// first-use order.
    pub fn views(&self, model: Option<&ModelRef>) -> Vec<View> {
        let mut out = Vec::new();
        for input in &self.inputs {
            let against = input.against.as_ref().map(|r| ModelRef::Reference(r.clone()));
            if model.is_none_or(|m| *m == input.model || against.as_ref() == Some(m)) && !out.contains(&input.view()) {
                out.push(input.view());
            }
        }
        if model.is_none() {
            for d in &self.datums {
                if let Datum::Time(_, v) = d {
                    if !out.contains(v) {
                        out.push(*v);
                    }
                }
            }
        }
        out
    }
}
