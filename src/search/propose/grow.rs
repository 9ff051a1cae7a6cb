//! Random material for the proposals: numeric expressions over a parent's terms, gates, timestep weights,
//! `progress` schedules, and the random well-typed trees of generation 0.

use super::tree::*;
use super::UNARY;
use crate::check::DataKind;
use crate::source::Span;
use crate::syntax::ast::*;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeSet;

/// A random numeric expression over the scope's terms, at most `depth` operators deep.
pub(super) fn random_expr(s: &Scope, rng: &mut impl Rng, depth: u32) -> Expr {
    if depth == 0 || rng.gen_bool(0.3) {
        return atom(s, rng);
    }
    match rng.gen_range(0..4) {
        0 => call(UNARY.choose(rng).copied().unwrap_or("softplus"), vec![random_expr(s, rng, depth - 1)]),
        1 => {
            let op = *[BinOp::Add, BinOp::Sub, BinOp::Mul].choose(rng).unwrap_or(&BinOp::Add);
            bin(op, random_expr(s, rng, depth - 1), random_expr(s, rng, depth - 1))
        }
        2 => bin(BinOp::Mul, scale(s, rng), random_expr(s, rng, depth - 1)),
        _ => e(ExprKind::Neg(Box::new(random_expr(s, rng, depth - 1)))),
    }
}

/// A constant factor: a parameter (scaled as DPO scales its margin) or a small constant.
pub(super) fn scale(s: &Scope, rng: &mut impl Rng) -> Expr {
    match s.params.choose(rng) {
        // A negative literal is written as a negation, as the parser reads `-0.5`.
        Some(p) if rng.gen_bool(0.6) => bin(BinOp::Mul, e(ExprKind::Neg(Box::new(real(0.5)))), name(p)),
        _ => real(*[0.1, 0.5, 2.0, 10.0].choose(rng).unwrap_or(&1.0)),
    }
}

/// A leaf term: a numeric binding, an error or log-ratio on the data or reference samples, or a constant.
pub(super) fn atom(s: &Scope, rng: &mut impl Rng) -> Expr {
    let img = s.images.choose(rng).cloned().unwrap_or_else(|| "winner".into());
    match rng.gen_range(0..5) {
        0 | 1 if !s.numeric.is_empty() => name(s.numeric.choose(rng).map(String::as_str).unwrap_or("winner")),
        2 if !s.references.is_empty() => {
            let r = s.references.choose(rng).cloned().unwrap_or_default();
            bin(BinOp::Sub, call("err", vec![name("policy"), name(&img)]), call("err", vec![name(&r), name(&img)]))
        }
        3 => real(*[0.5, 1.0, 2.0].choose(rng).unwrap_or(&1.0)),
        _ => call("err", vec![name("policy"), name(&img)]),
    }
}

/// A gate: the sign or indicator of a `stopgrad` error gap between a reference and the policy on some images.
pub(super) fn gate(s: &Scope, rng: &mut impl Rng) -> Option<Expr> {
    let r = s.references.choose(rng)?;
    let img = s.images.choose(rng)?;
    let gap = call(
        "stopgrad",
        vec![bin(BinOp::Sub, call("err", vec![name(r), name(img)]), call("err", vec![name("policy"), name(img)]))],
    );
    Some(if rng.gen_bool(0.5) {
        e(ExprKind::Call(ident("sign"), vec![Arg { name: None, value: gap }, named("tie", real(1.0))]))
    } else {
        call("indicator", vec![bin(BinOp::Gt, gap, real(0.0))])
    })
}

/// A timestep weight on one of the data's images.
pub(super) fn time_weight(s: &Scope, rng: &mut impl Rng) -> Expr {
    let img = s.images.iter().find(|i| ["winner", "image"].contains(&i.as_str())).cloned().unwrap_or("winner".into());
    let snr = || call("snr", vec![name(&img)]);
    match rng.gen_range(0..4) {
        0 => bin(BinOp::Div, call("min", vec![snr(), real(5.0)]), snr()),
        1 => call("sigma", vec![name(&img)]),
        2 => bin(BinOp::Sub, real(1.0), call("timestep", vec![name(&img)])),
        _ => bin(BinOp::Add, real(0.5), call("timestep", vec![name(&img)])),
    }
}

