//! Proposals over the syntax tree: each operator rewrites a parent's [`ast::File`] into a child, which
//! [`finish`] names, prints with the canonical printer (`seppoc fmt`), parses back and checks. A child that does
//! not check is dropped by the caller with its diagnostic codes counted; one that checks is a candidate.
//!
//! Operators (the `mutation` recorded for each child):
//! - `subtree`: a numeric subexpression of a `let` or of the loss replaced by a random expression over the
//!   parent's own terms (its numeric bindings, parameters, `err`/`logratio` of the policy and its references on
//!   the data's images and reference samples, small constants);
//! - `crossover`: a numeric subexpression replaced by one of a second parent's, with the bindings, parameters
//!   and references it needs copied along;
//! - `constant`: a literal or a parameter's default multiplied by a factor of [`GRID`] (the grid the shipped
//!   objectives' parameters are tuned over, so both get the same tuning budget);
//! - `gate+` / `gate-`: a term multiplied by a `sign` or `indicator` of a `stopgrad` error gap, or such a gate
//!   (or a `where`) removed;
//! - `reference`: the reference strategy swapped (`initial`, `latest`, `uniform(draw = step)`, `ema(decay)`),
//!   with a checkpoint pool added when the strategy needs one, or the pool's settings changed;
//! - `sampler`: a `sample(...)` setting changed (steps, guidance, eta, DDIM/DDPM);
//! - `timestep`: a term multiplied by a timestep weight (Min-SNR, `sigma`, `1 - timestep`, ...);
//! - `progress`: a parameter or constant given a schedule over training (`x * (1 - 0.5 * progress)`, ...).

use crate::check::{Checked, DataKind};
use crate::diag::Diagnostic;
use crate::source::{SourceFile, Span};
use crate::syntax::ast::*;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeSet;

/// Factors a constant or parameter is multiplied by; the shipped objectives' main parameters are tuned over the
/// same factors (with 1, their shipped value).
pub const GRID: [f64; 4] = [0.25, 0.5, 2.0, 4.0];

/// Every operator, with its relative weight in a draw.
pub const OPERATORS: [(&str, u32); 10] = [
    ("subtree", 5),
    ("crossover", 3),
    ("constant", 4),
    ("gate+", 2),
    ("gate-", 1),
    ("reference", 1),
    ("sampler", 1),
    ("timestep", 2),
    ("progress", 1),
    ("pool", 1),
];

/// Names that are never numbers.
const NON_NUMERIC: [&str; 6] = ["policy", "winner", "loser", "image", "prompt", "inf"];
/// Functions whose arguments are models and images, not numbers.
const OPAQUE: [&str; 9] = ["err", "logratio", "dist", "mix_err", "timestep", "alpha", "sigma", "snr", "reward"];
const UNARY: [&str; 8] = ["logsigmoid", "softplus", "sigmoid", "tanh", "relu", "square", "abs", "expm1"];

fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

fn ident(name: &str) -> Ident {
    Ident { name: name.to_string(), span: Span::default() }
}

fn name(n: &str) -> Expr {
    e(ExprKind::Name(n.to_string()))
}

fn real(v: f64) -> Expr {
    e(ExprKind::Real(v))
}

fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    e(ExprKind::Binary(op, Box::new(a), Box::new(b)))
}

fn call(f: &str, args: Vec<Expr>) -> Expr {
    e(ExprKind::Call(ident(f), args.into_iter().map(|value| Arg { name: None, value }).collect()))
}

fn named(n: &str, value: Expr) -> Arg {
    Arg { name: Some(ident(n)), value }
}

fn stmt(kind: StmtKind) -> Stmt {
    Stmt { kind, span: Span::default(), leading_comments: Vec::new(), trailing_comment: None, blank_line_before: false }
}

/// A value rounded to 4 significant digits, so printed constants stay short.
pub fn round4(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = 10f64.powi(3 - v.abs().log10().floor() as i32);
    (v * mag).round() / mag
}

/// What an operator may read of the parent: its names by kind.
struct Scope {
    /// `let` bindings that are per-sample numbers (from the checker's types).
    numeric: Vec<String>,
    /// Declared parameters.
    params: Vec<String>,
    /// Declared references.
    references: Vec<String>,
    /// Image sources: the data's images and `let` bindings of reference samples.
    images: Vec<String>,
    /// Every name the file defines.
    defined: BTreeSet<String>,
}

