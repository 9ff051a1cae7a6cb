//! Checked program to IR. Infallible: whatever `check` accepts lowers; anything else is a seppoc bug.

use super::*;
use crate::check::Checked;
use crate::syntax::ast::{self, Expr, ExprKind, StmtKind};
use std::collections::HashMap;

/// What a name or expression stands for during lowering.
#[derive(Clone, Debug)]
enum Value {
    Node(NodeId),
    Model(ModelRef),
    Images(ImageRef),
    Prompt,
}

/// A name in scope: a value, or a numeric `let` binding, lowered again at each use so that inside
/// `draws(K, ...)` its leaves follow the draw (common subexpressions still share one node).
#[derive(Clone, Debug)]
enum Binding<'a> {
    Value(Value),
    Expr(&'a Expr),
}

struct Lowerer<'a> {
    checked: &'a Checked,
    inputs: Vec<Input>,
    datums: Vec<Datum>,
    nodes: Vec<Node>,
    spans: Vec<Span>,
    interned: HashMap<Node, NodeId>,
    env: HashMap<String, Binding<'a>>,
    /// `sample(...)` calls by their span, so lowering one again yields the same images.
    sample_at: HashMap<Span, u32>,
    n_samples: u32,
    /// The draw of the innermost enclosing `draws(K, ...)` iteration.
    draw: Option<u32>,
    /// Numeric bindings already lowered, by name and draw context (so chains of bindings inside `draws` cost
    /// one lowering per draw, not one per path).
    memo: HashMap<(String, Option<u32>), Value>,
}

/// Lowers a checked program to IR, sharing structurally equal subexpressions (CSE).
pub fn lower(checked: &Checked) -> Objective {
    let mut lw = Lowerer {
        checked,
        inputs: Vec::new(),
        datums: Vec::new(),
        nodes: Vec::new(),
        spans: Vec::new(),
        interned: HashMap::new(),
        env: HashMap::new(),
        sample_at: HashMap::new(),
        n_samples: 0,
        draw: None,
        memo: HashMap::new(),
    };
    for (k, p) in checked.params.iter().enumerate() {
        let id = lw.intern(Node::Param(ParamId(k as u32)), Span::default());
        lw.env.insert(p.name.clone(), Binding::Value(Value::Node(id)));
    }
    for r in &checked.references {
        lw.env.insert(r.name.clone(), Binding::Value(Value::Model(ModelRef::Reference(r.name.clone()))));
    }
    let mut loss = None;
    let mut logs = Vec::new();
    for stmt in &checked.file.stmts {
        match &stmt.kind {
            StmtKind::Let(name, e) => {
                let binding = match lw.expr(e) {
                    Value::Node(_) => Binding::Expr(e),
                    other => Binding::Value(other),
                };
                lw.env.insert(name.name.clone(), binding);
            }
            StmtKind::Log(name, e) => logs.push((name.name.clone(), lw.node(e))),
            StmtKind::Loss(e) => loss = Some(lw.node(e)),
            _ => {}
        }
    }
    let loss = loss.unwrap_or_else(|| panic!("internal error: a checked program has a loss"));
    Objective {
        name: checked.name.clone(),
        data: checked.data,
        noise: checked.noise,
        pool: checked.pool,
        params: checked.params.clone(),
        references: checked.references.clone(),
        samples: checked.samples.clone(),
        inputs: lw.inputs,
        datums: lw.datums,
        nodes: lw.nodes,
        spans: lw.spans,
        loss,
        logs,
    }
}