/// A schedule over training progress to multiply a constant by.
pub(super) fn progress_schedule(rng: &mut impl Rng) -> Expr {
    match rng.gen_range(0..3) {
        0 => bin(BinOp::Sub, real(1.0), bin(BinOp::Mul, real(0.5), name("progress"))),
        1 => bin(BinOp::Add, real(0.5), name("progress")),
        _ => bin(BinOp::Add, real(1.0), name("progress")),
    }
}

/// A random well-typed-by-construction tree for a data kind: the data kind's usual header (a reference, and
/// for `winners` a checkpoint pool and reference samples), the DPO-style differences as bindings, and a loss
/// `mean(...)` of a random expression over them.
pub fn random_tree(data: DataKind, rng: &mut impl Rng) -> File {
    let mut stmts = vec![stmt(StmtKind::Objective(ident("random")))];
    stmts.push(stmt(StmtKind::Data(ident(data.word()))));
    stmts.push(stmt(StmtKind::Noise(ident("shared"))));
    let param = StmtKind::Param {
        name: ident("beta"),
        ty: ident("real"),
        default: real(*[500.0, 2000.0, 5000.0].choose(rng).unwrap_or(&2000.0)),
        domain: Some(Interval {
            lo_closed: false,
            lo: real(0.0),
            hi: name("inf"),
            hi_closed: false,
            span: Span::default(),
        }),
    };
    stmts.push(stmt(param));
    let d = |img: &str| {
        bin(BinOp::Sub, call("err", vec![name("policy"), name(img)]), call("err", vec![name("ref"), name(img)]))
    };
    let mut numeric = vec!["d_w".to_string()];
    let mut images = vec!["winner".to_string()];
    match data {
        DataKind::Winners => {
            let every = Arg { name: Some(ident("every")), value: e(ExprKind::Int(30)) };
            let keep = Arg { name: Some(ident("keep")), value: e(ExprKind::Int(7)) };
            stmts.push(stmt(StmtKind::Pool(vec![every, keep])));
            let strategy = ["uniform", "latest", "initial"].choose(rng).copied().unwrap_or("uniform");
            let args = (strategy == "uniform").then(|| vec![named("draw", name("step"))]);
            stmts.push(stmt(StmtKind::Reference { name: ident("ref"), strategy: ident(strategy), args }));
            let sample = e(ExprKind::Call(
                ident("sample"),
                vec![
                    Arg { name: None, value: name("ref") },
                    Arg { name: None, value: name("prompt") },
                    named("sampler", name("ddim")),
                    named("steps", e(ExprKind::Int(10))),
                    named("cfg", real(5.0)),
                    named("eta", real(0.0)),
                ],
            ));
            stmts.push(stmt(StmtKind::Let(ident("x_ref"), sample)));
            stmts.push(stmt(StmtKind::Let(ident("d_w"), d("winner"))));
            stmts.push(stmt(StmtKind::Let(ident("d_ref"), d("x_ref"))));
            numeric.push("d_ref".into());
            images.push("x_ref".into());
        }
        DataKind::Pairs | DataKind::Labelled => {
            stmts.push(stmt(StmtKind::Reference { name: ident("ref"), strategy: ident("initial"), args: None }));
            let w = if data == DataKind::Pairs { "winner" } else { "image" };
            stmts.push(stmt(StmtKind::Let(ident("d_w"), d(w))));
            if data == DataKind::Pairs {
                stmts.push(stmt(StmtKind::Let(ident("d_l"), d("loser"))));
                numeric.push("d_l".into());
                images.push("loser".into());
            } else {
                images = vec!["image".into()];
            }
        }
    }
    let s = Scope {
        numeric,
        params: vec!["beta".into()],
        references: vec!["ref".into()],
        images,
        defined: BTreeSet::new(),
    };
    let body = random_expr(&s, rng, 3);
    stmts.push(stmt(StmtKind::Loss(call("mean", vec![body]))));
    stmts[1].blank_line_before = false;
    File { stmts, trailing_comments: Vec::new() }
}
