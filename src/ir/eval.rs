//! The f64 reference evaluator of the IR (no dfdx): values, logs, and reverse-mode gradients of the loss with
//! respect to every policy leaf. It is the oracle the dfdx compilation is tested against.

use super::*;

/// Values of every leaf (one `Vec` per input, one entry per sample) and datum; parameters come from the
/// [`Bound`] objective.
#[derive(Clone, Debug, PartialEq)]
pub struct LeafValues {
    /// `inputs[k][i]`: leaf k, sample i.
    pub inputs: Vec<Vec<f64>>,
    /// `data[k]`: datum k ([`Objective::datums`]), one value per sample (or one for a per-step datum).
    pub data: Vec<Vec<f64>>,
}

impl LeafValues {
    /// Leaf values of an objective without data values (no `timestep`, `snr`, `progress`, ...).
    pub fn leaves(inputs: Vec<Vec<f64>>) -> Self {
        LeafValues { inputs, data: Vec::new() }
    }
}

/// Everything an evaluation yields.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Every node's value: length 1 (constant or batch-reduced) or the batch size.
    pub values: Vec<Vec<f64>>,
    /// The loss.
    pub loss: f64,
    /// Per-sample losses when the loss is `mean(x)` or `sum(x)` of a per-sample `x`.
    pub per_sample: Option<Vec<f64>>,
    /// Logged quantities.
    pub logs: Vec<(String, f64)>,
    /// `d loss / d leaf` for every policy leaf (`None` for frozen leaves).
    pub grads: Vec<Option<Vec<f64>>>,
}

/// Numerically stable `log σ(x)`.
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// Numerically stable `σ(x)`.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn unary(op: UnOp, x: f64) -> f64 {
    match op {
        UnOp::Neg => -x,
        UnOp::LogSigmoid => log_sigmoid(x),
        UnOp::Sigmoid => sigmoid(x),
        UnOp::Softplus => -log_sigmoid(-x),
        UnOp::Relu => x.max(0.0),
        UnOp::Exp => x.exp(),
        UnOp::Log => x.ln(),
        UnOp::Log1p => x.ln_1p(),
        UnOp::Square => x * x,
        UnOp::Abs => x.abs(),
        UnOp::Expm1 => x.exp_m1(),
        UnOp::Sqrt => x.sqrt(),
        UnOp::Tanh => x.tanh(),
    }
}

/// `d op(x) / dx`.
fn unary_grad(op: UnOp, x: f64) -> f64 {
    match op {
        UnOp::Neg => -1.0,
        UnOp::LogSigmoid => sigmoid(-x),
        UnOp::Sigmoid => sigmoid(x) * (1.0 - sigmoid(x)),
        UnOp::Softplus => sigmoid(x),
        UnOp::Relu => f64::from(u8::from(x > 0.0)),
        UnOp::Exp => x.exp(),
        UnOp::Log => 1.0 / x,
        UnOp::Log1p => 1.0 / (1.0 + x),
        UnOp::Square => 2.0 * x,
        UnOp::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnOp::Expm1 => x.exp(),
        UnOp::Sqrt => 0.5 / x.sqrt(),
        UnOp::Tanh => 1.0 - x.tanh().powi(2),
    }
}

fn binary(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Min => a.min(b),
        BinOp::Max => a.max(b),
        BinOp::Pow => a.powf(b),
    }
}

/// `(d/da, d/db)`; at `a == b`, min and max send the gradient to `a`.
fn binary_grad(op: BinOp, a: f64, b: f64) -> (f64, f64) {
    match op {
        BinOp::Add => (1.0, 1.0),
        BinOp::Sub => (1.0, -1.0),
        BinOp::Mul => (b, a),
        BinOp::Div => (1.0 / b, -a / (b * b)),
        BinOp::Min => {
            if a <= b {
                (1.0, 0.0)
            } else {
                (0.0, 1.0)
            }
        }
        BinOp::Max => {
            if a >= b {
                (1.0, 0.0)
            } else {
                (0.0, 1.0)
            }
        }
        // d/db = a^b ln a is defined for a > 0 only; the exponent never carries gradient (checker).
        BinOp::Pow => {
            (if b == 0.0 { 0.0 } else { b * a.powf(b - 1.0) }, if a > 0.0 { a.powf(b) * a.ln() } else { 0.0 })
        }
    }
}