impl<'a> Lowerer<'a> {
    fn intern(&mut self, node: Node, span: Span) -> NodeId {
        if let Some(id) = self.interned.get(&node) {
            return *id;
        }
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node.clone());
        self.spans.push(span);
        self.interned.insert(node, id);
        id
    }

    fn constant(&mut self, v: f64, span: Span) -> NodeId {
        self.intern(Node::Const(v.to_bits()), span)
    }

    fn node(&mut self, e: &'a Expr) -> NodeId {
        match self.expr(e) {
            Value::Node(id) => id,
            other => panic!("internal error: checked expression {other:?} is not a number"),
        }
    }

    fn expr(&mut self, e: &'a Expr) -> Value {
        let span = e.span;
        let id = match &e.kind {
            ExprKind::Int(v) => self.constant(*v as f64, span),
            ExprKind::Real(v) => self.constant(*v, span),
            ExprKind::Name(n) => return self.name(n, span),
            ExprKind::Neg(x) => {
                let x = self.node(x);
                self.intern(Node::Unary(UnOp::Neg, x), span)
            }
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.node(a), self.node(b));
                let node = match op {
                    ast::BinOp::Add => Node::Binary(BinOp::Add, a, b),
                    ast::BinOp::Sub => Node::Binary(BinOp::Sub, a, b),
                    ast::BinOp::Mul => Node::Binary(BinOp::Mul, a, b),
                    ast::BinOp::Div => Node::Binary(BinOp::Div, a, b),
                    ast::BinOp::Lt => Node::Compare(CmpOp::Lt, a, b),
                    ast::BinOp::Le => Node::Compare(CmpOp::Le, a, b),
                    ast::BinOp::Gt => Node::Compare(CmpOp::Gt, a, b),
                    ast::BinOp::Ge => Node::Compare(CmpOp::Ge, a, b),
                    ast::BinOp::Eq => Node::Compare(CmpOp::Eq, a, b),
                    ast::BinOp::Ne => Node::Compare(CmpOp::Ne, a, b),
                };
                self.intern(node, span)
            }
            ExprKind::Call(f, args) => return self.call(&f.name, args, span),
        };
        Value::Node(id)
    }

    fn name(&mut self, n: &str, span: Span) -> Value {
        match n {
            "policy" => Value::Model(ModelRef::Policy),
            "winner" => Value::Images(ImageRef::Winner),
            "loser" => Value::Images(ImageRef::Loser),
            "image" => Value::Images(ImageRef::Image),
            "prompt" => Value::Prompt,
            "inf" => Value::Node(self.constant(f64::INFINITY, span)),
            "progress" => Value::Node(self.datum(Datum::Progress, span)),
            "num_timesteps" => Value::Node(self.datum(Datum::Timesteps, span)),
            "label" => Value::Node(self.datum(Datum::Label, span)),
            "weight" => Value::Node(self.datum(Datum::Weight, span)),
            _ => match self.env.get(n).cloned() {
                Some(Binding::Value(v)) => v,
                Some(Binding::Expr(e)) => {
                    let key = (n.to_string(), self.draw);
                    if let Some(v) = self.memo.get(&key) {
                        return v.clone();
                    }
                    let v = self.expr(e);
                    self.memo.insert(key, v.clone());
                    v
                }
                None => panic!("internal error: unresolved name `{n}`"),
            },
        }
    }

    fn datum(&mut self, d: Datum, span: Span) -> NodeId {
        let k = index_in(&mut self.datums, d);
        self.intern(Node::Datum(DatumId(k)), span)
    }

    /// The draw of a leaf call: its `draw = k`, else the enclosing `draws(...)` iteration's, else 0.
    fn draw_of(&self, args: &[ast::Arg]) -> u32 {
        let named = args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.name == "draw"));
        match named.and_then(|a| crate::check::const_value(&a.value)) {
            Some(k) => k as u32,
            None => self.draw.unwrap_or(0),
        }
    }

    /// `draws(K, x)`: `x` lowered once per draw `0..K`, summed and divided by K.
    fn draws(&mut self, k: &Expr, x: &'a Expr, span: Span) -> NodeId {
        let n = crate::check::const_value(k).unwrap_or(1.0).max(1.0) as u32;
        let outer = self.draw;
        let mut acc = None;
        for d in 0..n {
            self.draw = Some(d);
            let v = self.node(x);
            acc = Some(match acc {
                None => v,
                Some(a) => self.intern(Node::Binary(BinOp::Add, a, v), span),
            });
        }
        self.draw = outer;
        let sum = acc.unwrap_or_else(|| panic!("internal error: draws(0, ...)"));
        if n == 1 {
            return sum;
        }
        let kn = self.constant(f64::from(n), span);
        self.intern(Node::Binary(BinOp::Div, sum, kn), span)
    }

    fn call(&mut self, func: &str, args: &'a [ast::Arg], span: Span) -> Value {
        let pos: Vec<&Expr> = args.iter().filter(|a| a.name.is_none()).map(|a| &a.value).collect();
        let named = |key: &str| args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.name == key)).map(|a| &a.value);
        let draw = self.draw_of(args);
        let id = match func {
            "err" => self.err(pos[0], pos[1], draw, None, span),
            "logratio" => {
                let m = self.err(pos[0], pos[2], draw, None, span);
                let r = self.err(pos[1], pos[2], draw, None, span);
                self.intern(Node::Binary(BinOp::Sub, r, m), span)
            }
            "dist" => {
                let against = match self.expr(pos[1]) {
                    Value::Model(ModelRef::Reference(r)) => r,
                    other => panic!("internal error: {other:?} is not a reference"),
                };
                self.err(pos[0], pos[2], draw, Some(against), span)
            }
            // mix_err(M, R, w, x) = w err(M, x) + (1 - w) err(R, x) - w (1 - w) dist(M, R, x): the error of the
            // mixed prediction w out_M + (1 - w) out_R, expanded (grammar/README.md), so it needs no leaf of its own.
            "mix_err" => {
                let against = match self.expr(pos[1]) {
                    Value::Model(ModelRef::Reference(r)) => r,
                    other => panic!("internal error: {other:?} is not a reference"),
                };
                let em = self.err(pos[0], pos[3], draw, None, span);
                let er = self.err(pos[1], pos[3], draw, None, span);
                let d = self.err(pos[0], pos[3], draw, Some(against), span);
                let w = self.node(pos[2]);
                let one = self.constant(1.0, span);
                let rest = self.intern(Node::Binary(BinOp::Sub, one, w), span);
                let a = self.intern(Node::Binary(BinOp::Mul, w, em), span);
                let b = self.intern(Node::Binary(BinOp::Mul, rest, er), span);
                let ww = self.intern(Node::Binary(BinOp::Mul, w, rest), span);
                let c = self.intern(Node::Binary(BinOp::Mul, ww, d), span);
                let ab = self.intern(Node::Binary(BinOp::Add, a, b), span);
                self.intern(Node::Binary(BinOp::Sub, ab, c), span)
            }
            "group_mean" | "group_std" => {
                let x = self.node(pos[0]);
                let op = if func == "group_mean" { GroupOp::Mean } else { GroupOp::Std };
                self.intern(Node::Group(op, x), span)
            }
            "timestep" | "alpha" | "sigma" | "snr" => {
                let images = match self.expr(pos[0]) {
                    Value::Images(i) => i,
                    other => panic!("internal error: {other:?} is not images"),
                };
                let q = match func {
                    "timestep" => TimeQty::Timestep,
                    "alpha" => TimeQty::Alpha,
                    "sigma" => TimeQty::Sigma,
                    _ => TimeQty::Snr,
                };
                self.datum(Datum::Time(q, View { draw, images }), span)
            }
            "draws" => self.draws(pos[0], pos[1], span),
            "reward" => match self.expr(pos[0]) {
                Value::Images(i) => self.datum(Datum::Reward(i), span),
                other => panic!("internal error: {other:?} is not images"),
            },
            "sample" => {
                if let Some(k) = self.sample_at.get(&span) {
                    return Value::Images(ImageRef::Sample(*k));
                }
                let k = self.n_samples;
                self.n_samples += 1;
                self.sample_at.insert(span, k);
                let _ = self
                    .checked
                    .samples
                    .get(k as usize)
                    .unwrap_or_else(|| panic!("internal error: sample #{k} unchecked"));
                return Value::Images(ImageRef::Sample(k));
            }
            "min" | "max" | "pow" => {
                let (a, b) = (self.node(pos[0]), self.node(pos[1]));
                let op = match func {
                    "min" => BinOp::Min,
                    "max" => BinOp::Max,
                    _ => BinOp::Pow,
                };
                self.intern(Node::Binary(op, a, b), span)
            }
            "clamp" => {
                let (x, lo, hi) = (self.node(pos[0]), self.node(pos[1]), self.node(pos[2]));
                self.intern(Node::Clamp(x, lo, hi), span)
            }
            "sign" => {
                let arg = self.node(pos[0]);
                let tie = named("tie").and_then(crate::check::const_value).unwrap_or(0.0);
                self.intern(Node::Sign { arg, tie: tie.to_bits() }, span)
            }
            "indicator" => self.node(pos[0]),
            "where" => {
                let (c, a, b) = (self.node(pos[0]), self.node(pos[1]), self.node(pos[2]));
                self.intern(Node::Where(c, a, b), span)
            }
            "stopgrad" => {
                let x = self.node(pos[0]);
                self.intern(Node::StopGrad(x), span)
            }
            "mean" | "sum" => {
                let x = self.node(pos[0]);
                self.intern(Node::Reduce(if func == "mean" { ReduceOp::Mean } else { ReduceOp::Sum }, x), span)
            }
            _ => {
                let op = match func {
                    "logsigmoid" => UnOp::LogSigmoid,
                    "sigmoid" => UnOp::Sigmoid,
                    "softplus" => UnOp::Softplus,
                    "relu" => UnOp::Relu,
                    "exp" => UnOp::Exp,
                    "expm1" => UnOp::Expm1,
                    "log" => UnOp::Log,
                    "log1p" => UnOp::Log1p,
                    "sqrt" => UnOp::Sqrt,
                    "tanh" => UnOp::Tanh,
                    "square" => UnOp::Square,
                    "abs" => UnOp::Abs,
                    other => panic!("internal error: unchecked function `{other}`"),
                };
                let x = self.node(pos[0]);
                self.intern(Node::Unary(op, x), span)
            }
        };
        Value::Node(id)
    }

    fn err(&mut self, model: &'a Expr, images: &'a Expr, draw: u32, against: Option<String>, span: Span) -> NodeId {
        let model = match self.expr(model) {
            Value::Model(m) => m,
            other => panic!("internal error: {other:?} is not a model"),
        };
        let images = match self.expr(images) {
            Value::Images(i) => i,
            other => panic!("internal error: {other:?} is not images"),
        };
        let input = Input { model, images, draw, against };
        let k = index_in(&mut self.inputs, input);
        self.intern(Node::Input(InputId(k)), span)
    }
}

/// The index of `x` in `list`, appending it first when it is not there (leaves and data values are listed once).
fn index_in<T: PartialEq>(list: &mut Vec<T>, x: T) -> u32 {
    let k = match list.iter().position(|y| *y == x) {
        Some(k) => k,
        None => {
            list.push(x);
            list.len() - 1
        }
    };
    k as u32
}
