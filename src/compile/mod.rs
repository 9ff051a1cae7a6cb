//! IR to a dfdx autodiff graph on any dfdx device.
//!
//! Nodes on the tape (those through which gradient reaches the policy) become dfdx operations; every other
//! node — gates, stop-gradients, comparisons, group statistics, reference-only terms, constants — is evaluated
//! on the host in f64 by the oracle and enters the graph as a constant. So gates and stop-gradients are real: no
//! backward operation exists through them. Min, max, clamp and `where` use host masks with dfdx's `choose`, so their
//! gradient at ties matches the oracle (to the first operand).

pub mod conformance;

use crate::device::{upload, Backend};
use crate::ir::{evaluate, BinOp, Bound, Evaluation, InputId, LeafValues, Node, NodeId, Objective, UnOp};
use dfdx::prelude::*;

/// Per-sample vector on the tape.
type Vector<D> = Tensor<(usize,), f32, D, OwnedTape<f32, D>>;

/// The compiled loss of one step: the taped scalar, and the host evaluation (logs, gates, values).
pub struct LossGraph<D: Backend> {
    /// The loss, carrying the tape of the policy forward and of every taped loss node.
    pub loss: Tensor<Rank0, f32, D, OwnedTape<f32, D>>,
    /// The f64 evaluation on the same leaf values (logs and untaped nodes come from here).
    pub host: Evaluation,
}

/// Builds the loss graph for one batch.
///
/// `policy` holds every policy leaf stacked (shape `(n_rows,)`), taped; `offsets[k]` is the first row of
/// policy leaf `k` (rows `offset..offset + batch`); `leaves` holds the host values of every leaf, the policy's
/// included (read back from `policy`); parameter values come from the bound objective.
pub fn loss_graph<D: Backend>(
    obj: &Bound,
    policy: Vector<D>,
    offsets: &[Option<usize>],
    leaves: &LeafValues,
    batch: usize,
) -> LossGraph<D> {
    let host = evaluate(obj, leaves);
    let live = live_taped(obj);
    let dev = policy.device().clone();
    let (policy, mut tape) = policy.split_tape();
    let mut vals: Vec<Option<Tensor<(usize,), f32, D>>> = vec![None; obj.nodes.len()];
    for (k, node) in obj.nodes.iter().enumerate() {
        if !live[k] {
            continue;
        }
        let mut used: Vec<NodeId> = Vec::new();
        let mut arg = |id: NodeId| -> Vector<D> {
            // A repeated operand gets a fresh id (x * 1): dfdx's binary ops require distinct operand ids.
            let repeated = used.contains(&id);
            used.push(id);
            let t = operand(&dev, &vals, &host, id, batch);
            if repeated {
                t * 1.0
            } else {
                t
            }
        };
        let mask = |id: NodeId| host_mask(&dev, &host.values[id.0 as usize], batch, |v| v != 0.0);
        let out: Vector<D> = match node {
            Node::Input(InputId(i)) => {
                let off = offsets[*i as usize].unwrap_or_else(|| panic!("internal error: policy leaf {i} has no rows"));
                policy.retaped::<OwnedTape<f32, D>>().slice((off..off + batch,))
            }
            Node::Unary(UnOp::Expm1, x) => {
                let near = host_mask(&dev, &host.values[x.0 as usize], batch, |v| v.abs() < 1.0);
                expm1(near, arg(*x))
            }
            Node::Unary(op, x) => unary(*op, arg(*x)),
            Node::Binary(op, a, b) => {
                let (av, bv) = (&host.values[a.0 as usize], &host.values[b.0 as usize]);
                match op {
                    BinOp::Add => arg(*a) + arg(*b),
                    BinOp::Sub => arg(*a) - arg(*b),
                    BinOp::Mul => arg(*a) * arg(*b),
                    BinOp::Div => arg(*a) / arg(*b),
                    BinOp::Min => pick(&dev, av, bv, batch, |x, y| x <= y).choose(arg(*a), arg(*b)),
                    BinOp::Max => pick(&dev, av, bv, batch, |x, y| x >= y).choose(arg(*a), arg(*b)),
                    // The exponent is a constant (checker), so it has one host value and no gradient.
                    BinOp::Pow => arg(*a).powf(bv[0] as f32),
                }
            }
            Node::Clamp(x, lo, hi) => {
                let (xv, lv, hv) =
                    (&host.values[x.0 as usize], &host.values[lo.0 as usize], &host.values[hi.0 as usize]);
                let below = pick(&dev, xv, lv, batch, |x, l| x < l);
                let above = pick(&dev, xv, hv, batch, |x, h| x > h);
                let (xt, lt, ht) = (arg(*x), arg(*lo), arg(*hi));
                below.choose(lt, above.choose(ht, xt))
            }
            Node::Where(c, a, b) => mask(*c).choose(arg(*a), arg(*b)),
            Node::Reduce(op, x) => {
                let x = arg(*x);
                let r = match op {
                    crate::ir::ReduceOp::Mean => x.mean::<Rank0, Axis<0>>(),
                    crate::ir::ReduceOp::Sum => x.sum::<Rank0, Axis<0>>(),
                };
                r.broadcast_like(&(batch,))
            }
            Node::Datum(_)
            | Node::Param(_)
            | Node::Const(_)
            | Node::Compare(..)
            | Node::Sign { .. }
            | Node::StopGrad(_)
            | Node::Group(..) => {
                unreachable!("internal error: untaped node {k} marked live")
            }
        };
        let (out, t) = out.split_tape();
        tape = tape.merge(t);
        vals[k] = Some(out);
    }
    let loss_vec = operand(&dev, &vals, &host, obj.loss, batch);
    // The loss node is batch-reduced, so all entries are equal; their mean is the value, with gradient 1.
    let (loss, t) = loss_vec.mean::<Rank0, Axis<0>>().split_tape();
    LossGraph { loss: loss.put_tape(tape.merge(t)), host }
}

