//! The nom 8 parser: statements are keyword-led, so newlines are insignificant and recovery skips to the next
//! line that starts with a keyword.

use super::ast::*;
use super::error::{Chain, Expected, ParseError};
use crate::source::Span;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{digit1, one_of};
use nom::combinator::{opt, recognize};
use nom::{IResult, Parser};
use nom_locate::LocatedSpan;
use std::cell::Cell;

/// Parser input: text with its byte offset.
pub type In<'a> = LocatedSpan<&'a str>;
pub(super) type PResult<'a, T> = IResult<In<'a>, T, ParseError>;

/// Statement keywords; they cannot be used as names.
pub const KEYWORDS: &[&str] = &["objective", "data", "noise", "pool", "param", "reference", "let", "log", "loss", "in"];
const MAX_NESTING: u32 = 64;
const MAX_TREE_DEPTH: u32 = 256;

pub(super) fn fail<T>(at: In, expected: Expected) -> PResult<T> {
    Err(nom::Err::Error(ParseError { at: at.location_offset(), expected }))
}

pub(super) fn cut_err(e: nom::Err<ParseError>) -> nom::Err<ParseError> {
    match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    }
}

/// Skips whitespace and `#` comments (comments are collected separately, see `comments`).
pub fn ws(i: In) -> PResult<()> {
    let mut i = i;
    loop {
        let (rest, _) = take_while(|c: char| c.is_whitespace()).parse(i)?;
        i = rest;
        if i.fragment().starts_with('#') {
            let (rest, _) = take_while(|c: char| c != '\n').parse(i)?;
            i = rest;
        } else {
            return Ok((i, ()));
        }
    }
}

pub(super) fn span_of(start: In, end: In) -> Span {
    Span::new(start.location_offset(), end.location_offset())
}

/// Parses the punctuation `s` after optional whitespace.
pub(super) fn sym<'a>(s: &'static str) -> impl FnMut(In<'a>) -> PResult<'a, Span> {
    move |i: In<'a>| {
        let (i, _) = ws(i)?;
        match tag::<_, _, ParseError>(s).parse(i) {
            // `<` must not match the start of `<=`, nor `=` the start of `==`.
            Ok((rest, t)) if !(matches!(s, "<" | ">" | "=") && rest.fragment().starts_with('=')) => {
                Ok((rest, span_of(t, rest)))
            }
            _ => fail(i, Expected::Token(s)),
        }
    }
}

pub(super) fn word(i: In) -> PResult<(String, Span)> {
    let (i, _) = ws(i)?;
    let start = i;
    let res: PResult<In> = recognize((
        take_while1(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    ))
    .parse(i);
    match res {
        Ok((rest, w)) => Ok((rest, (w.fragment().to_string(), span_of(start, rest)))),
        Err(_) => fail(i, Expected::Ident),
    }
}

/// A name that is not a keyword.
pub(super) fn ident(i: In) -> PResult<Ident> {
    let (rest, (name, span)) = word(i)?;
    if KEYWORDS.contains(&name.as_str()) {
        let (i, _) = ws(i)?;
        return fail(i, Expected::Ident);
    }
    Ok((rest, Ident { name, span }))
}

pub(super) fn keyword<'a>(kw: &'static str) -> impl FnMut(In<'a>) -> PResult<'a, Span> {
    move |i: In<'a>| match word(i) {
        Ok((rest, (w, span))) if w == kw => Ok((rest, span)),
        _ => {
            let (i, _) = ws(i)?;
            fail(i, Expected::Token(kw))
        }
    }
}

fn number(i: In) -> PResult<Expr> {
    let (i, _) = ws(i)?;
    let start = i;
    let (rest, lexeme) = recognize((
        digit1,
        opt((nom::character::complete::char('.'), digit1)),
        opt((one_of("eE"), opt(one_of("+-")), digit1)),
    ))
    .parse(i)?;
    let text = *lexeme.fragment();
    let span = span_of(start, rest);
    let kind = if text.contains(['.', 'e', 'E']) {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => ExprKind::Real(v),
            _ => {
                return Err(nom::Err::Failure(ParseError {
                    at: start.location_offset(),
                    expected: Expected::BadNumber("too large for a 64-bit real"),
                }))
            }
        }
    } else {
        match text.parse::<u64>() {
            Ok(v) => ExprKind::Int(v),
            Err(_) => {
                return Err(nom::Err::Failure(ParseError {
                    at: start.location_offset(),
                    expected: Expected::BadNumber("too large for a 64-bit integer"),
                }))
            }
        }
    };
    Ok((rest, Expr { kind, span }))
}

