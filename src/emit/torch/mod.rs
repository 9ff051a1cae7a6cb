//! `seppoc emit --target torch`: a bound objective as a self-contained Python module that needs only torch.
//!
//! The module defines `objective(inputs, params=None, reduce=None) -> (loss, per_sample, logs)` over the leaves
//! and data values that `seppoc explain` names (INPUTS: leaves, then datums), one line per IR node in the IR's
//! order, and `PLAN` (version 2), what a training step must compute: data kind, ties and data fields, noise
//! coupling and draws, views, leaves (`err`/`dist`), datums, one batched pass per model, reference samples and
//! pool. Gradient is cut exactly where the IR is untaped: frozen-model leaves, datums and `stopgrad` nodes are
//! `.detach()`ed, and comparisons and `sign` build their values from constants, so no backward path exists
//! through them. Min, max, clamp and `where` send the gradient where the f64 oracle does (to the first operand at
//! ties), and the stable forms are the oracle's (`logsigmoid`, `log1p`, softplus as `-logsigmoid(-x)`).
//!
//! Every op whose derivative depends on its operands (`*`, `/`, `pow`, `log`, `sqrt`, `exp`, ...) is a small
//! `torch.autograd.Function` whose backward passes no gradient where the gradient reaching it is exactly 0, as the
//! oracle's reverse pass skips zero adjoints: the branch a `where`/`min`/`max`/`clamp` did not select then gives
//! 0, not autograd's `0 * inf = NaN` (MaPO's `a / expm1(a)` at an error of exactly 0).
//!
//! `reduce` hook: every batch reduction, the loss's own included, is `reduce(local sum)`, a mean divided by
//! `reduce(local count)`; a data-parallel trainer passes an all-reduce sum with gradient, so every process gets
//! the global batch's loss (`PLAN["global_loss"]`), batch statistics such as KTO's reference point included, and
//! DDP's gradient averaging gives the 1-process gradient of the global batch. `per_sample` stays local.
//! Output is deterministic: same objective and values, same bytes.

use crate::ir::{BinOp, Bound, CmpOp, Datum, GroupOp, ModelRef, Node, NodeId, ReduceOp, UnOp};
mod plan;

use plan::{plan, py_float, py_str, py_tuple, Py};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The generated module for a bound objective; `canonical` is its normalised source (`seppoc fmt`), which the
/// module carries with its SHA-256.
pub fn emit(obj: &Bound, canonical: &str) -> String {
    let sha256 = format!("{:x}", Sha256::digest(canonical.as_bytes()));
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "{} --target torch from objective `{}`; do not edit (regenerate it).",
        super::GENERATED_MARKER,
        obj.name
    );
    w.push_str(&header_doc(obj));
    let _ = writeln!(w, "import math\n\nimport torch\nimport torch.nn.functional as F\n");
    let _ = writeln!(w, "NAME = {}", py_str(&obj.name));
    w.push_str("# The objective's normalised source (`seppoc fmt`) and the SHA-256 of that text.\nSOURCE = (\n");
    for line in canonical.split_inclusive('\n') {
        let _ = writeln!(w, "    {}", py_str(line));
    }
    let _ = writeln!(w, ")\nSOURCE_SHA256 = {}", py_str(&sha256));
    let params: Vec<(String, Py)> = obj.named_values().map(|(n, v)| (n.to_string(), Py::Float(v))).collect();
    let _ =
        writeln!(w, "# Parameter values bound at emit time (`--set` applied); `objective(params=...)` overrides them.");
    let _ = writeln!(w, "PARAMS = {}", Py::Dict(params).render(0));
    let domains = obj
        .params
        .iter()
        .map(|p| {
            let d = match p.domain {
                Some((lo, lc, hi, hc)) => {
                    Py::List(vec![Py::Float(lo), Py::Bool(lc), Py::Float(hi), Py::Bool(hc), Py::Bool(p.integer)])
                }
                None => Py::List(vec![
                    Py::Float(f64::NEG_INFINITY),
                    Py::Bool(false),
                    Py::Float(f64::INFINITY),
                    Py::Bool(false),
                    Py::Bool(p.integer),
                ]),
            };
            (p.name.clone(), d)
        })
        .collect();
    let _ = writeln!(w, "# name -> [lo, lo_closed, hi, hi_closed, integer]");
    let _ = writeln!(w, "PARAM_DOMAINS = {}", Py::Dict(domains).render(0));
    // Leaves first, then the data values, as `seppoc explain` lists them.
    let names: Vec<String> = obj.inputs.iter().map(|i| i.name()).chain(obj.datums.iter().map(Datum::name)).collect();
    let _ = writeln!(w, "INPUTS = {}", py_tuple(names.iter()));
    let grad = obj.inputs.iter().filter(|i| i.model == ModelRef::Policy).map(|i| i.name()).collect::<Vec<_>>();
    let _ = writeln!(w, "GRAD_INPUTS = {}", py_tuple(grad.iter()));
    let _ = writeln!(w, "LOGS = {}", py_tuple(obj.logs.iter().map(|(n, _)| n)));
    let _ = writeln!(w, "PLAN = {}\n\n", plan(obj).render(0));
    w.push_str(&function(obj));
    w.push_str(HELPERS);
    if obj.nodes.iter().any(|n| matches!(n, Node::Group(..))) {
        w.push_str(GROUP_HELPER);
    }
    s
}

