//! `seppoc emit --target torch`: a bound objective as a self-contained Python module that needs only torch.
//!
//! The module defines `objective(inputs, params=None) -> (loss, per_sample, logs)` over the leaves that
//! `seppoc explain` names, one line per IR node in the IR's order, and `PLAN`, what a training step must
//! compute (passes, reference samples, pool, noise coupling). Gradient is cut exactly where the IR is untaped:
//! frozen-model leaves and `stopgrad` nodes are `.detach()`ed, and comparisons and `sign` build their values
//! from constants, so no backward path exists through them. Min, max, clamp and `where` send the gradient where
//! the f64 oracle does (to the first operand at ties), and the stable forms are the oracle's (`logsigmoid`,
//! `log1p`, softplus as `-logsigmoid(-x)`). Output is deterministic: same objective and values, same bytes.

use crate::check::{Draw, Noise, SamplerKind, Strategy};
use crate::ir::{BinOp, Bound, CmpOp, ImageRef, ModelRef, Node, NodeId, ReduceOp, UnOp};
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
    let names: Vec<String> = obj.inputs.iter().map(|i| i.name()).collect();
    let _ = writeln!(w, "INPUTS = {}", py_tuple(names.iter()));
    let grad = obj.inputs.iter().filter(|i| i.model == ModelRef::Policy).map(|i| i.name()).collect::<Vec<_>>();
    let _ = writeln!(w, "GRAD_INPUTS = {}", py_tuple(grad.iter()));
    let _ = writeln!(w, "LOGS = {}", py_tuple(obj.logs.iter().map(|(n, _)| n)));
    let _ = writeln!(w, "PLAN = {}\n\n", plan(obj).render(0));
    w.push_str(&function(obj));
    w.push_str(HELPERS);
    s
}

