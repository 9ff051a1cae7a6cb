//! Parser errors (our nom error type) and their one conversion into diagnostics.

use crate::diag::{Code, Diagnostic, Label};
use crate::source::Span;
use nom::error::ErrorKind;
use nom_locate::LocatedSpan;

/// What the parser expected at the failing position. Each variant lists inputs that trigger it.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// `param beta real` (expected `:`)
    Token(&'static str),
    /// `let = 1` (expected a name)
    Ident,
    /// `loss` at end of input, `loss mean(` (expected an expression)
    Expr,
    /// `loss mean(x` (the `(` at `open` is never closed)
    Close {
        /// The opening delimiter.
        open: Span,
        /// The closing delimiter that is missing.
        close: &'static str,
    },
    /// `param beta: real = 1.0 2.0` (expected end of statement)
    StmtEnd,
    /// `beta = 1` at the start of a statement (expected a statement keyword)
    Stmt,
    /// 65 nested parentheses, or an operator chain nested more than 256 deep
    TooDeep,
    /// `1e999` (does not fit its type)
    BadNumber(&'static str),
    /// `0 < x < 1`: a second comparison operator right after a comparison (comparisons do not chain). Boxed so
    /// that parse results, which live on every level of the recursive descent, stay small.
    Chained(Box<Chain>),
    /// Anything nom reports that we did not anticipate.
    Other,
}

/// Where a chained comparison `a < b < c` stands: its operators and operands.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    /// The first comparison's operator.
    pub first: Span,
    /// The two operators.
    pub ops: [&'static str; 2],
    /// The three operands (the third is `None` when it does not parse).
    pub operands: (Span, Span, Option<Span>),
}

/// A parse failure: byte offset and what was expected there.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    /// Byte offset of the failure.
    pub at: usize,
    /// What would have been accepted.
    pub expected: Expected,
}

impl<'a> nom::error::ParseError<LocatedSpan<&'a str>> for ParseError {
    fn from_error_kind(input: LocatedSpan<&'a str>, _kind: ErrorKind) -> Self {
        ParseError { at: input.location_offset(), expected: Expected::Other }
    }

    fn append(_input: LocatedSpan<&'a str>, _kind: ErrorKind, other: Self) -> Self {
        other
    }

    fn or(self, other: Self) -> Self {
        // Keep the error that got furthest: it is the one that explains the input.
        if other.at > self.at {
            other
        } else {
            self
        }
    }
}

/// Converts a parse error into a diagnostic; the only place that does.
pub fn to_diagnostic(err: &ParseError, text: &str) -> Diagnostic {
    let found = describe(text, err.at);
    let here = token_span(text, err.at);
    let stmts = "objective, data, noise, pool, param, reference, let, log, loss";
    if let Some(diag) = non_ascii_name(text, err.at) {
        return diag;
    }
    match &err.expected {
        Expected::Token(tok) => Diagnostic::error(
            Code::E0102,
            Label::new(here, format!("expected `{tok}`")),
            format!("expected `{tok}`, found {found}"),
        ),
        Expected::Ident => Diagnostic::error(
            Code::E0102,
            Label::new(here, "expected a name"),
            format!("expected a name, found {found}"),
        ),
        Expected::Other => {
            Diagnostic::error(Code::E0102, Label::new(here, "unexpected here"), format!("unexpected {found}"))
        }
        Expected::Stmt => Diagnostic::error(
            Code::E0102,
            Label::new(here, "expected a statement"),
            format!("expected a statement, found {found}"),
        )
        .with_help(format!("statements start with one of: {stmts}")),
        Expected::Expr => Diagnostic::error(
            Code::E0103,
            Label::new(here, "expected an expression"),
            format!("expected an expression, found {found}"),
        ),
        Expected::Close { open, close } => Diagnostic::error(
            Code::E0104,
            Label::new(here, format!("expected `{close}` here")),
            format!("unclosed delimiter: expected `{close}`, found {found}"),
        )
        .with_label(*open, "opened here"),
        Expected::StmtEnd => Diagnostic::error(
            Code::E0105,
            Label::new(here, "expected end of statement"),
            format!("expected end of statement, found {found}"),
        )
        .with_help(format!("each statement starts with a keyword ({stmts}); comparisons do not chain")),
        Expected::Chained(chain) => {
            let Chain { first, ops: [op1, op2], operands: (a, b, c) } = chain.as_ref();
            Diagnostic::error(
            Code::E0105,
            Label::new(here, "a second comparison"),
            format!("comparisons do not chain, found {found} after a comparison"),
        )
        .with_label(*first, "first comparison")
        .with_note("a comparison gives a condition, not a number, so `a < b < c` has no meaning")
        .with_help({
            let show = |s: &Span| text.get(s.range()).unwrap_or("?").to_string();
            let (a, b) = (show(a), show(b));
            let c = c.as_ref().map_or_else(|| "c".to_string(), show);
            format!("test each comparison and multiply the 0/1 results: `indicator({a} {op1} {b}) * indicator({b} {op2} {c})`")
        })
        }
        Expected::TooDeep => Diagnostic::error(
            Code::E0106,
            Label::new(here, "nesting limit reached here"),
            "expression nested too deeply".to_string(),
        )
        .with_note("seppoc accepts at most 64 nested parentheses or calls and expression trees 256 levels deep")
        .with_help("split the expression into `let` bindings"),
        Expected::BadNumber(why) => {
            Diagnostic::error(Code::E0107, Label::new(here, *why), format!("invalid number literal {found}: {why}"))
        }
    }
}

