//! Statement parsing: keyword-led statements, each ending where the next keyword (or the input) begins.

use super::ast::*;
use super::error::{Expected, ParseError};
use super::parser::{cut_err, fail, ident, keyword, span_of, sym, word, ws, ExprParser, In, PResult, KEYWORDS};

/// Parses one statement (leading whitespace allowed). Comments are attached later.
pub fn stmt(i: In) -> PResult<Stmt> {
    let (i, _) = ws(i)?;
    let start = i;
    let (after_kw, (kw, _)) = word(i).or_else(|_| fail(i, Expected::Stmt))?;
    let p = ExprParser::new();
    let body = |i| -> PResult<StmtKind> {
        match kw.as_str() {
            "objective" => ident(i).map(|(r, id)| (r, StmtKind::Objective(id))),
            "data" => ident(i).map(|(r, id)| (r, StmtKind::Data(id))),
            "noise" => ident(i).map(|(r, id)| (r, StmtKind::Noise(id))),
            "pool" => {
                let (i, args) = args_until_end(&p, i)?;
                Ok((i, StmtKind::Pool(args)))
            }
            "param" => {
                let (i, name) = ident(i)?;
                let (i, _) = sym(":")(i)?;
                let (i, ty) = ident(i)?;
                let (i, _) = sym("=")(i)?;
                let (i, default) = p.expr(i).map_err(|e| p.expect_expr(e, i))?;
                let (i, domain) = match keyword("in")(i) {
                    Ok((i, _)) => {
                        let (i, d) = interval(&p, i)?;
                        (i, Some(d))
                    }
                    Err(_) => (i, None),
                };
                Ok((i, StmtKind::Param { name, ty, default, domain }))
            }
            "reference" => {
                let (i, name) = ident(i)?;
                let (i, _) = sym("=")(i)?;
                let (i, strategy) = ident(i)?;
                let (i, args) = match sym("(")(i) {
                    Ok((i, open)) => {
                        let (i, (args, _)) = p.args(i, open, ")")?;
                        (i, Some(args))
                    }
                    Err(_) => (i, None),
                };
                Ok((i, StmtKind::Reference { name, strategy, args }))
            }
            "let" | "log" => {
                let (i, name) = ident(i)?;
                let (i, _) = sym("=")(i)?;
                let (i, e) = p.expr(i).map_err(|e| p.expect_expr(e, i))?;
                Ok((i, if kw == "let" { StmtKind::Let(name, e) } else { StmtKind::Log(name, e) }))
            }
            "loss" => p.expr(i).map_err(|e| p.expect_expr(e, i)).map(|(r, e)| (r, StmtKind::Loss(e))),
            _ => fail(start, Expected::Stmt),
        }
    };
    let (rest, kind) = body(after_kw).map_err(|e| if kw_is_stmt(&kw) { cut_err(e) } else { e })?;
    let span = span_of(start, rest);
    let stmt = Stmt { kind, span, leading_comments: Vec::new(), trailing_comment: None, blank_line_before: false };
    // A statement ends where the next keyword (or the end of input) begins.
    let (next, _) = ws(rest)?;
    let at_end = next.fragment().is_empty() || word(next).map(|(_, (w, _))| kw_is_stmt(&w)).unwrap_or(false);
    if !at_end {
        // Something on a new line that is not a keyword reads as a missing keyword, not as a long statement.
        let gap = &rest.fragment()[..next.location_offset() - rest.location_offset()];
        let expected = if gap.contains('\n') && word(next).is_ok() { Expected::Stmt } else { Expected::StmtEnd };
        return Err(nom::Err::Failure(ParseError { at: next.location_offset(), expected }));
    }
    Ok((rest, stmt))
}

fn kw_is_stmt(w: &str) -> bool {
    KEYWORDS.contains(&w) && w != "in"
}

/// `name = expr, name = expr` with no delimiters (the `pool` statement).
fn args_until_end<'a>(p: &ExprParser, i: In<'a>) -> PResult<'a, Vec<Arg>> {
    let mut args = Vec::new();
    let mut i = i;
    loop {
        let (rest, name) = ident(i)?;
        let (rest, _) = sym("=")(rest)?;
        let (rest, value) = p.expr(rest).map_err(|e| p.expect_expr(e, rest))?;
        args.push(Arg { name: Some(name), value });
        match sym(",")(rest) {
            Ok((rest, _)) => i = rest,
            Err(_) => return Ok((rest, args)),
        }
    }
}

fn interval<'a>(p: &ExprParser, i: In<'a>) -> PResult<'a, Interval> {
    let (i, _) = ws(i)?;
    let start = i;
    let (i, lo_closed) = match sym("[")(i) {
        Ok((i, _)) => (i, true),
        Err(_) => match sym("(")(i) {
            Ok((i, _)) => (i, false),
            Err(_) => return fail(i, Expected::Token("(` or `[")),
        },
    };
    let (i, lo) = p.expr(i).map_err(|e| p.expect_expr(e, i))?;
    let (i, _) = sym(",")(i)?;
    let (i, hi) = p.expr(i).map_err(|e| p.expect_expr(e, i))?;
    let (i, hi_closed) = match sym("]")(i) {
        Ok((i, _)) => (i, true),
        Err(_) => match sym(")")(i) {
            Ok((i, _)) => (i, false),
            Err(_) => return fail(i, Expected::Token(")` or `]")),
        },
    };
    Ok((i, Interval { lo_closed, lo, hi, hi_closed, span: span_of(start, i) }))
}
