//! Constant expressions: literals, `-literal` and `inf`, as parameter defaults, bounds and call settings.

use super::Checker;
use crate::diag::{Code, Diagnostic, Label};
use crate::syntax::ast::{Expr, ExprKind};

/// A constant's value and whether it was written as an integer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Const {
    /// Value.
    pub value: f64,
    /// Written without `.` or exponent.
    pub integer: bool,
}

/// Evaluates a constant expression, or `None` if it is not one.
pub fn eval(e: &Expr) -> Option<Const> {
    match &e.kind {
        ExprKind::Int(v) => Some(Const { value: *v as f64, integer: true }),
        ExprKind::Real(v) => Some(Const { value: *v, integer: false }),
        ExprKind::Name(n) if n == "inf" => Some(Const { value: f64::INFINITY, integer: false }),
        ExprKind::Neg(x) => eval(x).map(|c| Const { value: -c.value, integer: c.integer }),
        _ => None,
    }
}

impl Checker {
    /// Evaluates `e` as a constant, reporting E0208 if it is not one.
    pub(crate) fn constant(&mut self, e: &Expr, what: &str) -> Option<Const> {
        let c = eval(e);
        if c.is_none() {
            self.report(
                Diagnostic::error(
                    Code::E0208,
                    Label::new(e.span, "not a constant"),
                    format!("{what} must be a constant"),
                )
                .with_help("write a number such as `20` or `0.5`"),
            );
        }
        c
    }

    /// A constant in `[lo, hi]` (E0308 outside), with E0205 if an integer is required and a real was given.
    pub(crate) fn bounded(&mut self, e: &Expr, what: &str, integer: bool, lo: f64, hi: f64) -> Option<f64> {
        let c = self.constant(e, what)?;
        if integer && !c.integer {
            self.report(Diagnostic::error(
                Code::E0205,
                Label::new(e.span, "a real number"),
                format!("{what} must be an integer, found {:?}", c.value),
            ));
            return None;
        }
        if !(lo..=hi).contains(&c.value) {
            self.report(Diagnostic::error(
                Code::E0308,
                Label::new(e.span, format!("must lie in [{lo}, {hi}]")),
                format!("{what} is {}, outside [{lo}, {hi}]", c.value),
            ));
            return None;
        }
        Some(c.value)
    }
}

/// The value of a constant expression (a checked program's constants always evaluate).
pub fn const_value(e: &Expr) -> Option<f64> {
    eval(e).map(|c| c.value)
}