fn header_doc(obj: &Bound) -> String {
    format!(
        r#""""Objective `{name}` compiled from seppoc's checked IR to PyTorch.

objective(inputs, params=None) -> (loss, per_sample, logs)
  inputs: dict from every name in INPUTS to a 1-D tensor of per-sample denoising errors err(model, images)
          (mean over elements of (eps_pred - eps)^2), all of one length (the batch), dtype and device.
          Leaves in GRAD_INPUTS come from the policy's taped forward; the others (frozen models) are detached.
  params: optional dict overriding PARAMS by name (checked against PARAM_DOMAINS).
  Returns the scalar loss, the per-sample losses (None unless the loss is a batch mean/sum of per-sample
  values) and a dict of logged scalars (detached).
PLAN says which (model, images) errors and reference samples a training step needs, the reference pool and
the noise coupling; `python/seppoc_train.py` in the seppoc repository is a trainer that follows it.
"""

"#,
        name = obj.name
    )
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
            Node::Unary(_, x) | Node::StopGrad(x) | Node::Sign { arg: x, .. } => at(x),
            Node::Binary(_, a, c) | Node::Compare(_, a, c) => at(a) || at(c),
            Node::Clamp(x, y, z) | Node::Where(x, y, z) => at(x) || at(y) || at(z),
        };
    }
    b
}

fn function(obj: &Bound) -> String {
    let taped = obj.taped();
    let mut w = String::new();
    w.push_str("def objective(inputs, params=None):\n");
    w.push_str("    \"\"\"The loss, per-sample losses and logs of this objective (see the module docstring).\"\"\"\n");
    w.push_str("    p = _params(params)\n    x, batch, dtype, device = _leaves(inputs)\n\n");
    w.push_str("    def c(v):\n        return torch.full((), v, dtype=dtype, device=device)\n\n");
    let n = |id: &NodeId| format!("n{}", id.0);
    for (k, node) in obj.nodes.iter().enumerate() {
        let mark = if taped[k] { "taped" } else { "no gradient" };
        let expr = match node {
            Node::Input(i) => {
                let input = &obj.inputs[i.0 as usize];
                match input.model {
                    ModelRef::Policy => format!("x[{}]", py_str(&input.name())),
                    ModelRef::Reference(_) => format!("x[{}].detach()", py_str(&input.name())),
                }
            }
            // Data values are inputs without gradient; `unsupported` keeps them out of `seppoc emit` for now.
            Node::Datum(d) => format!("x[{}].detach()", py_str(&obj.datums[d.0 as usize].name())),
            Node::Param(i) => format!("c(p[{}])", py_str(&obj.params[i.0 as usize].name)),
            Node::Const(bits) => format!("c({})", py_float(f64::from_bits(*bits))),
            Node::Unary(op, a) => {
                let a = n(a);
                match op {
                    UnOp::Neg => format!("-{a}"),
                    UnOp::LogSigmoid => format!("F.logsigmoid({a})"),
                    UnOp::Sigmoid => format!("torch.sigmoid({a})"),
                    UnOp::Softplus => format!("-F.logsigmoid(-{a})"),
                    UnOp::Relu => format!("torch.relu({a})"),
                    UnOp::Exp => format!("torch.exp({a})"),
                    UnOp::Log => format!("torch.log({a})"),
                    UnOp::Log1p => format!("torch.log1p({a})"),
                    UnOp::Square => format!("{a} * {a}"),
                    UnOp::Abs => format!("torch.abs({a})"),
                    UnOp::Expm1 => format!("torch.expm1({a})"),
                    UnOp::Sqrt => format!("torch.sqrt({a})"),
                    UnOp::Tanh => format!("torch.tanh({a})"),
                }
            }
            Node::Binary(op, a, b) => {
                let (a, b) = (n(a), n(b));
                match op {
                    BinOp::Add => format!("{a} + {b}"),
                    BinOp::Sub => format!("{a} - {b}"),
                    BinOp::Mul => format!("{a} * {b}"),
                    BinOp::Div => format!("{a} / {b}"),
                    BinOp::Min => format!("torch.where({a} <= {b}, {a}, {b})"),
                    BinOp::Max => format!("torch.where({a} >= {b}, {a}, {b})"),
                    BinOp::Pow => format!("torch.pow({a}, {b})"),
                }
            }
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
            Node::Reduce(op, a) => {
                let r = if *op == ReduceOp::Mean { "mean" } else { "sum" };
                format!("{}.expand(batch).{r}()", n(a))
            }
        };
        let _ = writeln!(w, "    n{k} = {expr}  # {mark}");
    }
    let per = per_sample(obj);
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

const HELPERS: &str = r#"

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


def _leaves(inputs):
    missing = [name for name in INPUTS if name not in inputs]
    if missing:
        raise KeyError(f"objective {NAME!r}: missing leaves {missing} (leaves: {list(INPUTS)})")
    first = inputs[INPUTS[0]]
    for name in INPUTS:
        v = inputs[name]
        if not torch.is_tensor(v) or v.dim() != 1 or not v.is_floating_point():
            raise ValueError(f"leaf {name!r} must be a 1-D floating-point tensor (one value per sample)")
        if v.shape != first.shape or v.dtype != first.dtype or v.device != first.device:
            raise ValueError(f"leaf {name!r} differs from {INPUTS[0]!r} in length, dtype or device")
    if first.shape[0] == 0:
        raise ValueError("empty batch")
    return {name: inputs[name] for name in INPUTS}, first.shape[0], first.dtype, first.device
"#;

/// The per-step plan as data.
fn plan(obj: &Bound) -> Py {
    let s = |v: &str| Py::Str(v.to_string());
    let model = |m: &ModelRef| match m {
        ModelRef::Policy => s("policy"),
        ModelRef::Reference(r) => s(r),
    };
    let images = |i: ImageRef| match i {
        ImageRef::Winner => s("winner"),
        ImageRef::Loser => s("loser"),
        ImageRef::Image => s("image"),
        ImageRef::Sample(k) => Py::Str(format!("sample{k}")),
    };
    let p = obj.plan();
    let leaves = obj
        .inputs
        .iter()
        .map(|i| {
            let d = vec![
                ("model".into(), model(&i.model)),
                ("images".into(), images(i.images)),
                ("grad".into(), Py::Bool(i.model == ModelRef::Policy)),
            ];
            (i.name(), Py::Dict(d))
        })
        .collect();
    let passes = p
        .passes
        .iter()
        .map(|pass| {
            Py::Dict(vec![
                ("model".into(), model(&pass.model)),
                ("taped".into(), Py::Bool(pass.model == ModelRef::Policy)),
                ("images".into(), Py::List(pass.images.iter().map(|v| images(v.images)).collect())),
            ])
        })
        .collect();
    let references = obj
        .references
        .iter()
        .map(|r| {
            let d = match r.strategy {
                Strategy::Initial => vec![("strategy".into(), s("initial"))],
                Strategy::Latest => vec![("strategy".into(), s("latest"))],
                Strategy::Uniform(draw) => vec![
                    ("strategy".into(), s("uniform")),
                    ("draw".into(), s(if draw == Draw::Step { "step" } else { "sample" })),
                ],
                Strategy::Ema { decay } => vec![("strategy".into(), s("ema")), ("decay".into(), Py::Float(decay))],
            };
            (r.name.clone(), Py::Dict(d))
        })
        .collect();
    let samples = obj
        .samples
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            Py::Dict(vec![
                ("images".into(), Py::Str(format!("sample{k}"))),
                ("model".into(), s(&spec.model)),
                ("sampler".into(), s(if spec.sampler == SamplerKind::Ddim { "ddim" } else { "ddpm" })),
                ("steps".into(), Py::Int(spec.steps)),
                ("cfg".into(), Py::Float(spec.cfg)),
                ("eta".into(), Py::Float(spec.eta)),
            ])
        })
        .collect();
    let pool = match obj.pool {
        Some(pool) => Py::Dict(vec![("every".into(), Py::Int(pool.every)), ("keep".into(), Py::Int(pool.keep))]),
        None => Py::None,
    };
    Py::Dict(vec![
        ("data".into(), s(obj.data.word())),
        ("noise".into(), s(if obj.noise == Noise::Shared { "shared" } else { "independent" })),
        ("pool".into(), pool),
        ("references".into(), Py::Dict(references)),
        ("samples".into(), Py::List(samples)),
        ("leaves".into(), Py::Dict(leaves)),
        ("passes".into(), Py::List(passes)),
        (
            "nfe_per_prompt".into(),
            Py::Dict(vec![("passes".into(), Py::Int(p.nfe_passes)), ("sampling".into(), Py::Int(p.nfe_sampling))]),
        ),
    ])
}

/// A Python literal, rendered with keys in the given order.
enum Py {
    None,
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Dict(Vec<(String, Py)>),
}

impl Py {
    fn render(&self, indent: usize) -> String {
        let pad = "    ".repeat(indent + 1);
        let close = "    ".repeat(indent);
        match self {
            Py::None => "None".into(),
            Py::Bool(b) => if *b { "True" } else { "False" }.into(),
            Py::Int(i) => i.to_string(),
            Py::Float(f) => py_float(*f),
            Py::Str(s) => py_str(s),
            Py::List(items) if items.is_empty() => "[]".into(),
            Py::Dict(items) if items.is_empty() => "{}".into(),
            Py::List(items) if items.iter().all(Py::is_atom) => {
                format!("[{}]", items.iter().map(|i| i.render(0)).collect::<Vec<_>>().join(", "))
            }
            Py::Dict(items) if items.iter().all(|(_, v)| v.is_atom()) => {
                let inner: Vec<String> = items.iter().map(|(k, v)| format!("{}: {}", py_str(k), v.render(0))).collect();
                format!("{{{}}}", inner.join(", "))
            }
            Py::List(items) => {
                let inner: String = items.iter().map(|i| format!("{pad}{},\n", i.render(indent + 1))).collect();
                format!("[\n{inner}{close}]")
            }
            Py::Dict(items) => {
                let inner: String =
                    items.iter().map(|(k, v)| format!("{pad}{}: {},\n", py_str(k), v.render(indent + 1))).collect();
                format!("{{\n{inner}{close}}}")
            }
        }
    }

    fn is_atom(&self) -> bool {
        !matches!(self, Py::List(_) | Py::Dict(_))
    }
}

/// A float as a Python expression that reads back to the same f64.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        "math.nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "math.inf" } else { "-math.inf" }.into()
    } else {
        // Rust's `{:?}` is the shortest text that reads back exactly, always with a `.` or an exponent.
        format!("{f:?}")
    }
}

/// A string as a Python literal (a JSON string literal is one).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn py_tuple<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<String> = items.map(|s| py_str(s)).collect();
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}