fn scope(checked: &Checked) -> Scope {
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
type Path = Vec<usize>;

fn children(x: &Expr) -> Vec<&Expr> {
    match &x.kind {
        ExprKind::Neg(a) => vec![a],
        ExprKind::Binary(_, a, b) => vec![a, b],
        ExprKind::Call(_, args) => args.iter().map(|a| &a.value).collect(),
        _ => Vec::new(),
    }
}

fn child_mut(x: &mut Expr, k: usize) -> &mut Expr {
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

fn at_mut<'a>(x: &'a mut Expr, path: &[usize]) -> &'a mut Expr {
    path.iter().fold(x, |x, &k| child_mut(x, k))
}

fn at<'a>(x: &'a Expr, path: &[usize]) -> &'a Expr {
    path.iter().fold(x, |x, &k| children(x)[k])
}

/// Whether an expression is a number (as opposed to a model, images, the prompts or a comparison), judged from
/// its form and the file's non-numeric names.
fn is_numeric(x: &Expr, opaque_names: &BTreeSet<String>) -> bool {
    match &x.kind {
        ExprKind::Name(n) => !NON_NUMERIC.contains(&n.as_str()) && !opaque_names.contains(n),
        ExprKind::Binary(op, ..) => !op.is_comparison(),
        ExprKind::Call(f, _) => f.name != "sample",
        _ => true,
    }
}

/// Every numeric subexpression's path (the root included), not entering model/image arguments, named
/// arguments, `draws`' count or `sample(...)`.
fn numeric_paths(x: &Expr, opaque_names: &BTreeSet<String>) -> Vec<Path> {
    let mut out = Vec::new();
    walk(x, &mut Vec::new(), opaque_names, &mut out);
    out
}

