//! Syntax-tree helpers of the proposals: expression builders, the parent's scope (its names by kind), paths to
//! numeric subexpressions, and the definitions a copied subexpression needs.

use super::{NON_NUMERIC, OPAQUE};
use crate::check::{Checked, DataKind};
use crate::source::Span;
use crate::syntax::ast::*;
use std::collections::BTreeSet;

pub(super) fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

pub(super) fn ident(name: &str) -> Ident {
    Ident { name: name.to_string(), span: Span::default() }
}

pub(super) fn name(n: &str) -> Expr {
    e(ExprKind::Name(n.to_string()))
}

pub(super) fn real(v: f64) -> Expr {
    e(ExprKind::Real(v))
}

pub(super) fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    e(ExprKind::Binary(op, Box::new(a), Box::new(b)))
}

pub(super) fn call(f: &str, args: Vec<Expr>) -> Expr {
    e(ExprKind::Call(ident(f), args.into_iter().map(|value| Arg { name: None, value }).collect()))
}

pub(super) fn named(n: &str, value: Expr) -> Arg {
    Arg { name: Some(ident(n)), value }
}

pub(super) fn stmt(kind: StmtKind) -> Stmt {
    Stmt { kind, span: Span::default(), leading_comments: Vec::new(), trailing_comment: None, blank_line_before: false }
}

/// What an operator may read of the parent: its names by kind.
pub(super) struct Scope {
    /// `let` bindings that are per-sample numbers (from the checker's types).
    pub(super) numeric: Vec<String>,
    /// Declared parameters.
    pub(super) params: Vec<String>,
    /// Declared references.
    pub(super) references: Vec<String>,
    /// Image sources: the data's images and `let` bindings of reference samples.
    pub(super) images: Vec<String>,
    /// Every name the file defines.
    pub(super) defined: BTreeSet<String>,
}

pub(super) fn scope(checked: &Checked) -> Scope {
    use crate::check::types::{Axis, Ty};
    let mut images = match checked.data {
        DataKind::Pairs => vec!["winner".to_string(), "loser".to_string()],
        DataKind::Winners => vec!["winner".to_string()],
        DataKind::Labelled => vec!["image".to_string()],
    };
    let mut numeric = Vec::new();
    for (n, ty) in &checked.bindings {
        match ty {
            Ty::Scalar(s) if s.axis == Axis::Sample => numeric.push(n.clone()),
            Ty::Images(_) => images.push(n.clone()),
            _ => {}
        }
    }
    let params: Vec<String> = checked.params.iter().map(|p| p.name.clone()).collect();
    let references: Vec<String> = checked.references.iter().map(|r| r.name.clone()).collect();
    let defined =
        checked.bindings.iter().map(|b| b.0.clone()).chain(params.clone()).chain(references.clone()).collect();
    Scope { numeric, params, references, images, defined }
}

/// A path from a statement's expression to one of its subexpressions (child indices).
pub(super) type Path = Vec<usize>;

pub(super) fn children(x: &Expr) -> Vec<&Expr> {
    match &x.kind {
        ExprKind::Neg(a) => vec![a],
        ExprKind::Binary(_, a, b) => vec![a, b],
        ExprKind::Call(_, args) => args.iter().map(|a| &a.value).collect(),
        _ => Vec::new(),
    }
}

pub(super) fn child_mut(x: &mut Expr, k: usize) -> &mut Expr {
    match &mut x.kind {
        ExprKind::Neg(a) => a,
        ExprKind::Binary(_, a, b) => {
            if k == 0 {
                a
            } else {
                b
            }
        }
        ExprKind::Call(_, args) => &mut args[k].value,
        _ => unreachable!("paths only lead through expressions with children"),
    }
}

pub(super) fn at_mut<'a>(x: &'a mut Expr, path: &[usize]) -> &'a mut Expr {
    path.iter().fold(x, |x, &k| child_mut(x, k))
}

pub(super) fn at<'a>(x: &'a Expr, path: &[usize]) -> &'a Expr {
    path.iter().fold(x, |x, &k| children(x)[k])
}

/// Whether an expression is a number (as opposed to a model, images, the prompts or a comparison), judged from
/// its form and the file's non-numeric names.
pub(super) fn is_numeric(x: &Expr, opaque_names: &BTreeSet<String>) -> bool {
    match &x.kind {
        ExprKind::Name(n) => !NON_NUMERIC.contains(&n.as_str()) && !opaque_names.contains(n),
        ExprKind::Binary(op, ..) => !op.is_comparison(),
        ExprKind::Call(f, _) => f.name != "sample",
        _ => true,
    }
}