/// Expression parser state: the current nesting depth, so deep inputs fail instead of overflowing the stack.
pub struct ExprParser {
    nesting: Cell<u32>,
}

impl ExprParser {
    /// A parser at depth 0.
    pub fn new() -> ExprParser {
        ExprParser { nesting: Cell::new(0) }
    }

    /// Parses an expression.
    pub fn expr<'a>(&self, i: In<'a>) -> PResult<'a, Expr> {
        self.expr_depth(i).map(|(r, (e, _))| (r, e))
    }

    fn expr_depth<'a>(&self, i: In<'a>) -> PResult<'a, (Expr, u32)> {
        let depth = self.nesting.get() + 1;
        if depth > MAX_NESTING {
            let (i, _) = ws(i)?;
            return Err(nom::Err::Failure(ParseError { at: i.location_offset(), expected: Expected::TooDeep }));
        }
        self.nesting.set(depth);
        let result = self.comparison(i);
        self.nesting.set(depth - 1);
        result
    }

    fn comparison<'a>(&self, i: In<'a>) -> PResult<'a, (Expr, u32)> {
        let (i, lhs) = self.additive(i)?;
        let ops = [
            ("<=", BinOp::Le),
            (">=", BinOp::Ge),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<", BinOp::Lt),
            (">", BinOp::Gt),
        ];
        for (s, op) in ops {
            if let Ok((rest, first)) = sym(s)(i) {
                let (rest, rhs) = self.additive(rest).map_err(|e| self.expect_expr(e, rest))?;
                if let Some(chained) = self.chained(rest, &lhs.0, s, first, &rhs.0, &ops) {
                    return Err(chained);
                }
                return Ok((rest, binary(op, lhs, rhs, i)?));
            }
        }
        Ok((i, lhs))
    }

    /// `a < b < c`: a comparison operator right after a comparison is an error that names the operands, so the
    /// diagnostic can suggest `indicator(a < b) * indicator(b < c)`.
    #[inline(never)]
    fn chained<'a>(
        &self,
        i: In<'a>,
        lhs: &Expr,
        op1: &'static str,
        first: Span,
        mid: &Expr,
        ops: &[(&'static str, BinOp)],
    ) -> Option<nom::Err<ParseError>> {
        let (op2, rest) = ops.iter().find_map(|(s, _)| sym(*s)(i).ok().map(|(r, _)| (*s, r)))?;
        let at = ws(i).map_or(i.location_offset(), |(r, _)| r.location_offset());
        let third = self.additive(rest).ok().map(|(_, (e, _))| e.span);
        let chain = Chain { first, ops: [op1, op2], operands: (lhs.span, mid.span, third) };
        let expected = Expected::Chained(Box::new(chain));
        Some(nom::Err::Failure(ParseError { at, expected }))
    }

    fn additive<'a>(&self, i: In<'a>) -> PResult<'a, (Expr, u32)> {
        self.chain(i, &[("+", BinOp::Add), ("-", BinOp::Sub)], |p, i| p.multiplicative(i))
    }

    fn multiplicative<'a>(&self, i: In<'a>) -> PResult<'a, (Expr, u32)> {
        self.chain(i, &[("*", BinOp::Mul), ("/", BinOp::Div)], |p, i| p.unary(i))
    }

    /// Left-associative chain `operand (op operand)*`.
    fn chain<'a>(
        &self,
        i: In<'a>,
        ops: &[(&'static str, BinOp)],
        operand: impl Fn(&Self, In<'a>) -> PResult<'a, (Expr, u32)>,
    ) -> PResult<'a, (Expr, u32)> {
        let (mut i, mut acc) = operand(self, i)?;
        'outer: loop {
            for &(s, op) in ops {
                if let Ok((rest, _)) = sym(s)(i) {
                    let (rest, rhs) = operand(self, rest).map_err(|e| self.expect_expr(e, rest))?;
                    acc = binary(op, acc, rhs, i)?;
                    i = rest;
                    continue 'outer;
                }
            }
            return Ok((i, acc));
        }
    }

    fn unary<'a>(&self, i: In<'a>) -> PResult<'a, (Expr, u32)> {
        if let Ok((rest, minus)) = sym("-")(i) {
            let depth = self.nesting.get() + 1;
            if depth > MAX_NESTING {
                return Err(nom::Err::Failure(ParseError { at: minus.start as usize, expected: Expected::TooDeep }));
            }
            self.nesting.set(depth);
            let result = self.unary(rest).map_err(|e| self.expect_expr(e, rest));
            self.nesting.set(depth - 1);
            let (rest, (x, d)) = result?;
            let span = minus.to(x.span);
            return Ok((rest, (Expr { kind: ExprKind::Neg(Box::new(x)), span }, d + 1)));
        }
        self.primary(i)
    }

    fn primary<'a>(&self, i: In<'a>) -> PResult<'a, (Expr, u32)> {
        let (i, _) = ws(i)?;
        if let Ok((rest, e)) = number(i) {
            return Ok((rest, (e, 1)));
        }
        if let Err(e @ nom::Err::Failure(_)) = number(i) {
            return Err(e);
        }
        if let Ok((rest, open)) = sym("(")(i) {
            let (rest, (inner, d)) = self.expr_depth(rest).map_err(|e| self.expect_expr(e, rest))?;
            let (rest, close) = sym(")")(rest).map_err(|_| close_err(rest, open, ")"))?;
            // Parentheses only group; the span grows to include them so labels cover what the user wrote.
            return Ok((rest, (Expr { kind: inner.kind, span: open.to(close) }, d)));
        }
        let (rest, name) = match ident(i) {
            Ok(ok) => ok,
            // `log` is also a statement keyword; followed by `(` it is the function.
            Err(_) => match word(i) {
                Ok((rest, (w, span))) if w == "log" && sym("(")(rest).is_ok() => (rest, Ident { name: w, span }),
                _ => return fail(i, Expected::Expr),
            },
        };
        if let Ok((after, open)) = sym("(")(rest) {
            let (after, (args, d)) = self.args(after, open, ")")?;
            let span = Span::new(name.span.start as usize, after.location_offset());
            return Ok((after, (Expr { kind: ExprKind::Call(name, args), span }, d + 1)));
        }
        let span = name.span;
        Ok((rest, (Expr { kind: ExprKind::Name(name.name), span }, 1)))
    }

    /// Comma-separated arguments up to and including the closing delimiter.
    pub fn args<'a>(&self, i: In<'a>, open: Span, close: &'static str) -> PResult<'a, (Vec<Arg>, u32)> {
        let mut args = Vec::new();
        let mut depth = 0;
        let mut i = i;
        if let Ok((rest, _)) = sym(close)(i) {
            return Ok((rest, (args, depth)));
        }
        loop {
            let named = (ident, sym("=")).parse(i);
            let (rest, name) = match named {
                Ok((rest, (id, _))) => (rest, Some(id)),
                Err(_) => (i, None),
            };
            let (rest, (value, d)) = self.expr_depth(rest).map_err(|e| self.expect_expr(e, rest))?;
            depth = depth.max(d);
            args.push(Arg { name, value });
            if let Ok((rest, _)) = sym(",")(rest) {
                i = rest;
                continue;
            }
            return match sym(close)(rest) {
                Ok((rest, _)) => Ok((rest, (args, depth))),
                Err(_) => Err(close_err(rest, open, close)),
            };
        }
    }

    /// After an operator or opening delimiter an expression is required: make the failure final.
    pub(super) fn expect_expr(&self, e: nom::Err<ParseError>, at: In) -> nom::Err<ParseError> {
        match e {
            nom::Err::Error(mut err) => {
                if err.expected == Expected::Ident || err.expected == Expected::Other {
                    err.expected = Expected::Expr;
                    err.at = ws(at).map(|(r, _)| r.location_offset()).unwrap_or(err.at);
                }
                nom::Err::Failure(err)
            }
            other => other,
        }
    }
}

impl Default for ExprParser {
    fn default() -> Self {
        ExprParser::new()
    }
}

fn close_err(at: In, open: Span, close: &'static str) -> nom::Err<ParseError> {
    let at = ws(at).map(|(r, _)| r).unwrap_or(at);
    nom::Err::Failure(ParseError { at: at.location_offset(), expected: Expected::Close { open, close } })
}

fn binary<'a>(
    op: BinOp,
    (l, ld): (Expr, u32),
    (r, rd): (Expr, u32),
    at: In<'a>,
) -> Result<(Expr, u32), nom::Err<ParseError>> {
    let depth = ld.max(rd) + 1;
    if depth > MAX_TREE_DEPTH {
        let at = ws(at).map(|(r, _)| r).unwrap_or(at);
        return Err(nom::Err::Failure(ParseError { at: at.location_offset(), expected: Expected::TooDeep }));
    }
    let span = l.span.to(r.span);
    Ok((Expr { kind: ExprKind::Binary(op, Box::new(l), Box::new(r)), span }, depth))
}