fn compare(op: CmpOp, a: f64, b: f64) -> f64 {
    let t = match op {
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
    };
    f64::from(u8::from(t))
}

/// Value `i` of a node that is either broadcast (length 1) or per sample.
fn at(v: &[f64], i: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[i]
    }
}

/// `op` over each block of `k` consecutive values, broadcast back to the block's rows (two passes over the
/// deviations from the block's first value, so a constant block has its value as mean and a standard deviation
/// of exactly 0). A value with one entry (a constant or a batch
/// reduction) is one block of equal values: its mean is itself, its deviation 0. A length that is not a
/// multiple of `k` gives NaN everywhere ([`group_rows`] names it first).
fn group_stat(op: GroupOp, x: &[f64], k: usize) -> Vec<f64> {
    if x.len() == 1 {
        return vec![if op == GroupOp::Mean { x[0] } else { 0.0 }];
    }
    if k == 0 || !x.len().is_multiple_of(k) {
        return vec![f64::NAN; x.len()];
    }
    let mut out = Vec::with_capacity(x.len());
    for block in x.chunks(k) {
        // Deviations from the block's first value: a constant block has mean exactly that value and deviation
        // exactly 0, and the second pass keeps the variance accurate.
        let first = block[0];
        let shift = block.iter().map(|v| v - first).sum::<f64>() / k as f64;
        let value = match op {
            GroupOp::Mean => first + shift,
            GroupOp::Std => {
                (block.iter().map(|v| (v - first - shift) * (v - first - shift)).sum::<f64>() / k as f64).sqrt()
            }
        };
        out.extend(std::iter::repeat_n(value, k));
    }
    out
}

/// A batch whose rows are not whole groups: an objective with a group statistic needs `rows` to be a multiple
/// of its group size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRows {
    /// The statistic's function (`group_mean`, `group_std`).
    pub func: &'static str,
    /// The objective's group size K.
    pub group: u32,
    /// The rows given.
    pub rows: usize,
}