fn header_doc(obj: &Bound) -> String {
    format!(
        r#""""Objective `{name}` compiled from seppoc's checked IR to PyTorch.

objective(inputs, params=None, reduce=None) -> (loss, per_sample, logs)
  inputs: dict from every name in INPUTS to a 1-D tensor, one value per sample (this process's rows):
          - leaves (PLAN["leaves"]): err(M, view) = per-sample mean over all non-batch dims of
            (pred_M(x_t, t, c) - target)^2, target the family's (eps, v, or eps - x0 for a flow);
            dist(M, R, view) = per-sample mean of (pred_M - pred_R)^2 on the same noised input, pred_R without
            gradient. All leaves have one length (the batch), dtype and device. Leaves in GRAD_INPUTS come from
            the policy's taped forward; the others are detached here.
          - data values (PLAN["datums"]), detached and cast to the leaves' dtype and device: timestep, alpha,
            sigma, snr of a view's draw; label, weight, reward per sample; progress and num_timesteps one value
            per step (a 1-element tensor, or a length-B tensor of that one value).{online}
  params: optional dict overriding PARAMS by name (checked against PARAM_DOMAINS).
  reduce: optional callable reduce(t) -> t that SUMS a tensor over the processes of a data-parallel run, with
          gradient (e.g. torch.distributed.nn.functional.all_reduce). Every batch reduction (mean, sum, the
          loss's own) is reduce(local sum), a mean divided by reduce(local count), so each process computes the
          loss of the global batch; with DDP's gradient averaging the update is the 1-process one on the global
          batch (PLAN["global_loss"] is True). None: this process's batch is the batch.
  Returns the scalar loss, the per-sample losses of this process's rows (None unless the loss is a batch mean
  or sum of per-sample values) and a dict of logged scalars (detached).
Time values (seppoc's trainer, src/model/time_values.rs): a discrete eps/v schedule with index t in 0..T-1 has
timestep = (t+1)/T, alpha = sqrt(abar_t), sigma = sqrt(1-abar_t), snr = abar_t/(1-abar_t); a flow
x_t = (1-s) x0 + s eps (s the noise level after any schedule shift, the value the model is conditioned on,
/1000 for SD3) has sigma = timestep = s, alpha = 1-s, snr = alpha^2/sigma^2. progress = updates applied before
this one / updates of the run; num_timesteps = T (scheduler.config.num_train_timesteps).
PLAN says what a training step computes: data kind, ties, data fields, noise coupling and draws, views (images
under one (t, eps) draw, in the order seppoc draws noise), leaves, data values, one batched pass per model,
reference samples, the pool and references (see the PLAN v2 description in seppoc's docs/emit.md).
Gradient rule: every elementwise op passes no gradient where the gradient reaching it is exactly 0, as seppoc's
f64 oracle does, so the branch where/min/max/clamp did not select contributes 0 even where its derivative is
infinite (log, sqrt or a division at 0).
"""

"#,
        name = obj.name,
        online = online_doc(obj),
    )
}

/// The docstring's lines on groups and generated images' rewards, for an objective that has them.
fn online_doc(obj: &Bound) -> String {
    let mut s = String::new();
    if obj.datums.iter().any(Datum::is_online_reward) {
        s.push_str(
            "\n          - reward_sampleK (PLAN[\"online_rewards\"]): the reward model's score of each generated image of\n            \
             sample K, per row (a data image's reward is the data's column).",
        );
    }
    if obj.group() > 1 {
        s.push_str(
            "\n          - groups (PLAN[\"group\"] = K): rows come in consecutive blocks of K rows per prompt, each row with\n            \
             its own generated image and noise draw; group_mean and group_std (population, ddof 0) reduce over\n            \
             each block of this process's rows, which must hold whole groups, without gradient.",
        );
    }
    s
}

/// Whether each node has one value per sample (else one value for the batch), as the oracle decides it.
fn per_sample(obj: &Bound) -> Vec<bool> {
    let mut b = vec![false; obj.nodes.len()];
    for (k, node) in obj.nodes.iter().enumerate() {
        let at = |id: &NodeId| b[id.0 as usize];
        b[k] = match node {
            Node::Input(_) => true,
            Node::Datum(d) => !obj.datums[d.0 as usize].per_step(),
            Node::Param(_) | Node::Const(_) | Node::Reduce(..) => false,
            Node::Unary(_, x) | Node::StopGrad(x) | Node::Sign { arg: x, .. } | Node::Group(_, x) => at(x),
            Node::Binary(_, a, c) | Node::Compare(_, a, c) => at(a) || at(c),
            Node::Clamp(x, y, z) | Node::Where(x, y, z) => at(x) || at(y) || at(z),
        };
    }
    b
}

fn function(obj: &Bound) -> String {
    let taped = obj.taped();
    let mut w = String::new();
    w.push_str("def objective(inputs, params=None, reduce=None):\n");
    w.push_str("    \"\"\"The loss, per-sample losses and logs of this objective (see the module docstring).\"\"\"\n");
    w.push_str("    p = _params(params)\n    x, batch, dtype, device = _inputs(inputs)\n");
    w.push_str("    red = _local if reduce is None else reduce\n\n");
    w.push_str("    def c(v):\n        return torch.full((), v, dtype=dtype, device=device)\n\n");
    if obj.nodes.iter().any(|n| matches!(n, Node::Reduce(ReduceOp::Mean, _))) {
        w.push_str("    count = red(c(batch))  # samples over all processes\n");
    }
    let n = |id: &NodeId| format!("n{}", id.0);
    let per = per_sample(obj);
    for (k, node) in obj.nodes.iter().enumerate() {
        let mark = if taped[k] { "taped" } else { "no gradient" };
        // Ops whose derivative depends on their operands go through `_op` (a zero gradient stays exactly 0).
        let op = |name: &str, args: &[&NodeId]| {
            let args: Vec<String> = args.iter().map(|a| n(a)).collect();
            format!("_op({}, {})", py_str(name), args.join(", "))
        };
        let expr = match node {
            Node::Input(i) => {
                let input = &obj.inputs[i.0 as usize];
                match input.model {
                    ModelRef::Policy => format!("x[{}]", py_str(&input.name())),
                    ModelRef::Reference(_) => format!("x[{}].detach()", py_str(&input.name())),
                }
            }
            Node::Datum(d) => format!("x[{}].detach()", py_str(&obj.datums[d.0 as usize].name())),
            Node::Param(i) => format!("c(p[{}])", py_str(&obj.params[i.0 as usize].name)),
            Node::Const(bits) => format!("c({})", py_float(f64::from_bits(*bits))),
            Node::Unary(un, a) => match un {
                UnOp::Neg => format!("-{}", n(a)),
                // Its backward is a mask (`threshold_backward`), never a product with a derivative.
                UnOp::Relu => format!("torch.relu({})", n(a)),
                UnOp::LogSigmoid => op("logsigmoid", &[a]),
                UnOp::Sigmoid => op("sigmoid", &[a]),
                UnOp::Softplus => op("softplus", &[a]),
                UnOp::Exp => op("exp", &[a]),
                UnOp::Log => op("log", &[a]),
                UnOp::Log1p => op("log1p", &[a]),
                UnOp::Square => op("square", &[a]),
                UnOp::Abs => op("abs", &[a]),
                UnOp::Expm1 => op("expm1", &[a]),
                UnOp::Sqrt => op("sqrt", &[a]),
                UnOp::Tanh => op("tanh", &[a]),
            },
            Node::Binary(bin, a, b) => match bin {
                BinOp::Add => format!("{} + {}", n(a), n(b)),
                BinOp::Sub => format!("{} - {}", n(a), n(b)),
                BinOp::Mul => op("mul", &[a, b]),
                BinOp::Div => op("div", &[a, b]),
                BinOp::Pow => op("pow", &[a, b]),
                BinOp::Min => format!("torch.where({a} <= {b}, {a}, {b})", a = n(a), b = n(b)),
                BinOp::Max => format!("torch.where({a} >= {b}, {a}, {b})", a = n(a), b = n(b)),
            },
            Node::Clamp(x, lo, hi) => {
                let (x, lo, hi) = (n(x), n(lo), n(hi));
                format!("torch.where({x} < {lo}, {lo}, torch.where({x} > {hi}, {hi}, {x}))")
            }
            Node::Compare(op, a, b) => {
                let sym = match op {
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                };
                format!("({} {sym} {}).to(dtype)", n(a), n(b))
            }
            Node::Sign { arg, tie } => {
                let a = n(arg);
                format!(
                    "torch.where({a} > 0, c(1.0), torch.where({a} < 0, c(-1.0), c({})))",
                    py_float(f64::from_bits(*tie))
                )
            }
            Node::Where(cond, a, b) => format!("torch.where({} != 0, {}, {})", n(cond), n(a), n(b)),
            Node::StopGrad(a) => format!("{}.detach()", n(a)),
            Node::Reduce(ReduceOp::Sum, a) => format!("red({}.expand(batch).sum())", n(a)),
            Node::Reduce(ReduceOp::Mean, a) => format!("red({}.expand(batch).sum()) / count", n(a)),
            // One value for the batch is one block of equal values: its mean is itself, its deviation 0.
            Node::Group(GroupOp::Mean, a) if !per[a.0 as usize] => format!("{}.detach()", n(a)),
            Node::Group(GroupOp::Std, a) if !per[a.0 as usize] => format!("torch.zeros_like({}).detach()", n(a)),
            Node::Group(op, a) => format!("_group({}, {}, {}, batch)", n(a), py_str(op.name()), obj.group()),
        };
        let _ = writeln!(w, "    n{k} = {expr}  # {mark}");
    }
    let per_sample = match obj.node(obj.loss) {
        Node::Reduce(_, x) if per[x.0 as usize] => n(x),
        _ => "None".to_string(),
    };
    let _ = writeln!(w, "    loss = n{}\n    per_sample = {per_sample}", obj.loss.0);
    let logs: Vec<String> = obj.logs.iter().map(|(name, id)| format!("{}: {}.detach()", py_str(name), n(id))).collect();
    let _ = writeln!(w, "    logs = {{{}}}", logs.join(", "));
    w.push_str("    return loss, per_sample, logs\n");
    w
}

/// `group_mean` / `group_std`, appended to the helpers of a module that has a group statistic.
const GROUP_HELPER: &str = r#"

def _group(x, name, k, batch):
    """group_mean / group_std (population, ddof 0, as numpy's default) over consecutive blocks of k rows,
    broadcast back to the block's rows, without gradient. This process's rows must be whole groups."""
    if batch % k:
        raise ValueError(f"objective {NAME!r}: {name} reduces over groups of {k} rows, but the batch has {batch} "
                         f"rows, not a multiple of {k}: give {k} consecutive rows per prompt")
    g = x.detach().expand(batch).reshape(-1, k)
    # As seppoc's oracle: deviations from each block's first value (a constant block: its value, deviation 0).
    first = g[:, :1]
    shift = (g - first).mean(1, keepdim=True)
    v = first + shift if name == "group_mean" else ((g - first - shift) ** 2).mean(1, keepdim=True).sqrt()
    return v.expand(-1, k).reshape(batch)
"#;

const HELPERS: &str = r#"

def _local(t):
    return t


def _zero(g):
    return torch.zeros((), dtype=g.dtype, device=g.device)


# name -> (forward, derivatives with respect to each operand): the f64 oracle's formulas (src/ir/eval.rs).
_OPS = {
    "mul": (lambda a, b: a * b, lambda a, b: (b, a)),
    "div": (lambda a, b: a / b, lambda a, b: (1 / b, -a / (b * b))),
    # d/db = a^b ln a exists for a > 0 only; the exponent never carries gradient (the checker keeps it so).
    "pow": (torch.pow, lambda a, b: (torch.where(b == 0, _zero(a), b * torch.pow(a, b - 1)),
                                     torch.where(a > 0, torch.pow(a, b) * torch.log(a), _zero(a)))),
    "log": (torch.log, lambda a: (1 / a,)),
    "log1p": (torch.log1p, lambda a: (1 / (1 + a),)),
    "sqrt": (torch.sqrt, lambda a: (0.5 / torch.sqrt(a),)),
    "square": (lambda a: a * a, lambda a: (2 * a,)),
    "exp": (torch.exp, lambda a: (torch.exp(a),)),
    "expm1": (torch.expm1, lambda a: (torch.exp(a),)),
    "abs": (torch.abs, lambda a: (torch.sign(a),)),
    "sigmoid": (torch.sigmoid, lambda a: (torch.sigmoid(a) * (1 - torch.sigmoid(a)),)),
    "logsigmoid": (F.logsigmoid, lambda a: (torch.sigmoid(-a),)),
    "softplus": (lambda a: -F.logsigmoid(-a), lambda a: (torch.sigmoid(a),)),
    "tanh": (torch.tanh, lambda a: (1 - torch.tanh(a) ** 2,)),
}


class _Op(torch.autograd.Function):
    """An elementwise op of _OPS whose backward gives an operand g * d(op)/d(operand) where the incoming gradient
    g is non-zero and exactly 0 where it is 0, as the oracle does: a value no path to the loss selects (the
    branch a where/min/max/clamp did not choose) then contributes 0, even where its derivative is inf or NaN
    (log or sqrt at 0, a division by 0), instead of autograd's 0 * inf = NaN."""

    @staticmethod
    def forward(ctx, name, *args):
        ctx.name = name
        ctx.save_for_backward(*args)
        return _OPS[name][0](*args)

    @staticmethod
    def backward(ctx, g):
        args = ctx.saved_tensors
        out = [None]
        for k, (a, d) in enumerate(zip(args, _OPS[ctx.name][1](*args))):
            if not ctx.needs_input_grad[k + 1]:
                out.append(None)
                continue
            ga = torch.where(g != 0, g * d, _zero(g))
            out.append(ga.sum() if a.dim() == 0 and ga.dim() > 0 else ga)
        return tuple(out)


def _op(name, *args):
    return _Op.apply(name, *args)


def _params(params):
    p = dict(PARAMS)
    for name, value in (params or {}).items():
        if name not in PARAMS:
            raise KeyError(f"objective {NAME!r} has no parameter {name!r} (declared: {', '.join(PARAMS) or 'none'})")
        lo, lo_closed, hi, hi_closed, integer = PARAM_DOMAINS[name]
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"parameter {name!r} = {value} is not finite")
        if integer and value != int(value):
            raise ValueError(f"parameter {name!r} is declared int; {value} is not an integer")
        if value < lo or (value == lo and not lo_closed) or value > hi or (value == hi and not hi_closed):
            raise ValueError(f"parameter {name!r} = {value} is outside its domain")
        p[name] = value
    return p


def _inputs(inputs):
    missing = [name for name in INPUTS if name not in inputs]
    if missing:
        raise KeyError(f"objective {NAME!r}: missing inputs {missing} (inputs: {list(INPUTS)})")
    for name in INPUTS:
        v = inputs[name]
        if not torch.is_tensor(v) or v.dim() != 1 or v.dtype == torch.bool or v.is_complex():
            raise ValueError(f"input {name!r} must be a 1-D real tensor (one value per sample)")
    leaves = [name for name in INPUTS if name in PLAN["leaves"]]
    first = inputs[leaves[0]]
    batch, dtype, device = first.shape[0], first.dtype, first.device
    if batch == 0:
        raise ValueError("empty batch")
    x = {}
    for name in leaves:
        v = inputs[name]
        if not v.is_floating_point() or v.shape != first.shape or v.dtype != dtype or v.device != device:
            raise ValueError(f"leaf {name!r} differs from {leaves[0]!r} in length, dtype or device")
        x[name] = v
    for name, datum in PLAN["datums"].items():
        v = inputs[name]
        if datum["per_step"]:
            if v.shape[0] not in (1, batch) or not bool((v == v[0]).all()):
                raise ValueError(f"{name!r} is one value per step: give a 1-element tensor or {batch} equal values")
            x[name] = v[0].to(dtype=dtype, device=device)
        elif v.shape[0] != batch:
            raise ValueError(f"{name!r} has {v.shape[0]} values for a batch of {batch} (one per sample)")
        else:
            x[name] = v.to(dtype=dtype, device=device)
    return x, batch, dtype, device
"#;