fn walk(x: &Expr, path: &mut Path, opaque_names: &BTreeSet<String>, out: &mut Vec<Path>) {
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
fn opaque_names(s: &Scope) -> BTreeSet<String> {
    s.references.iter().chain(s.images.iter()).cloned().collect()
}

/// A (statement, path) site in the parent's `let`s and loss; the loss's root is left out (it must stay a
/// batch reduction).
fn sites(file: &File, opaque: &BTreeSet<String>) -> Vec<(usize, Path)> {
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

fn stmt_expr_mut(st: &mut Stmt) -> Option<&mut Expr> {
    match &mut st.kind {
        StmtKind::Let(_, x) | StmtKind::Loss(x) => Some(x),
        _ => None,
    }
}

fn stmt_expr(st: &Stmt) -> Option<&Expr> {
    match &st.kind {
        StmtKind::Let(_, x) | StmtKind::Loss(x) => Some(x),
        _ => None,
    }
}

/// A random numeric expression over the scope's terms, at most `depth` operators deep.
fn random_expr(s: &Scope, rng: &mut impl Rng, depth: u32) -> Expr {
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
fn scale(s: &Scope, rng: &mut impl Rng) -> Expr {
    match s.params.choose(rng) {
        // A negative literal is written as a negation, as the parser reads `-0.5`.
        Some(p) if rng.gen_bool(0.6) => bin(BinOp::Mul, e(ExprKind::Neg(Box::new(real(0.5)))), name(p)),
        _ => real(*[0.1, 0.5, 2.0, 10.0].choose(rng).unwrap_or(&1.0)),
    }
}

/// A leaf term: a numeric binding, an error or log-ratio on the data or reference samples, or a constant.
fn atom(s: &Scope, rng: &mut impl Rng) -> Expr {
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
fn gate(s: &Scope, rng: &mut impl Rng) -> Option<Expr> {
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
fn time_weight(s: &Scope, rng: &mut impl Rng) -> Expr {
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
fn progress_schedule(rng: &mut impl Rng) -> Expr {
    match rng.gen_range(0..3) {
        0 => bin(BinOp::Sub, real(1.0), bin(BinOp::Mul, real(0.5), name("progress"))),
        1 => bin(BinOp::Add, real(0.5), name("progress")),
        _ => bin(BinOp::Add, real(1.0), name("progress")),
    }
}

/// Free names an expression reads.
fn free_names(x: &Expr, out: &mut BTreeSet<String>) {
    match &x.kind {
        ExprKind::Name(n) => {
            out.insert(n.clone());
        }
        ExprKind::Call(_, args) => args.iter().for_each(|a| free_names(&a.value, out)),
        _ => children(x).into_iter().for_each(|c| free_names(c, out)),
    }
}

/// The statement of `file` that defines `n` (a `let`, `param` or `reference`).
fn definition<'a>(file: &'a File, n: &str) -> Option<&'a Stmt> {
    file.stmts.iter().find(|st| match &st.kind {
        StmtKind::Let(id, _) => id.name == n,
        StmtKind::Param { name, .. } => name.name == n,
        StmtKind::Reference { name, .. } => name.name == n,
        _ => false,
    })
}

/// The statements of `donor` that `x` needs and `scope` lacks, in dependency order (a pool included when a
/// copied reference needs one and the receiver has none).
fn needed(donor: &File, x: &Expr, defined: &BTreeSet<String>, has_pool: bool) -> Vec<Stmt> {
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

/// One proposal: the child tree and the operator's name with what it did.
pub struct Proposal {
    /// The child (unnamed, unchecked).
    pub file: File,
    /// `operator: detail`.
    pub mutation: String,
}

/// Applies one operator (drawn by [`OPERATORS`]' weights) to `parent`; `donor` is the second parent for
/// crossover. `None` when the drawn operator has nothing to act on in this parent.
pub fn propose(parent: &Checked, donor: Option<&Checked>, rng: &mut impl Rng) -> Option<Proposal> {
    let total: u32 = OPERATORS.iter().map(|o| o.1).sum();
    let mut pick = rng.gen_range(0..total);
    let op = OPERATORS.iter().find(|o| {
        if pick < o.1 {
            true
        } else {
            pick -= o.1;
            false
        }
    })?;
    apply(op.0, parent, donor, rng)
}

/// Applies the named operator.
pub fn apply(op: &str, parent: &Checked, donor: Option<&Checked>, rng: &mut impl Rng) -> Option<Proposal> {
    let s = scope(parent);
    let opaque = opaque_names(&s);
    let mut file = parent.file.clone();
    let all_sites = sites(&file, &opaque);
    let mutation = match op {
        "subtree" => {
            let (i, path) = all_sites.choose(rng)?.clone();
            let new = random_expr(&s, rng, 2);
            let shown = crate::syntax::format_expr(&new);
            *at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path) = new;
            format!("subtree: {} <- {shown}", stmt_label(&file.stmts[i]))
        }
        "crossover" => {
            let donor = donor?;
            let dscope = scope(donor);
            let dsites = sites(&donor.file, &opaque_names(&dscope));
            let (j, dpath) = dsites.choose(rng)?;
            let piece = at(stmt_expr(&donor.file.stmts[*j])?, dpath).clone();
            let (i, path) = all_sites.choose(rng)?.clone();
            let has_pool = file.stmts.iter().any(|st| matches!(st.kind, StmtKind::Pool(_)));
            let extra = needed(&donor.file, &piece, &s.defined, has_pool);
            let shown = crate::syntax::format_expr(&piece);
            *at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path) = piece;
            let target = stmt_label(&file.stmts[i]);
            for (k, st) in extra.into_iter().enumerate() {
                file.stmts.insert(i + k, st);
            }
            format!("crossover: {target} <- {shown} from {}", donor.name)
        }
        "constant" => {
            let factor = *GRID.choose(rng)?;
            let consts: Vec<&(usize, Path)> = all_sites
                .iter()
                .filter(|(i, p)| {
                    matches!(
                        at(stmt_expr(&file.stmts[*i]).expect("site"), p).kind,
                        ExprKind::Real(_) | ExprKind::Int(_)
                    )
                })
                .collect();
            let n_params = file.stmts.iter().filter(|st| matches!(st.kind, StmtKind::Param { .. })).count();
            let k = rng.gen_range(0..(consts.len() + n_params).max(1));
            if k < consts.len() {
                let (i, path) = consts[k].clone();
                let x = at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path);
                let v = match x.kind {
                    ExprKind::Real(v) => v,
                    ExprKind::Int(v) => v as f64,
                    _ => return None,
                };
                x.kind = ExprKind::Real(round4(v * factor));
                format!("constant: {v} x {factor} in {}", stmt_label(&file.stmts[i]))
            } else {
                let st = file
                    .stmts
                    .iter_mut()
                    .filter(|st| matches!(st.kind, StmtKind::Param { .. }))
                    .nth(k.checked_sub(consts.len())?)?;
                let StmtKind::Param { name, ty, default, .. } = &mut st.kind else { return None };
                let v = match default.kind {
                    ExprKind::Real(v) => v,
                    ExprKind::Int(v) => v as f64,
                    _ => return None,
                };
                let new = round4(v * factor);
                default.kind = if ty.name == "int" {
                    let n = new.round();
                    if n < 1.0 || n == v {
                        return None;
                    }
                    ExprKind::Int(n as u64)
                } else {
                    ExprKind::Real(new)
                };
                format!("constant: param {} {v} x {factor}", name.name)
            }
        }
        "gate+" => {
            let (i, path) = all_sites.choose(rng)?.clone();
            let g = gate(&s, rng)?;
            let x = at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path);
            let shown = crate::syntax::format_expr(&g);
            *x = bin(BinOp::Mul, g, x.clone());
            format!("gate+: {shown} in {}", stmt_label(&file.stmts[i]))
        }
        "gate-" => {
            let gates: BTreeSet<String> = file
                .stmts
                .iter()
                .filter_map(|st| match &st.kind {
                    StmtKind::Let(id, x) if is_gate(x, &BTreeSet::new()) => Some(id.name.clone()),
                    _ => None,
                })
                .collect();
            let found: Vec<&(usize, Path)> = all_sites
                .iter()
                .filter(|(i, p)| {
                    let x = at(stmt_expr(&file.stmts[*i]).expect("site"), p);
                    match &x.kind {
                        ExprKind::Binary(BinOp::Mul, a, b) => is_gate(a, &gates) || is_gate(b, &gates),
                        ExprKind::Call(f, _) => f.name == "where",
                        _ => false,
                    }
                })
                .collect();
            let (i, path) = (*found.choose(rng)?).clone();
            let x = at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path);
            *x = match &x.kind {
                ExprKind::Binary(BinOp::Mul, a, b) => {
                    if is_gate(a, &gates) {
                        (**b).clone()
                    } else {
                        (**a).clone()
                    }
                }
                ExprKind::Call(_, args) => args.get(1 + usize::from(rng.gen_bool(0.5)))?.value.clone(),
                _ => return None,
            };
            format!("gate-: in {}", stmt_label(&file.stmts[i]))
        }
        "reference" => {
            let idx: Vec<usize> =
                (0..file.stmts.len()).filter(|&i| matches!(file.stmts[i].kind, StmtKind::Reference { .. })).collect();
            let i = *idx.choose(rng)?;
            let choices: [(&str, Option<Vec<Arg>>); 4] = [
                ("initial", None),
                ("latest", None),
                ("uniform", Some(vec![named("draw", name("step"))])),
                ("ema", Some(vec![named("decay", real(*[0.9, 0.99].choose(rng)?))])),
            ];
            let (strategy_name, args) = choices.choose(rng)?.clone();
            let StmtKind::Reference { strategy, args: a, name: r } = &mut file.stmts[i].kind else { return None };
            let from = strategy.name.clone();
            if from == strategy_name && strategy_name != "ema" {
                return None;
            }
            strategy.name = strategy_name.to_string();
            *a = args;
            let detail = format!("reference: {} {from} -> {strategy_name}", r.name);
            file.stmts[i].trailing_comment = None;
            let needs_pool = ["latest", "uniform"].contains(&strategy_name);
            if needs_pool && !file.stmts.iter().any(|st| matches!(st.kind, StmtKind::Pool(_))) {
                let every = Arg { name: Some(ident("every")), value: e(ExprKind::Int(30)) };
                let keep = Arg { name: Some(ident("keep")), value: e(ExprKind::Int(7)) };
                file.stmts.insert(i, stmt(StmtKind::Pool(vec![every, keep])));
            }
            detail
        }
        "pool" => {
            let st = file.stmts.iter_mut().find(|st| matches!(st.kind, StmtKind::Pool(_)))?;
            let StmtKind::Pool(args) = &mut st.kind else { return None };
            let arg = args.choose_mut(rng)?;
            let ExprKind::Int(v) = arg.value.kind else { return None };
            let new = ((v as f64) * GRID.choose(rng)?).round().max(1.0) as u64;
            if new == v {
                return None;
            }
            arg.value.kind = ExprKind::Int(new);
            format!("pool: {} {v} -> {new}", arg.name.as_ref().map_or("?", |n| n.name.as_str()))
        }
        "sampler" => {
            let (i, x) = file.stmts.iter_mut().enumerate().find_map(|(i, st)| match &mut st.kind {
                StmtKind::Let(_, x) if matches!(&x.kind, ExprKind::Call(f, _) if f.name == "sample") => Some((i, x)),
                _ => None,
            })?;
            let ExprKind::Call(_, args) = &mut x.kind else { return None };
            let (key, value) = match rng.gen_range(0..4) {
                0 => ("steps", e(ExprKind::Int(*[5u64, 10, 20].choose(rng)?))),
                1 => ("cfg", real(*[1.0, 3.0, 5.0, 7.5].choose(rng)?)),
                2 => ("eta", real(*[0.0, 0.5, 1.0].choose(rng)?)),
                _ => ("sampler", name(["ddim", "ddpm"].choose(rng)?)),
            };
            let shown = crate::syntax::format_expr(&value);
            match args.iter_mut().find(|a| a.name.as_ref().is_some_and(|n| n.name == key)) {
                Some(a) if a.value == value => return None,
                Some(a) => a.value = value,
                None => args.push(named(key, value)),
            }
            format!("sampler: {key} = {shown} in {}", stmt_label(&file.stmts[i]))
        }
        "timestep" => {
            let (i, path) = all_sites.choose(rng)?.clone();
            let w = time_weight(&s, rng);
            let shown = crate::syntax::format_expr(&w);
            let x = at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path);
            *x = bin(BinOp::Mul, w, x.clone());
            format!("timestep: x {shown} in {}", stmt_label(&file.stmts[i]))
        }
        "progress" => {
            let targets: Vec<&(usize, Path)> = all_sites
                .iter()
                .filter(|(i, p)| match &at(stmt_expr(&file.stmts[*i]).expect("site"), p).kind {
                    ExprKind::Real(_) | ExprKind::Int(_) => true,
                    ExprKind::Name(n) => s.params.contains(n),
                    _ => false,
                })
                .collect();
            let (i, path) = (*targets.choose(rng)?).clone();
            let sched = progress_schedule(rng);
            let shown = crate::syntax::format_expr(&sched);
            let x = at_mut(stmt_expr_mut(&mut file.stmts[i])?, &path);
            let what = crate::syntax::format_expr(x);
            *x = bin(BinOp::Mul, x.clone(), sched);
            format!("progress: {what} x ({shown}) in {}", stmt_label(&file.stmts[i]))
        }
        _ => return None,
    };
    // The parent's comments describe the parent.
    file.trailing_comments.clear();
    for st in &mut file.stmts {
        st.leading_comments.clear();
        st.trailing_comment = None;
    }
    Some(Proposal { file, mutation })
}