impl std::fmt::Display for GroupRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` reduces over groups of {k} rows (`sample(..., group = {k})`), but the batch has {} rows, not a \
             multiple of {k}: give {k} consecutive rows per prompt",
            self.func,
            self.rows,
            k = self.group
        )
    }
}

/// Checks that a batch of `rows` rows is whole groups for every group statistic of `obj` (the oracle gives NaN
/// for such a statistic otherwise).
pub fn group_rows(obj: &Objective, rows: usize) -> Result<(), GroupRows> {
    let k = obj.group() as usize;
    let stat = obj.nodes.iter().find_map(|n| match n {
        Node::Group(op, _) => Some(op.name()),
        _ => None,
    });
    match stat {
        Some(func) if !rows.is_multiple_of(k) => Err(GroupRows { func, group: k as u32, rows }),
        _ => Ok(()),
    }
}

/// Evaluates the objective, with its bound parameter values, on given leaf values (all leaves must have the same
/// batch size).
pub fn evaluate(obj: &Bound, leaves: &LeafValues) -> Evaluation {
    let batch = leaves.inputs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut values: Vec<Vec<f64>> = Vec::with_capacity(obj.nodes.len());
    for node in &obj.nodes {
        let v = |id: &NodeId| &values[id.0 as usize];
        let len = |ids: &[&NodeId]| if ids.iter().any(|id| v(id).len() > 1) { batch } else { 1 };
        let out: Vec<f64> = match node {
            Node::Input(k) => leaves.inputs[k.0 as usize].clone(),
            // A missing datum is NaN, which every caller reports as a non-finite value naming the quantity.
            Node::Datum(k) => leaves.data.get(k.0 as usize).cloned().unwrap_or_else(|| vec![f64::NAN]),
            Node::Param(k) => vec![obj.value(*k)],
            Node::Const(bits) => vec![f64::from_bits(*bits)],
            Node::Unary(op, x) => v(x).iter().map(|&x| unary(*op, x)).collect(),
            Node::Binary(op, a, b) => (0..len(&[a, b])).map(|i| binary(*op, at(v(a), i), at(v(b), i))).collect(),
            Node::Clamp(x, lo, hi) => {
                (0..len(&[x, lo, hi])).map(|i| at(v(x), i).max(at(v(lo), i)).min(at(v(hi), i))).collect()
            }
            Node::Compare(op, a, b) => (0..len(&[a, b])).map(|i| compare(*op, at(v(a), i), at(v(b), i))).collect(),
            Node::Sign { arg, tie } => v(arg)
                .iter()
                .map(|&x| {
                    if x > 0.0 {
                        1.0
                    } else if x < 0.0 {
                        -1.0
                    } else {
                        f64::from_bits(*tie)
                    }
                })
                .collect(),
            Node::Where(c, a, b) => {
                (0..len(&[c, a, b])).map(|i| if at(v(c), i) != 0.0 { at(v(a), i) } else { at(v(b), i) }).collect()
            }
            Node::StopGrad(x) => v(x).clone(),
            Node::Reduce(op, x) => {
                let x = v(x);
                let n = if x.len() == 1 { batch } else { x.len() };
                let sum: f64 = if x.len() == 1 { x[0] * n as f64 } else { x.iter().sum() };
                vec![if *op == ReduceOp::Mean { sum / n as f64 } else { sum }]
            }
            Node::Group(op, x) => group_stat(*op, v(x), obj.group() as usize),
        };
        values.push(out);
    }
    let grads = backward(obj, &values, batch);
    let loss = values[obj.loss.0 as usize][0];
    let per_sample = match obj.node(obj.loss) {
        Node::Reduce(_, x) if values[x.0 as usize].len() == batch => Some(values[x.0 as usize].clone()),
        _ => None,
    };
    let logs = obj.logs.iter().map(|(n, id)| (n.clone(), values[id.0 as usize][0])).collect();
    Evaluation { values, loss, per_sample, logs, grads }
}

/// Reverse-mode gradients of the loss with respect to the policy leaves.
fn backward(obj: &Objective, values: &[Vec<f64>], batch: usize) -> Vec<Option<Vec<f64>>> {
    let taped = obj.taped();
    let mut adj: Vec<Vec<f64>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    adj[obj.loss.0 as usize] = vec![1.0];
    // Adds `g` (for output position i) into operand `id`, summing over broadcast positions.
    fn add(adj: &mut [Vec<f64>], taped: &[bool], id: NodeId, i: usize, g: f64) {
        if !taped[id.0 as usize] {
            return;
        }
        let a = &mut adj[id.0 as usize];
        let j = if a.len() == 1 { 0 } else { i };
        a[j] += g;
    }
    for k in (0..obj.nodes.len()).rev() {
        if !taped[k] {
            continue;
        }
        let out = adj[k].clone();
        let v = |id: &NodeId| &values[id.0 as usize];
        for (i, &g) in out.iter().enumerate() {
            if g == 0.0 {
                continue;
            }
            match &obj.nodes[k] {
                Node::Unary(op, x) => add(&mut adj, &taped, *x, i, g * unary_grad(*op, at(v(x), i))),
                Node::Binary(op, a, b) => {
                    let (da, db) = binary_grad(*op, at(v(a), i), at(v(b), i));
                    add(&mut adj, &taped, *a, i, g * da);
                    add(&mut adj, &taped, *b, i, g * db);
                }
                Node::Clamp(x, lo, hi) => {
                    let (xv, l, h) = (at(v(x), i), at(v(lo), i), at(v(hi), i));
                    let target = if xv < l {
                        *lo
                    } else if xv > h {
                        *hi
                    } else {
                        *x
                    };
                    add(&mut adj, &taped, target, i, g);
                }
                Node::Where(c, a, b) => {
                    let target = if at(v(c), i) != 0.0 { *a } else { *b };
                    add(&mut adj, &taped, target, i, g);
                }
                Node::Reduce(op, x) => {
                    let n = v(x).len().max(1);
                    let n_out = if n == 1 { batch } else { n };
                    let scale = if *op == ReduceOp::Mean { 1.0 / n_out as f64 } else { 1.0 };
                    for j in 0..n_out {
                        add(&mut adj, &taped, *x, j, g * scale);
                    }
                }
                Node::Input(_)
                | Node::Datum(_)
                | Node::Param(_)
                | Node::Const(_)
                | Node::Compare(..)
                | Node::Sign { .. }
                | Node::StopGrad(_)
                | Node::Group(..) => {}
            }
        }
    }
    let mut grads: Vec<Option<Vec<f64>>> =
        obj.inputs.iter().map(|i| (i.model == ModelRef::Policy).then(|| vec![0.0; batch])).collect();
    for (k, node) in obj.nodes.iter().enumerate() {
        // CSE gives each leaf exactly one `Input` node.
        if let (Node::Input(id), true) = (node, taped[k]) {
            if let Some(slot) = grads[id.0 as usize].as_mut() {
                for (i, s) in slot.iter_mut().enumerate() {
                    *s += at(&adj[k], i);
                }
            }
        }
    }
    grads
}

/// A constant term that is not finite: `node` evaluates to `value` (NaN or infinite) whatever the leaves are.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The offending node: the first one on its path whose operands are not NaN themselves.
    pub node: NodeId,
    /// Its value (for a division by a constant zero, the denominator's 0).
    pub value: f64,
    /// Whether it divides by a constant that is zero (the quotient is then infinite or NaN per sample).
    pub divides_by_zero: bool,
    /// Parameters its value depends on.
    pub params: Vec<ParamId>,
}

/// Folds every node that does not depend on the leaves (with the bound parameter values) and reports those
/// whose value is NaN, or infinite although their operands are finite (`log1p(-2.0)`, `1 / 0`, `inf - inf`),
/// and divisions by a constant zero (`x / (beta - beta)`). A NaN operand is not reported again downstream.
pub fn nonfinite_constants(obj: &Bound) -> Vec<NonFinite> {
    let mut folded: Vec<Option<f64>> = Vec::with_capacity(obj.nodes.len());
    let mut params: Vec<Vec<ParamId>> = Vec::with_capacity(obj.nodes.len());
    let mut out = Vec::new();
    for (k, node) in obj.nodes.iter().enumerate() {
        let ops = node.operands();
        let f = |id: &NodeId| folded[id.0 as usize];
        let value = match node {
            Node::Input(_) | Node::Datum(_) | Node::Reduce(..) | Node::Group(..) => None,
            Node::Param(p) => Some(obj.value(*p)),
            Node::Const(bits) => Some(f64::from_bits(*bits)),
            _ if ops.iter().any(|o| f(o).is_none()) => None,
            Node::Unary(op, x) => f(x).map(|x| unary(*op, x)),
            Node::Binary(op, a, b) => Some(binary(*op, f(a).unwrap_or(0.0), f(b).unwrap_or(0.0))),
            // Gates and selections are constants too, but never the first to produce a non-finite value.
            _ => None,
        };
        let mut deps: Vec<ParamId> = ops.iter().flat_map(|o| params[o.0 as usize].clone()).collect();
        if let Node::Param(p) = node {
            deps.push(*p);
        }
        deps.sort();
        deps.dedup();
        let operand_nan = ops.iter().any(|o| f(o).is_some_and(f64::is_nan));
        let operands_finite = ops.iter().all(|o| f(o).is_some_and(f64::is_finite));
        match (node, value) {
            (Node::Binary(BinOp::Div, _, b), None) if f(b) == Some(0.0) => {
                out.push(NonFinite { node: NodeId(k as u32), value: 0.0, divides_by_zero: true, params: deps.clone() })
            }
            (Node::Unary(..) | Node::Binary(..), Some(v))
                if !operand_nan && (v.is_nan() || (v.is_infinite() && operands_finite)) =>
            {
                let divides_by_zero = matches!(node, Node::Binary(BinOp::Div, _, b) if f(b) == Some(0.0));
                out.push(NonFinite { node: NodeId(k as u32), value: v, divides_by_zero, params: deps.clone() })
            }
            _ => {}
        }
        folded.push(value);
        params.push(deps);
    }
    out
}
