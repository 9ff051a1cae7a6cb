//! W0305: a soft gate that carries gradient. A weight squashed out of the policy–reference gap (`sigmoid`,
//! `tanh`, `clamp`, `x / abs(x)`-style normalisations) that multiplies another term trains the gap through the
//! weight: the policy is pushed to move the gate, not only the gated term. E0306 covers the hard gates (`sign`,
//! `indicator`, `where`), whose derivative is zero; a soft gate has a real derivative, so it is accepted with a
//! warning and the help `stopgrad(...)`.

use crate::ir::{BinOp, Bound, ModelRef, Node, NodeId, UnOp};

/// One finding: the squashing node and the product it weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftGate {
    /// The `sigmoid(...)`, `tanh(...)`, `clamp(...)` or normalising quotient.
    pub squash: NodeId,
    /// The product in which the gate multiplies a term that depends on the models.
    pub product: NodeId,
}

/// Every soft gate on the loss's tape, at most one finding per squashing node.
pub fn soft_gates(obj: &Bound) -> Vec<SoftGate> {
    let n = obj.nodes.len();
    let taped = obj.taped();
    let (mut leafy, mut on_ref) = (vec![false; n], vec![false; n]);
    for (k, node) in obj.nodes.iter().enumerate() {
        let ops = node.operands();
        leafy[k] = matches!(node, Node::Input(_)) || ops.iter().any(|o| leafy[o.0 as usize]);
        on_ref[k] = match node {
            Node::Input(i) => {
                let input = &obj.inputs[i.0 as usize];
                matches!(input.model, ModelRef::Reference(_)) || input.against.is_some()
            }
            _ => ops.iter().any(|o| on_ref[o.0 as usize]),
        };
    }
    let tape = loss_tape(obj);
    // `gate[k]`: node k is a soft gate of the gap, or an affine function of one (`2 * s - 1`); the squash node.
    let mut gate: Vec<Option<NodeId>> = vec![None; n];
    let gap = |x: &NodeId| taped[x.0 as usize] && on_ref[x.0 as usize];
    let model_free = |x: &NodeId| !leafy[x.0 as usize];
    let mut found: Vec<SoftGate> = Vec::new();
    for (k, node) in obj.nodes.iter().enumerate() {
        let g = |x: &NodeId| gate[x.0 as usize];
        let id = NodeId(k as u32);
        let value = match node {
            Node::Unary(UnOp::Sigmoid | UnOp::Tanh, x) if gap(x) => Some(id),
            Node::Clamp(x, lo, hi) if gap(x) && model_free(lo) && model_free(hi) => Some(id),
            Node::Binary(BinOp::Div, a, b) if gap(a) && normalises(obj, *a, *b) => Some(id),
            Node::Unary(UnOp::Neg, x) => g(x),
            Node::Binary(BinOp::Add | BinOp::Sub, a, b) if model_free(b) => g(a),
            Node::Binary(BinOp::Add | BinOp::Sub, a, b) if model_free(a) => g(b),
            Node::Binary(BinOp::Mul, a, b) if model_free(b) => g(a),
            Node::Binary(BinOp::Mul, a, b) if model_free(a) => g(b),
            Node::Binary(BinOp::Div, a, b) if model_free(b) => g(a),
            _ => None,
        };
        // A gate (or its affine image) times a term that depends on the models, on the loss's tape.
        let weighted = match node {
            Node::Binary(BinOp::Mul, a, b) if tape[k] => match (g(a), g(b)) {
                (Some(s), _) if leafy[b.0 as usize] => Some(s),
                (_, Some(s)) if leafy[a.0 as usize] => Some(s),
                _ => None,
            },
            _ => None,
        };
        gate[k] = value;
        if let Some(squash) = weighted {
            if !found.iter().any(|f| f.squash == squash) {
                found.push(SoftGate { squash, product: id });
            }
        }
    }
    found
}

/// `a / b` with `b` built from `|a|` or `a^2` (`x / abs(x)`, `x / sqrt(square(x) + c)`, `x / (1 + abs(x))`):
/// a bounded, sign-like function of `a`.
fn normalises(obj: &Bound, a: NodeId, b: NodeId) -> bool {
    let mut stack = vec![b];
    let mut seen = vec![false; obj.nodes.len()];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id.0 as usize], true) {
            continue;
        }
        match obj.node(id) {
            Node::Unary(UnOp::Abs | UnOp::Square, x) if *x == a => return true,
            Node::Binary(BinOp::Mul, x, y) if *x == a && *y == a => return true,
            node => stack.extend(node.operands()),
        }
    }
    false
}

/// Whether the loss's gradient reaches each node: every operand edge except into `stopgrad`, comparisons, gate
/// conditions and `where` conditions.
fn loss_tape(obj: &Bound) -> Vec<bool> {
    let mut tape = vec![false; obj.nodes.len()];
    tape[obj.loss.0 as usize] = true;
    for k in (0..obj.nodes.len()).rev() {
        if !tape[k] {
            continue;
        }
        let through: Vec<NodeId> = match &obj.nodes[k] {
            Node::StopGrad(_) | Node::Compare(..) | Node::Sign { .. } | Node::Group(..) => Vec::new(),
            Node::Where(_, a, b) => vec![*a, *b],
            node => node.operands(),
        };
        for o in through {
            tape[o.0 as usize] = true;
        }
    }
    tape
}