/// Whether an expression is a gate: a `sign`/`indicator` call or a binding of one.
fn is_gate(x: &Expr, gate_names: &BTreeSet<String>) -> bool {
    match &x.kind {
        ExprKind::Call(f, _) => f.name == "sign" || f.name == "indicator",
        ExprKind::Name(n) => gate_names.contains(n),
        _ => false,
    }
}

fn stmt_label(st: &Stmt) -> String {
    match &st.kind {
        StmtKind::Let(id, _) => format!("let {}", id.name),
        StmtKind::Loss(_) => "loss".into(),
        _ => "?".into(),
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

/// Names a child `name`, prints it in canonical form (comments kept, `header` lines put before its first
/// statement) and checks the printed text as `seppoc check` does. The text is returned with the checked
/// program, or the diagnostics of a child that does not check.
pub fn finish(mut file: File, obj_name: &str, header: &[String]) -> Result<(String, Checked), Vec<Diagnostic>> {
    for st in &mut file.stmts {
        if let StmtKind::Objective(id) = &mut st.kind {
            id.name = obj_name.to_string();
        }
    }
    if let Some(first) = file.stmts.first_mut() {
        let mut lines: Vec<String> = header.iter().map(|l| format!(" {l}")).collect();
        lines.append(&mut first.leading_comments);
        first.leading_comments = lines;
    }
    let text = crate::syntax::format(&file);
    let source = SourceFile::new(&format!("{obj_name}.obj"), &text);
    let checked = crate::frontend::frontend(&source)?;
    Ok((text, checked))
}

/// The canonical form two candidates are compared by: the printed tree without comments, with the objective's
/// name replaced.
pub fn canonical_form(file: &File) -> String {
    let mut f = file.clone();
    f.trailing_comments.clear();
    for st in &mut f.stmts {
        st.leading_comments.clear();
        st.trailing_comment = None;
        st.blank_line_before = false;
        if let StmtKind::Objective(id) = &mut st.kind {
            id.name = "candidate".into();
        }
    }
    crate::syntax::format(&f)
}

/// The first 16 hex digits of the SHA-256 of [`canonical_form`].
pub fn canonical_hash(file: &File) -> String {
    use sha2::{Digest, Sha256};
    let digest = format!("{:x}", Sha256::digest(canonical_form(file).as_bytes()));
    digest[..16].to_string()
}
