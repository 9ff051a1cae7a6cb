//! The data a file reads: which images and per-sample fields each data kind defines (`winner`, `loser`,
//! `image`, `label`, `weight`, `reward(x)`), checked against the `data` statement once the whole file is read.

use super::types::{Axis, Images, Scalar, Ty};
use super::*;
use crate::syntax::ast::Expr;

/// Names and functions whose meaning depends on the data kind (`reward` is the function).
pub(crate) const FIELDS: &[&str] = &["winner", "loser", "image", "label", "weight", "reward"];

impl Checker {
    /// `reward(x)`: per sample, without gradient, the reward of the images `x`: the data's reward column for a
    /// data image (`winner`, `loser`, `image`), the run's reward model's score for generated images
    /// (`sample(...)`, scored at training time).
    pub(crate) fn reward_call(&mut self, args: &[&Expr], tys: Vec<Ty>, span: Span) -> Ty {
        let ty = tys.into_iter().next().unwrap_or(Ty::Error);
        match self.images(args[0], ty, "`reward`") {
            Some(Images::Sample(_)) => {
                self.online.rewards.push((true, span));
                Ty::Scalar(Scalar { axis: Axis::Sample, grad: false, gate_with_grad: None })
            }
            Some(_) => {
                self.data_uses.push(("reward", span));
                self.online.rewards.push((false, span));
                Ty::Scalar(Scalar { axis: Axis::Sample, grad: false, gate_with_grad: None })
            }
            None => Ty::Error,
        }
    }

    /// E0310 (`loser` with unpaired winners) and E0316 (an image or field the data kind does not define).
    pub(crate) fn data_rules(&mut self, data: DataKind) {
        // A `data` statement with an unknown kind (`data pair`) is already an error; which data set was meant
        // is unknown, so nothing is reported against a default the user did not choose.
        if self.data_invalid {
            return;
        }
        let declared = self.data.map(|(_, s)| s);
        for (field, span) in std::mem::take(&mut self.data_uses) {
            let diag = match (data, field) {
                (DataKind::Winners, "loser") => Diagnostic::error(
                    Code::E0310,
                    Label::new(span, "the loser image is only defined for paired data"),
                    "`loser` used with an unpaired data set",
                )
                .with_help("declare `data pairs`, or generate the second image with `sample(ref, prompt)`"),
                (DataKind::Winners | DataKind::Pairs, "image") => Diagnostic::error(
                    Code::E0316,
                    Label::new(span, "only defined for `data labelled`"),
                    "`image` is the one image of an unpaired labelled sample",
                )
                .with_help(
                    "declare `data labelled` (each sample: one image, its caption and its label), or use `winner`",
                ),
                (DataKind::Winners, "label") => Diagnostic::error(
                    Code::E0316,
                    Label::new(span, "1 for every sample of `data winners`"),
                    "`label` carries no information in `data winners`",
                )
                .with_note("`data winners` keeps the winners of decided comparisons only, so every label is 1")
                .with_help("declare `data pairs` (ties then come with label 0.5) or `data labelled` (label 1 or 0)"),
                (DataKind::Labelled, "winner" | "loser") => Diagnostic::error(
                    Code::E0316,
                    Label::new(span, "not defined for `data labelled`"),
                    format!("`{field}` used with unpaired labelled data"),
                )
                .with_note("each sample of `data labelled` is one image, named `image`, with its `label` (1 or 0)")
                .with_help("write `image` and weight its terms by `label`, or declare `data pairs`"),
                _ => continue,
            };
            let what = if diag.code == Code::E0310 { "data declared unpaired here" } else { "data declared here" };
            let diag = match declared {
                Some(d) => diag.with_label(d, what),
                None => diag.with_note("without a `data` statement the data set is `data winners`"),
            };
            self.report(diag);
        }
    }
}
