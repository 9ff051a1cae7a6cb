//! Building objectives from Rust: a typed builder that produces the same syntax tree as a `.obj` file, so
//! every check applies and the result prints as an ordinary objective file.

use crate::check::{DataKind, Noise};
use crate::frontend::Objective;
use crate::source::{SourceFile, Span};
use crate::syntax::ast::{self, Arg, BinOp, Expr, ExprKind, Ident, Stmt, StmtKind};
use std::ops;

/// An expression under construction. Combine with `+ - * /`, unary `-`, and the functions in this module.
#[derive(Clone, Debug)]
pub struct E(pub Expr);

fn ex(kind: ExprKind) -> E {
    E(Expr { kind, span: Span::default() })
}

fn ident(name: &str) -> Ident {
    Ident { name: name.to_string(), span: Span::default() }
}

/// A name: a builtin (`policy`, `winner`, `loser`, `prompt`), a parameter, a reference or a `let` binding.
pub fn name(n: &str) -> E {
    ex(ExprKind::Name(n.to_string()))
}

/// A real constant.
pub fn num(v: f64) -> E {
    if v < 0.0 {
        return -ex(ExprKind::Real(-v));
    }
    ex(ExprKind::Real(v))
}

/// A call of a builtin function with positional arguments.
pub fn call(func: &str, args: impl IntoIterator<Item = E>) -> E {
    let args = args.into_iter().map(|a| Arg { name: None, value: a.0 }).collect();
    ex(ExprKind::Call(ident(func), args))
}

/// `err(model, images)`: per-sample denoising error.
pub fn err(model: &str, images: &str) -> E {
    call("err", [name(model), name(images)])
}

impl E {
    /// Adds a named argument to a call (`sign(x).arg("tie", num(1.0))`); no effect on other expressions.
    pub fn arg(mut self, key: &str, value: E) -> E {
        if let ExprKind::Call(_, args) = &mut self.0.kind {
            args.push(Arg { name: Some(ident(key)), value: value.0 });
        }
        self
    }

    /// A comparison `self op rhs`.
    pub fn cmp(self, op: BinOp, rhs: E) -> E {
        ex(ExprKind::Binary(op, Box::new(self.0), Box::new(rhs.0)))
    }
}

macro_rules! binop {
    ($tr:ident, $f:ident, $op:expr) => {
        impl ops::$tr for E {
            type Output = E;
            fn $f(self, rhs: E) -> E {
                ex(ExprKind::Binary($op, Box::new(self.0), Box::new(rhs.0)))
            }
        }
        impl ops::$tr<f64> for E {
            type Output = E;
            fn $f(self, rhs: f64) -> E {
                ops::$tr::$f(self, num(rhs))
            }
        }
        impl ops::$tr<E> for f64 {
            type Output = E;
            fn $f(self, rhs: E) -> E {
                ops::$tr::$f(num(self), rhs)
            }
        }
    };
}
binop!(Add, add, BinOp::Add);
binop!(Sub, sub, BinOp::Sub);
binop!(Mul, mul, BinOp::Mul);
binop!(Div, div, BinOp::Div);

impl ops::Neg for E {
    type Output = E;
    fn neg(self) -> E {
        ex(ExprKind::Neg(Box::new(self.0)))
    }
}

/// Builds an objective statement by statement.
pub struct ObjectiveBuilder {
    stmts: Vec<StmtKind>,
}

impl ObjectiveBuilder {
    /// Starts `objective NAME`.
    pub fn new(objective: &str) -> ObjectiveBuilder {
        ObjectiveBuilder { stmts: vec![StmtKind::Objective(ident(objective))] }
    }

    /// `data winners` or `data pairs`.
    pub fn data(mut self, kind: DataKind) -> Self {
        let word = kind.word();
        self.stmts.push(StmtKind::Data(ident(word)));
        self
    }

    /// `noise shared` or `noise independent`.
    pub fn noise(mut self, noise: Noise) -> Self {
        let word = if noise == Noise::Shared { "shared" } else { "independent" };
        self.stmts.push(StmtKind::Noise(ident(word)));
        self
    }

    /// `pool every = N, keep = K`.
    pub fn pool(mut self, every: u64, keep: u64) -> Self {
        let arg = |k: &str, v: u64| Arg { name: Some(ident(k)), value: ex(ExprKind::Int(v)).0 };
        self.stmts.push(StmtKind::Pool(vec![arg("every", every), arg("keep", keep)]));
        self
    }

    /// `param NAME: real = DEFAULT in (lo, hi)` (open interval; use `f64::INFINITY` for no upper bound).
    pub fn param(mut self, param: &str, default: f64, lo: f64, hi: f64) -> Self {
        let bound = |v: f64| {
            if v.is_infinite() {
                if v > 0.0 {
                    name("inf")
                } else {
                    -name("inf")
                }
            } else {
                num(v)
            }
        };
        let domain = ast::Interval {
            lo_closed: false,
            lo: bound(lo).0,
            hi: bound(hi).0,
            hi_closed: false,
            span: Span::default(),
        };
        self.stmts.push(StmtKind::Param {
            name: ident(param),
            ty: ident("real"),
            default: num(default).0,
            domain: Some(domain),
        });
        self
    }

    /// `reference NAME = STRATEGY` (`initial`, `latest`, `uniform`).
    pub fn reference(mut self, reference: &str, strategy: &str) -> Self {
        self.stmts.push(StmtKind::Reference { name: ident(reference), strategy: ident(strategy), args: None });
        self
    }

    /// `let NAME = EXPR`.
    pub fn bind(mut self, binding: &str, value: E) -> Self {
        self.stmts.push(StmtKind::Let(ident(binding), value.0));
        self
    }

    /// `log NAME = EXPR`.
    pub fn log(mut self, quantity: &str, value: E) -> Self {
        self.stmts.push(StmtKind::Log(ident(quantity), value.0));
        self
    }

    /// `loss EXPR`.
    pub fn loss(mut self, value: E) -> Self {
        self.stmts.push(StmtKind::Loss(value.0));
        self
    }

    /// Prints the objective as `.obj` text and checks it, so diagnostics point into that text.
    pub fn build(self) -> Result<Objective, (SourceFile, Vec<crate::diag::Diagnostic>)> {
        let stmts = self
            .stmts
            .into_iter()
            .map(|kind| Stmt {
                kind,
                span: Span::default(),
                leading_comments: Vec::new(),
                trailing_comment: None,
                blank_line_before: false,
            })
            .collect();
        let text = crate::syntax::format(&ast::File { stmts, trailing_comments: Vec::new() });
        Objective::parse("<builder>", &text)
    }
}