/// A node's value as a taped vector: its dfdx tensor if it is on the tape, else the host value as a constant.
fn operand<D: Backend>(
    dev: &D,
    vals: &[Option<Tensor<(usize,), f32, D>>],
    host: &Evaluation,
    id: NodeId,
    batch: usize,
) -> Vector<D> {
    match &vals[id.0 as usize] {
        Some(t) => t.retaped::<OwnedTape<f32, D>>(),
        None => {
            let v = &host.values[id.0 as usize];
            let data: Vec<f32> = (0..batch).map(|i| (if v.len() == 1 { v[0] } else { v[i] }) as f32).collect();
            upload(dev, &data, (batch,)).retaped::<OwnedTape<f32, D>>()
        }
    }
}

fn host_mask<D: Backend>(dev: &D, v: &[f64], batch: usize, f: impl Fn(f64) -> bool) -> Tensor<(usize,), bool, D> {
    let data: Vec<bool> = (0..batch).map(|i| f(if v.len() == 1 { v[0] } else { v[i] })).collect();
    upload(dev, &data, (batch,))
}

fn pick<D: Backend>(
    dev: &D,
    a: &[f64],
    b: &[f64],
    batch: usize,
    f: impl Fn(f64, f64) -> bool,
) -> Tensor<(usize,), bool, D> {
    let at = |v: &[f64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    let data: Vec<bool> = (0..batch).map(|i| f(at(a, i), at(b, i))).collect();
    upload(dev, &data, (batch,))
}

fn unary<D: Backend>(op: UnOp, x: Vector<D>) -> Vector<D> {
    let ones = |x: &Vector<D>| x.device().ones_like(x.shape());
    match op {
        UnOp::Neg => x.negate(),
        // bce_with_logits(z, 1) = softplus(-z), computed stably by dfdx.
        UnOp::LogSigmoid => {
            let one = ones(&x);
            x.bce_with_logits(one).negate()
        }
        UnOp::Softplus => {
            let one = ones(&x);
            x.negate().bce_with_logits(one)
        }
        UnOp::Sigmoid => x.sigmoid(),
        UnOp::Relu => x.relu(),
        UnOp::Exp => x.exp(),
        UnOp::Log => x.ln(),
        UnOp::Log1p => (x + 1.0).ln(),
        UnOp::Square => x.square(),
        UnOp::Abs => x.abs(),
        UnOp::Sqrt => x.sqrt(),
        UnOp::Tanh => x.tanh(),
        UnOp::Expm1 => unreachable!("internal error: expm1 needs its host mask (see `expm1`)"),
    }
}

/// `e^x - 1` in f32 without the cancellation of `exp(x) - 1` near 0: where `near` (|x| < 1) it is
/// `2t / (1 - t)` with `t = tanh(x / 2)` (exact algebra, every factor accurate), elsewhere `exp(x) - 1`. Each
/// branch reads `x` only where it is chosen (0 elsewhere), so neither produces a non-finite value or gradient.
fn expm1<D: Backend>(near: Tensor<(usize,), bool, D>, x: Vector<D>) -> Vector<D> {
    let dev = x.device().clone();
    let shape = *x.shape();
    let zeros = || dev.zeros_like(&shape).retaped::<OwnedTape<f32, D>>();
    let (xv, tape) = x.split_tape();
    let small = near.clone().choose(xv.clone().put_tape(tape), zeros());
    let large = near.clone().choose(zeros(), xv.retaped::<OwnedTape<f32, D>>());
    let (t, tape) = (small * 0.5).tanh().split_tape();
    let ratio = (t.clone().put_tape(tape) * 2.0) / (t.retaped::<OwnedTape<f32, D>>().negate() + 1.0);
    near.choose(ratio, large.exp() - 1.0)
}

/// Nodes on the tape that the loss depends on (the only ones built as dfdx operations).
fn live_taped(obj: &Objective) -> Vec<bool> {
    let taped = obj.taped();
    let mut live = vec![false; obj.nodes.len()];
    live[obj.loss.0 as usize] = taped[obj.loss.0 as usize];
    for k in (0..obj.nodes.len()).rev() {
        if !live[k] {
            continue;
        }
        let mut mark = |id: &NodeId| {
            if taped[id.0 as usize] {
                live[id.0 as usize] = true;
            }
        };
        match &obj.nodes[k] {
            Node::Unary(_, x) | Node::Reduce(_, x) => mark(x),
            Node::Binary(_, a, b) => {
                mark(a);
                mark(b);
            }
            Node::Clamp(x, lo, hi) => {
                mark(x);
                mark(lo);
                mark(hi);
            }
            Node::Where(_, a, b) => {
                mark(a);
                mark(b);
            }
            _ => {}
        }
    }
    live
}