/// Greek letters commonly used for hyper-parameters, with the ASCII names the shipped objectives use.
const GREEK: &[(char, &str)] = &[
    ('α', "alpha"),
    ('β', "beta"),
    ('γ', "gamma"),
    ('δ', "delta"),
    ('ε', "eps"),
    ('η', "eta"),
    ('θ', "theta"),
    ('κ', "kappa"),
    ('λ', "lambda"),
    ('μ', "mu"),
    ('ρ', "rho"),
    ('σ', "sigma"),
    ('τ', "tau"),
    ('ω', "omega"),
];

/// E0102 for a name containing a non-ASCII letter or digit at `at` (`β`, `beta₂`, `é`): names are ASCII.
fn non_ascii_name(text: &str, at: usize) -> Option<Diagnostic> {
    let at = at.min(text.len());
    let c = text[at..].chars().next()?;
    if c.is_ascii() || !c.is_alphanumeric() {
        return None;
    }
    // The whole name, ASCII parts included (`betaβ`, `βeta`), so the label and the suggestion cover it.
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    let start = text[..at].char_indices().rev().take_while(|(_, c)| is_name(*c)).last().map_or(at, |(i, _)| i);
    let end = text[at..].find(|c: char| !is_name(c)).map_or(text.len(), |n| at + n);
    let name = &text[start..end];
    let ascii: Option<String> = name
        .chars()
        .map(|c| {
            if c.is_ascii() {
                Some(c.to_string())
            } else {
                GREEK.iter().find(|(g, _)| *g == c).map(|(_, n)| n.to_string())
            }
        })
        .collect();
    let help = match ascii {
        Some(a) if !name.is_empty() => format!("write it in ASCII, e.g. `{a}`"),
        _ => "spell the name with ASCII letters, digits and `_`".to_string(),
    };
    Some(
        Diagnostic::error(
            Code::E0102,
            Label::new(Span::new(at, at + c.len_utf8()), format!("`{c}` is not ASCII")),
            format!("name `{name}` contains the non-ASCII character `{c}`"),
        )
        .with_note("names are ASCII: a letter or `_`, then letters, digits or `_`")
        .with_help(help),
    )
}

/// Span of the token starting at `at` (at least one character, empty at end of file).
fn token_span(text: &str, at: usize) -> Span {
    let at = at.min(text.len());
    let rest = &text[at..];
    let len = match rest.chars().next() {
        None => 0,
        Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len())
        }
        Some(c) => c.len_utf8(),
    };
    Span::new(at, at + len)
}

/// Human description of what stands at `at`: "`loss`", "end of file", "a newline".
fn describe(text: &str, at: usize) -> String {
    let span = token_span(text, at);
    if span.start == span.end {
        return "end of file".to_string();
    }
    let tok = &text[span.range()];
    match tok {
        "\n" | "\r" => "end of line".to_string(),
        _ => format!("`{}`", tok.escape_debug()),
    }
}
