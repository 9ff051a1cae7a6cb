//! `--set NAME=VALUE` overrides, parsed against the declared parameter type and domain.

use super::{Checked, Param};
use crate::diag::{Code, Diagnostic, Label};
use crate::source::Span;
use crate::syntax::ast::StmtKind;

/// Applies `--set` overrides and returns every parameter's value, or diagnostics (E0209, E0308) that point at
/// the parameter's declaration.
pub fn apply_overrides(checked: &Checked, sets: &[(String, String)]) -> Result<Vec<(String, f64)>, Vec<Diagnostic>> {
    let mut values: Vec<(String, f64)> = checked.params.iter().map(|p| (p.name.clone(), p.default)).collect();
    let mut diags = Vec::new();
    for (name, text) in sets {
        let Some(idx) = checked.params.iter().position(|p| &p.name == name) else {
            let known: Vec<&str> = checked.params.iter().map(|p| p.name.as_str()).collect();
            diags.push(
                Diagnostic::error(
                    Code::E0209,
                    Label::new(Span::default(), "parameters are declared with `param`"),
                    format!("`--set {name}=...`: no parameter `{name}`"),
                )
                .with_note(format!(
                    "declared parameters: {}",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )),
            );
            continue;
        };
        let param = &checked.params[idx];
        let span = decl_span(checked, name);
        match parse_value(param, text) {
            Ok(v) => match domain_error(param, v) {
                None => values[idx].1 = v,
                Some(range) => diags.push(Diagnostic::error(
                    Code::E0308,
                    Label::new(span, format!("declared with domain {range}")),
                    format!("`--set {name}={text}` is outside the domain {range}"),
                )),
            },
            Err(why) => {
                let diag = Diagnostic::error(
                    Code::E0209,
                    Label::new(span, "declared here"),
                    format!("`--set {name}={text}`: {why}"),
                );
                diags.push(if param.integer {
                    diag.with_note("integer parameters never truncate a real value; pass an integer")
                } else {
                    diag.with_note("real parameters take a decimal number such as `0.5` or `2e-3`")
                });
            }
        }
    }
    for spec in &checked.samples {
        for (setting, name) in &spec.from_params {
            let Some((_, v)) = values.iter().find(|(n, _)| n == name) else { continue };
            if let (Some(why), true) = (setting.reject(*v), sets.iter().any(|(n, _)| n == name)) {
                diags.push(Diagnostic::error(
                    Code::E0308,
                    Label::new(decl_span(checked, name), format!("used as `sample` {}", setting.name())),
                    format!("`--set {name}={v}`: {why}"),
                ));
            }
        }
    }
    if diags.is_empty() {
        Ok(values)
    } else {
        Err(diags)
    }
}

fn parse_value(param: &Param, text: &str) -> Result<f64, String> {
    let text = text.trim();
    if param.integer {
        text.parse::<i64>()
            .map(|v| v as f64)
            .map_err(|_| format!("`{}` is declared `int`; `{text}` is not an integer", param.name))
    } else {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("`{text}` is not a finite real number")),
        }
    }
}

/// `Some("(0, inf)")` if `v` lies outside the parameter's domain.
pub(crate) fn domain_error(param: &Param, v: f64) -> Option<String> {
    let (lo, lc, hi, hc) = param.domain?;
    let above = if lc { v >= lo } else { v > lo };
    let below = if hc { v <= hi } else { v < hi };
    if above && below {
        return None;
    }
    Some(format!("{}{lo}, {hi}{}", if lc { "[" } else { "(" }, if hc { "]" } else { ")" }))
}

fn decl_span(checked: &Checked, name: &str) -> Span {
    checked
        .file
        .stmts
        .iter()
        .find_map(|s| match &s.kind {
            StmtKind::Param { name: n, .. } if n.name == name => Some(s.span),
            _ => None,
        })
        .unwrap_or_default()
}
