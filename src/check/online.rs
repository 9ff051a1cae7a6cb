//! Online objectives: groups of samples per prompt (`sample(..., group = K)`), the group statistics
//! `group_mean(x)` and `group_std(x)` over each prompt's K rows, the mixed-prediction error `mix_err(M, R, w, x)`,
//! and the rules that tie them together once the whole file is read (E0317, E0318, W0308).

use super::types::{Axis, Model, Scalar, Ty};
use super::*;
use crate::syntax::ast::{Expr, ExprKind};

/// The largest group size `sample(..., group = K)` accepts (each row is one more generated image).
pub const MAX_GROUP: u32 = 64;

/// Where the file uses its online features, checked once the whole file is read.
#[derive(Clone, Debug, Default)]
pub(crate) struct OnlineUses {
    /// Every `sample(...)` call's group size with the span of its `group = K` argument (the call's, when absent).
    pub groups: Vec<(u32, Span, bool)>,
    /// Spans of the `group_mean` / `group_std` calls, with the function's name.
    pub stats: Vec<(&'static str, Span)>,
    /// `reward(x)` calls: whether `x` is generated (`sample(...)`) rather than a data image, and the call's span.
    pub rewards: Vec<(bool, Span)>,
}

impl Checker {
    /// `group = K` of `sample(...)`: an integer literal in [1, 64], default 1.
    pub(crate) fn group_arg(&mut self, e: Option<&Expr>, call: Span) -> Option<u32> {
        let Some(e) = e else {
            self.online.groups.push((1, call, false));
            return Some(1);
        };
        if let ExprKind::Name(n) = &e.kind {
            if n != "inf" {
                self.infer(e);
                self.report(
                    Diagnostic::error(
                        Code::E0208,
                        Label::new(e.span, "not a literal"),
                        "the group size of `sample` must be an integer literal",
                    )
                    .with_note("the group size fixes how a step's rows are laid out (K rows per prompt), so it is part of the file, not a `--set` parameter")
                    .with_help("write the number, e.g. `group = 8`"),
                );
                return None;
            }
        }
        let k = self.bounded(e, "the group size of `sample`", true, 1.0, f64::from(MAX_GROUP))? as u32;
        self.online.groups.push((k, e.span, true));
        Some(k)
    }

    /// `group_mean(x)`, `group_std(x)`: per sample in and out, never with gradient. A value with gradient is
    /// E0319 (outside `log` lines, which only print).
    pub(crate) fn group_call(&mut self, func: &str, arg: &Expr, tys: Vec<Ty>, span: Span) -> Ty {
        let name = if func == "group_mean" { "group_mean" } else { "group_std" };
        self.online.stats.push((name, span));
        let Some(s) = self.scalar(arg, tys.into_iter().next().unwrap_or(Ty::Error), &format!("`{func}`")) else {
            return Ty::Error;
        };
        if s.grad && !self.in_log {
            self.report(
                Diagnostic::error(
                    Code::E0319,
                    Label::new(arg.span, "carries gradient to the policy"),
                    format!("`{func}` of a value that carries gradient"),
                )
                .with_label(span, "computed without gradient")
                .with_note("group statistics never carry gradient (GRPO's and DiffusionNFT's advantages are constants): the policy would not be trained through this statistic, only through the other terms")
                .with_help(format!("if a constant statistic of this value is meant, say so: `{func}(stopgrad(...))`")),
            );
            return Ty::Error;
        }
        Ty::Scalar(Scalar { axis: s.axis, grad: false, gate_with_grad: s.gate_with_grad })
    }