/// Every numeric subexpression's path (the root included), not entering model/image arguments, named
/// arguments, `draws`' count or `sample(...)`.
pub(super) fn numeric_paths(x: &Expr, opaque_names: &BTreeSet<String>) -> Vec<Path> {
    let mut out = Vec::new();
    walk(x, &mut Vec::new(), opaque_names, &mut out);
    out
}

pub(super) fn walk(x: &Expr, path: &mut Path, opaque_names: &BTreeSet<String>, out: &mut Vec<Path>) {
    if is_numeric(x, opaque_names) {
        out.push(path.clone());
    }
    let enter: Vec<usize> = match &x.kind {
        ExprKind::Neg(_) => vec![0],
        ExprKind::Binary(..) => vec![0, 1],
        ExprKind::Call(f, args) if OPAQUE.contains(&f.name.as_str()) || f.name == "sample" => {
            let _ = args;
            Vec::new()
        }
        ExprKind::Call(f, args) => args
            .iter()
            .enumerate()
            .filter(|(k, a)| a.name.is_none() && !(f.name == "draws" && *k == 0))
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    };
    for k in enter {
        path.push(k);
        walk(children(x)[k], path, opaque_names, out);
        path.pop();
    }
}

/// Names of the file that are not numbers: references and image bindings.
pub(super) fn opaque_names(s: &Scope) -> BTreeSet<String> {
    s.references.iter().chain(s.images.iter()).cloned().collect()
}

/// A (statement, path) site in the parent's `let`s and loss; the loss's root is left out (it must stay a
/// batch reduction).
pub(super) fn sites(file: &File, opaque: &BTreeSet<String>) -> Vec<(usize, Path)> {
    let mut out = Vec::new();
    for (i, st) in file.stmts.iter().enumerate() {
        match &st.kind {
            StmtKind::Let(_, x) => out.extend(numeric_paths(x, opaque).into_iter().map(|p| (i, p))),
            StmtKind::Loss(x) => {
                out.extend(numeric_paths(x, opaque).into_iter().filter(|p| !p.is_empty()).map(|p| (i, p)))
            }
            _ => {}
        }
    }
    out
}

pub(super) fn stmt_expr_mut(st: &mut Stmt) -> Option<&mut Expr> {
    match &mut st.kind {
        StmtKind::Let(_, x) | StmtKind::Loss(x) => Some(x),
        _ => None,
    }
}

pub(super) fn stmt_expr(st: &Stmt) -> Option<&Expr> {
    match &st.kind {
        StmtKind::Let(_, x) | StmtKind::Loss(x) => Some(x),
        _ => None,
    }
}

/// Free names an expression reads.
pub(super) fn free_names(x: &Expr, out: &mut BTreeSet<String>) {
    match &x.kind {
        ExprKind::Name(n) => {
            out.insert(n.clone());
        }
        ExprKind::Call(_, args) => args.iter().for_each(|a| free_names(&a.value, out)),
        _ => children(x).into_iter().for_each(|c| free_names(c, out)),
    }
}

/// The statement of `file` that defines `n` (a `let`, `param` or `reference`).
pub(super) fn definition<'a>(file: &'a File, n: &str) -> Option<&'a Stmt> {
    file.stmts.iter().find(|st| match &st.kind {
        StmtKind::Let(id, _) => id.name == n,
        StmtKind::Param { name, .. } => name.name == n,
        StmtKind::Reference { name, .. } => name.name == n,
        _ => false,
    })
}

/// The statements of `donor` that `x` needs and `scope` lacks, in dependency order (a pool included when a
/// copied reference needs one and the receiver has none).
pub(super) fn needed(donor: &File, x: &Expr, defined: &BTreeSet<String>, has_pool: bool) -> Vec<Stmt> {
    let mut out: Vec<Stmt> = Vec::new();
    let mut seen = defined.clone();
    fn visit(donor: &File, x: &Expr, seen: &mut BTreeSet<String>, out: &mut Vec<Stmt>) {
        let mut names = BTreeSet::new();
        free_names(x, &mut names);
        for n in names {
            if seen.contains(&n) {
                continue;
            }
            let Some(st) = definition(donor, &n) else { continue };
            seen.insert(n.clone());
            if let StmtKind::Let(_, body) = &st.kind {
                visit(donor, body, seen, out);
            }
            let mut st = st.clone();
            st.leading_comments.clear();
            st.trailing_comment = None;
            st.blank_line_before = false;
            out.push(st);
        }
    }
    visit(donor, x, &mut seen, &mut out);
    let copies_pooled_ref = out.iter().any(|st| {
        matches!(&st.kind, StmtKind::Reference { strategy, .. } if ["latest", "uniform"].contains(&strategy.name.as_str()))
    });
    if copies_pooled_ref && !has_pool {
        if let Some(pool) = donor.stmts.iter().find(|st| matches!(st.kind, StmtKind::Pool(_))) {
            out.insert(0, pool.clone());
        }
    }
    out
}
