//! The front end as one call: source text to checked program, with every diagnostic on failure.

use crate::check::{self, Checked};
use crate::diag::{Code, Diagnostic, Label};
use crate::ir;
use crate::lint;
use crate::source::SourceFile;
use crate::syntax;

/// Parses and checks a file. Syntax errors stop before checking (the tree would be partial); otherwise the
/// checker reports everything it finds. Warnings of an accepted program are in `Checked::warnings`.
/// The lints of [`crate::lint`] run on an accepted program; `# allow(CODE): reason` comments then drop the
/// warnings they name.
pub fn frontend(file: &SourceFile) -> Result<Checked, Vec<Diagnostic>> {
    match checked_and_linted(file) {
        Ok(mut checked) => {
            checked.warnings = lint::apply_allows(&file.text, std::mem::take(&mut checked.warnings), true);
            Ok(checked)
        }
        Err(diags) => Err(lint::apply_allows(&file.text, diags, false)),
    }
}

fn checked_and_linted(file: &SourceFile) -> Result<Checked, Vec<Diagnostic>> {
    let (ast, errors) = syntax::parse(file);
    if !errors.is_empty() {
        return Err(errors);
    }
    let checked = check::check(&ast)?;
    let defaults: Vec<(String, f64)> = checked.params.iter().map(|p| (p.name.clone(), p.default)).collect();
    let mut checked = constants_finite(checked, &defaults, "")?;
    checked.warnings.extend(lint::lints(&checked));
    checked.warnings.sort_by_key(|d| (d.primary.span.start, d.code));
    Ok(checked)
}

/// E0313 for every constant term that is not finite with these parameter values (see
/// [`ir::nonfinite_constants`]); on failure the program's warnings come along.
fn constants_finite(checked: Checked, values: &[(String, f64)], context: &str) -> Result<Checked, Vec<Diagnostic>> {
    let Ok(bound) = ir::lower(&checked).bind(values) else {
        return Ok(checked);
    };
    let found = ir::nonfinite_constants(&bound);
    if found.is_empty() {
        return Ok(checked);
    }
    let mut diags = checked.warnings;
    for nf in found {
        let span = bound.spans[nf.node.0 as usize];
        let mut diag = if nf.divides_by_zero {
            Diagnostic::error(
                Code::E0313,
                Label::new(span, "the denominator is a constant 0"),
                "division by a constant zero",
            )
            .with_note("the quotient is infinite or NaN for every sample")
        } else {
            Diagnostic::error(
                Code::E0313,
                Label::new(span, format!("evaluates to {}", show(nf.value))),
                format!("constant term is {}", if nf.value.is_nan() { "NaN" } else { "infinite" }),
            )
        };
        if let Some(domain) = domain_note(bound.node(nf.node)).filter(|_| !nf.divides_by_zero) {
            diag = diag.with_note(domain);
        }
        if !nf.params.is_empty() {
            let used: Vec<String> = nf
                .params
                .iter()
                .map(|p| format!("{} = {}", bound.params[p.0 as usize].name, bound.value(*p)))
                .collect();
            diag = diag.with_note(format!("computed with {}{context}", used.join(", ")));
        }
        diags.push(
            diag.with_help(
                "a NaN or infinite value reaching the loss stops training at its first step: fix the constant",
            ),
        );
    }
    diags.sort_by_key(|d| (d.primary.span.start, d.code));
    Err(diags)
}

fn show(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+inf"
    } else {
        "-inf"
    }
}

/// Where a function is finite, for the functions that have a restricted domain.
fn domain_note(node: &ir::Node) -> Option<&'static str> {
    use ir::{BinOp, Node, UnOp};
    Some(match node {
        Node::Unary(UnOp::Log, _) => "`log(x)` is finite for x > 0",
        Node::Unary(UnOp::Log1p, _) => "`log1p(x)` is finite for x > -1",
        Node::Unary(UnOp::Sqrt, _) => "`sqrt(x)` is defined for x >= 0",
        Node::Unary(UnOp::Exp | UnOp::Expm1, _) => "`exp(x)` overflows f64 above x = 709",
        Node::Binary(BinOp::Pow, ..) => "`pow(a, b)` needs a > 0 for a non-integer b, and a != 0 for b < 0",
        Node::Binary(BinOp::Div, ..) => "`a / b` needs b != 0",
        _ => return None,
    })
}

/// A checked program with its final parameter values (name, value), after `--set`.
pub type WithParams = (Checked, Vec<(String, f64)>);

/// [`frontend`] followed by `--set` overrides (validated against each parameter's type and domain); returns
/// the program and the final parameter values.
pub fn frontend_with(file: &SourceFile, sets: &[(String, String)]) -> Result<WithParams, Vec<Diagnostic>> {
    let checked = frontend(file)?;
    let values = check::apply_overrides(&checked, sets)?;
    let checked = if sets.is_empty() { checked } else { constants_finite(checked, &values, " (after `--set`)")? };
    Ok((checked, values))
}

/// A checked objective together with its source: the entry point for using seppoc from Rust.
#[derive(Clone, Debug)]
pub struct Objective {
    /// Where it came from.
    pub source: SourceFile,
    /// The checked program.
    pub checked: Checked,
}

impl Objective {
    /// Parses and checks objective text; `path` is only used in diagnostics.
    pub fn parse(path: &str, text: &str) -> Result<Objective, (SourceFile, Vec<Diagnostic>)> {
        let source = SourceFile::new(path, text);
        match frontend(&source) {
            Ok(checked) => Ok(Objective { source, checked }),
            Err(diags) => Err((source, diags)),
        }
    }

    /// The canonical text of the objective (what `seppoc fmt` prints).
    pub fn canonical_text(&self) -> String {
        syntax::format(&self.checked.file)
    }
}
