//! Calls that read a noise draw: `draws(K, x)` (the average of `x` over K independent `(t, eps)` draws), the
//! `draw = k` argument that names one draw, `dist(M, R, x)` (prediction-space distance to a frozen model) and
//! the timestep quantities `timestep`, `alpha`, `sigma`, `snr`.

use super::types::{Axis, Model, Scalar, Ty};
use super::*;
use crate::syntax::ast::{Arg, Expr};
use std::collections::HashMap;

/// The most draws one `draws(K, ...)` or `draw = k` may name (each draw is one more pass per model and image).
pub const MAX_DRAWS: u32 = 64;

/// Functions that take `draw = k`.
pub const DRAWN: &[&str] = &["err", "logratio", "dist", "mix_err", "timestep", "alpha", "sigma", "snr"];

impl Checker {
    /// `draw = k` of a leaf function: an integer literal in [0, 63], not inside `draws(...)` (E0314).
    pub(crate) fn draw_arg(&mut self, func: &str, named: &HashMap<String, &Arg>) {
        let Some(arg) = named.get("draw") else { return };
        let e = &arg.value;
        let k = self.bounded(e, &format!("the draw of `{func}`"), true, 0.0, f64::from(MAX_DRAWS - 1));
        if k.is_some() {
            if let Some(outer) = self.draws_open.last().copied() {
                self.report(
                    Diagnostic::error(
                        Code::E0314,
                        Label::new(e.span, "a fixed draw"),
                        format!("`draw = ...` inside `draws(...)`: `{func}` would not be averaged over the draws"),
                    )
                    .with_label(outer, "averages over its draws here")
                    .with_help("remove `draw = ...` to average this term too, or move it out of `draws(...)`"),
                );
            }
        }
    }

    /// `draws(K, x)`: K an integer literal in [1, 64]; `x` any number; the result has `x`'s type.
    pub(crate) fn draws_call(&mut self, f_span: Span, args: &[&Expr]) -> Ty {
        let k = self.bounded(args[0], "the number of draws", true, 1.0, f64::from(MAX_DRAWS));
        if let Some(outer) = self.draws_open.last().copied() {
            self.report(
                Diagnostic::error(Code::E0314, Label::new(f_span, "nested here"), "`draws(...)` inside `draws(...)`")
                    .with_label(outer, "outer average")
                    .with_note("each term would be averaged over the inner draws only")
                    .with_help("average once: `draws(K, ...)` with K the total number of draws"),
            );
        }
        self.draws_open.push(f_span);
        let ty = self.infer(args[1]);
        self.draws_open.pop();
        let s = self.scalar(args[1], ty, "`draws`");
        match (k, s) {
            (Some(_), Some(s)) => Ty::Scalar(s),
            _ => Ty::Error,
        }
    }

    /// `dist(M, R, x)`: per sample, the mean over C,H,W of `(pred_M - pred_R)^2` on the same noised input;
    /// `R` is a frozen reference (its side never carries gradient).
    pub(crate) fn dist_call(&mut self, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let mut tys = tys.into_iter();
        let m = self.model(args[0], tys.next().unwrap_or(Ty::Error), "`dist`");
        let r = match tys.next().unwrap_or(Ty::Error) {
            Ty::Model(Model::Reference(n)) => Some(n),
            Ty::Model(Model::Policy) => {
                self.policy_as_reference("dist", args, args[1].span);
                None
            }
            Ty::Error => None,
            other => {
                let help = "models are `policy` or a name declared with `reference`";
                self.mismatch(args[1], &other, "`dist`", "a frozen reference", help);
                None
            }
        };
        let x = self.images(args[2], tys.next().unwrap_or(Ty::Error), "`dist`");
        match (m, r, x) {
            (Some(m), Some(_), Some(_)) => {
                Ty::Scalar(Scalar { axis: Axis::Sample, grad: m == Model::Policy, gate_with_grad: None })
            }
            _ => Ty::Error,
        }
    }

    /// `timestep(x)`, `alpha(x)`, `sigma(x)`, `snr(x)`: per-sample values of the draw that noises `x`, constant
    /// with respect to the policy.
    pub(crate) fn time_call(&mut self, func: &str, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let ty = tys.into_iter().next().unwrap_or(Ty::Error);
        match self.images(args[0], ty, &format!("`{func}`")) {
            Some(_) => Ty::Scalar(Scalar { axis: Axis::Sample, grad: false, gate_with_grad: None }),
            None => Ty::Error,
        }
    }
}
