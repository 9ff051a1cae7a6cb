//! The syntax tree of an objective file. Spans are byte ranges; comments ride on statements so `fmt` loses nothing.

use crate::source::Span;

/// A parsed objective file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// Statements in source order.
    pub stmts: Vec<Stmt>,
    /// Comments after the last statement (own lines).
    pub trailing_comments: Vec<String>,
}

/// A statement with its comments.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// What it says.
    pub kind: StmtKind,
    /// From its keyword to the end of its last token.
    pub span: Span,
    /// Comment lines before it (text after `#`, without the `#`); comments inside it are moved here.
    pub leading_comments: Vec<String>,
    /// A comment on the statement's last line.
    pub trailing_comment: Option<String>,
    /// Whether a blank line separates it from the previous statement or comment block.
    pub blank_line_before: bool,
}

/// An identifier with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where.
    pub span: Span,
}

/// The statements of the language.
#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `objective NAME`
    Objective(Ident),
    /// `data winners` | `data pairs`
    Data(Ident),
    /// `noise shared` | `noise independent`
    Noise(Ident),
    /// `pool every = 30, keep = 7`
    Pool(Vec<Arg>),
    /// `param NAME: TYPE = EXPR [in INTERVAL]`
    Param {
        /// Parameter name.
        name: Ident,
        /// `real` or `int`.
        ty: Ident,
        /// Default value (a constant expression).
        default: Expr,
        /// Allowed values.
        domain: Option<Interval>,
    },
    /// `reference NAME = STRATEGY [(ARGS)]`
    Reference {
        /// Name of the model handle.
        name: Ident,
        /// `initial`, `latest`, `uniform`, `ema`, ...
        strategy: Ident,
        /// Strategy arguments, e.g. `ema(decay = 0.999)`; `None` when written without parentheses.
        args: Option<Vec<Arg>>,
    },
    /// `let NAME = EXPR`
    Let(Ident, Expr),
    /// `log NAME = EXPR`
    Log(Ident, Expr),
    /// `loss EXPR`
    Loss(Expr),
}

/// A parameter domain `(lo, hi]` etc.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// `[` (true) or `(`.
    pub lo_closed: bool,
    /// Lower bound.
    pub lo: Expr,
    /// Upper bound.
    pub hi: Expr,
    /// `]` (true) or `)`.
    pub hi_closed: bool,
    /// From the opening to the closing bracket.
    pub span: Span,
}

/// An expression with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// Expression forms.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An integer literal such as `7`.
    Int(u64),
    /// A real literal such as `0.5` or `1e-3`.
    Real(f64),
    /// A name: a binding, a parameter, a model or a builtin (`policy`, `winner`, `prompt`, `inf`, ...).
    Name(String),
    /// `-x`
    Neg(Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `f(a, b, name = c)`
    Call(Ident, Vec<Arg>),
}

/// A call argument, positional or named.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// `name =` for named arguments.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}

/// Binary operators, by precedence group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
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

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
        }
    }

    /// Binding strength: comparisons 1, additive 2, multiplicative 3 (unary minus is 4).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 2,
            BinOp::Mul | BinOp::Div => 3,
            _ => 1,
        }
    }

    /// Whether this is a comparison (`<`, `==`, ...), which yields a per-sample boolean.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 1
    }
}

impl File {
    /// Sets every span to `0..0`, so trees can be compared modulo positions (`parse(fmt(ast)) == ast`).
    pub fn erase_spans(&mut self) {
        for stmt in &mut self.stmts {
            stmt.span = Span::default();
            match &mut stmt.kind {
                StmtKind::Objective(id) | StmtKind::Data(id) | StmtKind::Noise(id) => id.span = Span::default(),
                StmtKind::Pool(args) => args.iter_mut().for_each(erase_arg),
                StmtKind::Param { name, ty, default, domain } => {
                    name.span = Span::default();
                    ty.span = Span::default();
                    erase_expr(default);
                    if let Some(d) = domain {
                        d.span = Span::default();
                        erase_expr(&mut d.lo);
                        erase_expr(&mut d.hi);
                    }
                }
                StmtKind::Reference { name, strategy, args } => {
                    name.span = Span::default();
                    strategy.span = Span::default();
                    args.iter_mut().flatten().for_each(erase_arg);
                }
                StmtKind::Let(id, e) | StmtKind::Log(id, e) => {
                    id.span = Span::default();
                    erase_expr(e);
                }
                StmtKind::Loss(e) => erase_expr(e),
            }
        }
    }
}

fn erase_arg(arg: &mut Arg) {
    if let Some(n) = &mut arg.name {
        n.span = Span::default();
    }
    erase_expr(&mut arg.value);
}

fn erase_expr(e: &mut Expr) {
    e.span = Span::default();
    match &mut e.kind {
        ExprKind::Int(_) | ExprKind::Real(_) | ExprKind::Name(_) => {}
        ExprKind::Neg(x) => erase_expr(x),
        ExprKind::Binary(_, a, b) => {
            erase_expr(a);
            erase_expr(b);
        }
        ExprKind::Call(f, args) => {
            f.span = Span::default();
            args.iter_mut().for_each(erase_arg);
        }
    }
}
