//! The canonical form of an objective file: one statement per line, canonical spacing, minimal parentheses,
//! comments kept.

use super::ast::*;

/// Prints a syntax tree in canonical form. `parse(format(f))` gives back `f` (modulo spans).
pub fn format(file: &File) -> String {
    let mut out = String::new();
    for (idx, stmt) in file.stmts.iter().enumerate() {
        if idx > 0 && stmt.blank_line_before {
            out.push('\n');
        }
        for c in &stmt.leading_comments {
            out.push_str(&format!("#{c}\n"));
        }
        out.push_str(&stmt_text(&stmt.kind));
        if let Some(c) = &stmt.trailing_comment {
            out.push_str(&format!("  #{c}"));
        }
        out.push('\n');
    }
    for c in &file.trailing_comments {
        out.push_str(&format!("#{c}\n"));
    }
    out
}

fn stmt_text(kind: &StmtKind) -> String {
    match kind {
        StmtKind::Objective(id) => format!("objective {}", id.name),
        StmtKind::Data(id) => format!("data {}", id.name),
        StmtKind::Noise(id) => format!("noise {}", id.name),
        StmtKind::Pool(args) => format!("pool {}", args_text(args)),
        StmtKind::Param { name, ty, default, domain } => {
            let mut s = format!("param {}: {} = {}", name.name, ty.name, expr(default));
            if let Some(d) = domain {
                let (l, r) = (if d.lo_closed { "[" } else { "(" }, if d.hi_closed { "]" } else { ")" });
                s.push_str(&format!(" in {l}{}, {}{r}", expr(&d.lo), expr(&d.hi)));
            }
            s
        }
        StmtKind::Reference { name, strategy, args } => match args {
            None => format!("reference {} = {}", name.name, strategy.name),
            Some(args) => format!("reference {} = {}({})", name.name, strategy.name, args_text(args)),
        },
        StmtKind::Let(id, e) => format!("let {} = {}", id.name, expr(e)),
        StmtKind::Log(id, e) => format!("log {} = {}", id.name, expr(e)),
        StmtKind::Loss(e) => format!("loss {}", expr(e)),
    }
}

fn args_text(args: &[Arg]) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|a| match &a.name {
            Some(n) => format!("{} = {}", n.name, expr(&a.value)),
            None => expr(&a.value),
        })
        .collect();
    parts.join(", ")
}

/// Prints an expression with the fewest parentheses that keep its tree.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        // `{:?}` always prints a `.` or an exponent, so a real stays a real when parsed back.
        ExprKind::Real(v) => format!("{v:?}"),
        ExprKind::Name(n) => n.clone(),
        ExprKind::Neg(x) => match x.kind {
            ExprKind::Binary(..) => format!("-({})", expr(x)),
            _ => format!("-{}", expr(x)),
        },
        ExprKind::Binary(op, l, r) => {
            let p = op.precedence();
            // Left operand: parenthesise looser operators, and any comparison under a comparison.
            let lp = needs_parens(l, |q| q < p || (op.is_comparison() && q == p));
            // Right operand: parenthesise equal precedence too, since chains associate to the left.
            let rp = needs_parens(r, |q| q <= p);
            format!("{} {} {}", wrap(l, lp), op.symbol(), wrap(r, rp))
        }
        ExprKind::Call(f, args) => format!("{}({})", f.name, args_text(args)),
    }
}

fn needs_parens(e: &Expr, looser: impl Fn(u8) -> bool) -> bool {
    matches!(&e.kind, ExprKind::Binary(op, ..) if looser(op.precedence()))
}

fn wrap(e: &Expr, parens: bool) -> String {
    if parens {
        format!("({})", expr(e))
    } else {
        expr(e)
    }
}
