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

mod grow;
mod tree;

pub use grow::random_tree;
use grow::*;
use tree::*;

use crate::check::Checked;
use crate::diag::Diagnostic;
use crate::source::SourceFile;
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

/// A value rounded to 4 significant digits, so printed constants stay short.
pub fn round4(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = 10f64.powi(3 - v.abs().log10().floor() as i32);
    (v * mag).round() / mag
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