    /// `mix_err(M, R, w, x)`: the training error of the mixed prediction `w·out_M + (1 - w)·out_R`; `R` a frozen
    /// reference, `w` a constant (as `pow`'s exponent).
    pub(crate) fn mix_err_call(&mut self, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let mut tys = tys.into_iter();
        let m = self.model(args[0], tys.next().unwrap_or(Ty::Error), "`mix_err`");
        let r = match tys.next().unwrap_or(Ty::Error) {
            Ty::Model(Model::Reference(n)) => Some(n),
            Ty::Model(Model::Policy) => {
                self.policy_as_reference("mix_err", args, args[1].span);
                None
            }
            Ty::Error => None,
            other => {
                let help = "models are `policy` or a name declared with `reference`";
                self.mismatch(args[1], &other, "`mix_err`", "a frozen reference", help);
                None
            }
        };
        let w = match self.scalar(args[2], tys.next().unwrap_or(Ty::Error), "`mix_err`") {
            Some(s) if s.axis != Axis::Const => {
                self.report(
                    Diagnostic::error(
                        Code::E0208,
                        Label::new(args[2].span, "varies with the batch"),
                        "the mixing weight of `mix_err` must be a constant",
                    )
                    .with_help("use a literal or a parameter, e.g. `mix_err(policy, old, beta, x)` with `param beta: real = 0.1`"),
                );
                None
            }
            other => other,
        };
        let x = self.images(args[3], tys.next().unwrap_or(Ty::Error), "`mix_err`");
        match (m, r, w, x) {
            (Some(m), Some(_), Some(_), Some(_)) => {
                Ty::Scalar(Scalar { axis: Axis::Sample, grad: m == Model::Policy, gate_with_grad: None })
            }
            _ => Ty::Error,
        }
    }

    /// E0317 (two group sizes), E0318 (a group statistic over groups of one) and W0308 (a data reward next to
    /// a generated images' reward), once the whole file is read.
    pub(crate) fn online_rules(&mut self) {
        let uses = std::mem::take(&mut self.online);
        let first = uses.groups.first().copied();
        if let Some((k0, at0, _)) = first {
            if let Some((k, at, given)) = uses.groups.iter().copied().find(|(k, _, _)| *k != k0) {
                let label = if given { format!("{k} rows per prompt") } else { "1 row per prompt (no `group`)".into() };
                self.report(
                    Diagnostic::error(Code::E0317, Label::new(at, label), "`sample` calls with different group sizes")
                        .with_label(at0, format!("group size {k0} here"))
                        .with_note("a step's rows come in blocks of K rows per prompt, one K for the whole file; every `sample(...)` gives each row one image")
                        .with_help(format!("give every `sample(...)` the same `group = {}`", k0.max(k))),
                );
            }
        }
        let group = uses.groups.iter().map(|g| g.0).max().unwrap_or(1);
        if group == 1 {
            for (func, span) in &uses.stats {
                let mut diag = Diagnostic::error(
                    Code::E0318,
                    Label::new(*span, "a statistic over one row"),
                    format!("`{func}` in a file with one sample per prompt"),
                )
                .with_note("without `group = K` every group is one row: `group_mean(x)` is `x` and `group_std(x)` is 0, so an advantage divided by it is not finite");
                diag = match uses.groups.first() {
                    Some((_, at, _)) => diag
                        .with_label(*at, "one sample per prompt")
                        .with_help("generate K samples per prompt: `sample(ref, prompt, group = 8)`"),
                    None => diag.with_help(
                        "group statistics reduce over the K samples one prompt gets: `let x = sample(ref, prompt, group = 8)`",
                    ),
                };
                self.report(diag);
            }
        }
        let data_reward = uses.rewards.iter().find(|(generated, _)| !generated);
        let online_reward = uses.rewards.iter().find(|(generated, _)| *generated);
        if let (Some((_, data_at)), Some((_, online_at))) = (data_reward, online_reward) {
            self.report(
                Diagnostic::error(
                    Code::W0308,
                    Label::new(*online_at, "scored by the run's reward model"),
                    "a data reward read next to the reward of generated images",
                )
                .with_label(*data_at, "the data's reward column")
                .with_note("`reward(winner)` (`loser`, `image`) is a column of the data; `reward(x)` of a `sample(...)` is scored at training time by the model `seppoc run --reward` names: different scorers, on different scales")
                .with_help("compare rewards from one scorer, or write `# allow(W0308): reason` if both are meant"),
            );
        }
    }
}
