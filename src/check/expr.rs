//! Expression typing: names, arithmetic, comparisons, and the batch-axis rules.

use super::scope;
use super::types::{Axis, Images, Scalar, Ty};
use super::*;
use crate::syntax::ast::{Arg, BinOp, Expr, ExprKind};
use std::collections::HashMap;

impl Checker {
    /// Infers the type of an expression, reporting what is wrong inside it.
    pub(crate) fn infer(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Real(_) => Ty::Scalar(Scalar::CONST),
            ExprKind::Name(n) => self.name(n, e.span),
            ExprKind::Neg(x) => {
                let ty = self.infer(x);
                self.scalar(x, ty, "`-`").map_or(Ty::Error, Ty::Scalar)
            }
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r),
            ExprKind::Call(f, args) => self.call(f, args, e.span),
        }
    }

    fn name(&mut self, n: &str, span: Span) -> Ty {
        if let Some(ty) = self.scope.lookup(n) {
            if let Some(field) = data::FIELDS.iter().find(|f| **f == n) {
                self.data_uses.push((field, span));
            }
            return ty;
        }
        let mut diag = Diagnostic::error(Code::E0201, Label::new(span, "not found"), format!("unknown name `{n}`"));
        if let Some(s) = scope::suggest(n, &self.scope.candidates()) {
            diag = diag.with_help(format!("did you mean `{s}`?"));
        } else {
            diag = diag
                .with_note(format!("names are builtins ({}) or declared above their use", scope::BUILTINS.join(", ")));
        }
        self.report(diag);
        Ty::Error
    }

    fn binary(&mut self, op: BinOp, l: &Expr, r: &Expr) -> Ty {
        let (lt, rt) = (self.infer(l), self.infer(r));
        let what = format!("`{}`", op.symbol());
        let (Some(a), Some(b)) = (self.scalar(l, lt, &what), self.scalar(r, rt, &what)) else {
            return Ty::Error;
        };
        let joined = a.join(b);
        if op.is_comparison() {
            // A comparison is a gate: its result is piecewise constant, so no gradient flows out of it.
            let taint = if joined.grad { Some(l.span.to(r.span)) } else { joined.gate_with_grad };
            return Ty::Bool(Scalar { axis: joined.axis, grad: false, gate_with_grad: taint });
        }
        self.product_of_reductions(op, l, r, a, b);
        Ty::Scalar(joined)
    }

    /// Requires a number; a comparison is accepted only by `where`, `indicator`, `mean` and `sum`.
    pub(crate) fn scalar(&mut self, e: &Expr, ty: Ty, context: &str) -> Option<Scalar> {
        match ty {
            Ty::Scalar(s) => Some(s),
            Ty::Error => None,
            Ty::Bool(_) => {
                self.report(
                    Diagnostic::error(
                        Code::E0205,
                        Label::new(e.span, "a comparison"),
                        format!("{context} expects a number, found a comparison"),
                    )
                    .with_help("turn it into 0/1 with `indicator(...)`, or choose with `where(cond, a, b)`"),
                );
                None
            }
            other => {
                let help = match other {
                    Ty::Model(_) | Ty::Images(_) => "denoising errors are numbers: `err(model, images)`",
                    _ => "use a number here",
                };
                self.report(
                    Diagnostic::error(
                        Code::E0205,
                        Label::new(e.span, other.describe()),
                        format!("{context} expects a number, found {}", other.describe()),
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    /// E0303: a nonlinearity applied to a batch-reduced value that still carries gradient.
    pub(crate) fn nonlinear_arg(&mut self, func: &str, arg: &Expr, s: Scalar) {
        if s.axis == Axis::Batch && s.grad {
            self.report(
                Diagnostic::error(Code::E0303, Label::new(arg.span, format!("reduced over the batch before `{func}`")), format!("batch reduction inside the nonlinearity `{func}`"))
                    .with_note("by Jensen's inequality f(mean(x)) is a different, weaker loss than mean(f(x)) (diffusers issue #6702)")
                    .with_help(format!("reduce last: apply `{func}` per sample and wrap the result in `mean(...)`")),
            );
        }
    }

    /// W0304: `mean(a) * mean(b)` with gradient through both, or `x / mean(b)` with gradient through the
    /// denominator: nonlinear in batch means, so the gradient is not the batch mean of per-sample gradients.
    /// Not in a `log` line, whose value is only printed.
    fn product_of_reductions(&mut self, op: BinOp, l: &Expr, r: &Expr, a: Scalar, b: Scalar) {
        if self.in_log {
            return;
        }
        let nonlinear = match op {
            BinOp::Mul => a.axis == Axis::Batch && b.axis == Axis::Batch && a.grad && b.grad,
            BinOp::Div => a.axis == Axis::Batch && b.axis == Axis::Batch && b.grad,
            _ => false,
        };
        if nonlinear {
            let what = if op == BinOp::Mul { "product" } else { "quotient" };
            self.report(
                Diagnostic::error(Code::W0304, Label::new(l.span.to(r.span), format!("{what} of two batch reductions")), format!("{what} of batch reductions that carry gradient"))
                    .with_label(r.span, "reduced over the batch, with gradient")
                    .with_note("the loss is nonlinear in the batch means, so its gradient is not the mean of per-sample gradients and depends on the batch size")
                    .with_help("combine per sample and reduce last, e.g. `mean(a * b)`, or wrap the factor that should not be trained in `stopgrad(...)`"),
            );
        }
    }

    /// Splits named arguments, reporting unknown (not in `allowed`) and repeated names (E0204).
    pub(crate) fn named_args<'a>(&mut self, func: &str, args: &'a [Arg], allowed: &[&str]) -> HashMap<String, &'a Arg> {
        let mut out: HashMap<String, &Arg> = HashMap::new();
        for arg in args {
            let Some(name) = &arg.name else { continue };
            if !allowed.contains(&name.name.as_str()) {
                let known: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
                let mut diag = Diagnostic::error(
                    Code::E0204,
                    Label::new(name.span, "unknown argument"),
                    format!("`{func}` has no argument `{}`", name.name),
                );
                diag = match scope::suggest(&name.name, &known) {
                    Some(s) => diag.with_help(format!("did you mean `{s}`?")),
                    None if known.is_empty() => diag.with_note(format!("`{func}` takes no named arguments")),
                    None => diag.with_note(format!("named arguments of `{func}`: {}", known.join(", "))),
                };
                self.report(diag);
            } else if out.contains_key(&name.name) {
                self.report(Diagnostic::error(
                    Code::E0204,
                    Label::new(name.span, "given again here"),
                    format!("argument `{}` is given twice", name.name),
                ));
            } else {
                out.insert(name.name.clone(), arg);
            }
        }
        out
    }

    /// Requires images (a data image kind or a `sample(...)` result).
    pub(crate) fn images(&mut self, e: &Expr, ty: Ty, context: &str) -> Option<Images> {
        match ty {
            Ty::Images(i) => Some(i),
            Ty::Error => None,
            other => {
                self.mismatch(
                    e,
                    &other,
                    context,
                    "images",
                    "images are `winner`, `loser`, `image`, or a `sample(ref, prompt)` binding",
                );
                None
            }
        }
    }

    /// E0205: `context` expects `expected` but `e` is `found`.
    pub(crate) fn mismatch(&mut self, e: &Expr, found: &Ty, context: &str, expected: &str, help: &str) {
        self.report(
            Diagnostic::error(
                Code::E0205,
                Label::new(e.span, found.describe()),
                format!("{context} expects {expected}, found {}", found.describe()),
            )
            .with_help(help),
        );
    }
}
