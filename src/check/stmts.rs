//! Statement rules: settings, parameters, references, bindings, logs and the loss.

use super::scope::{Binding, BindingKind};
use super::types::{Axis, Model, Scalar, Ty};
use super::*;
use crate::syntax::ast::{Arg, Ident, Interval, Stmt, StmtKind};

/// The reference strategies and the named arguments each takes: the one list that argument checking and the
/// "unknown strategy" diagnostic read (the strategies themselves are built in `reference`).
const STRATEGIES: [(&str, &[&str]); 4] =
    [("initial", &[]), ("latest", &[]), ("uniform", &["draw"]), ("ema", &["decay"])];
impl Checker {
    pub(crate) fn stmt(&mut self, stmt: &Stmt) {
        match &stmt.kind {
            StmtKind::Objective(id) => match &self.name {
                Some((_, prev)) => self.duplicate("objective", stmt.span, *prev),
                None => self.name = Some((id.name.clone(), stmt.span)),
            },
            StmtKind::Data(id) => {
                let kinds = [DataKind::Winners, DataKind::Pairs, DataKind::Labelled].map(|k| (k.word(), k));
                let kind = self.choice(id, "data set", &kinds);
                match (&self.data, kind) {
                    (Some((_, prev)), _) => self.duplicate("data", stmt.span, *prev),
                    (None, Some(k)) => self.data = Some((k, stmt.span)),
                    (None, None) => self.data_invalid = true,
                }
            }
            StmtKind::Noise(id) => {
                let kind = self.choice(
                    id,
                    "noise coupling",
                    &[("shared", Noise::Shared), ("independent", Noise::Independent)],
                );
                match (&self.noise, kind) {
                    (Some((_, prev)), _) => self.duplicate("noise", stmt.span, *prev),
                    (None, Some(k)) => self.noise = Some((k, stmt.span)),
                    (None, None) => {}
                }
            }
            StmtKind::Pool(args) => self.pool_stmt(args, stmt.span),
            StmtKind::Param { name, ty, default, domain } => self.param(name, ty, default, domain.as_ref()),
            StmtKind::Reference { name, strategy, args } => self.reference(name, strategy, args.as_deref(), stmt.span),
            StmtKind::Let(name, e) => {
                let ty = self.infer(e);
                self.declare(name, ty.clone(), BindingKind::Let);
                self.bindings.push((name.name.clone(), ty));
            }
            StmtKind::Log(name, e) => {
                self.in_log = true;
                let ty = self.infer(e);
                self.in_log = false;
                if self.logs.iter().any(|(n, _)| n == &name.name) {
                    self.report(Diagnostic::error(
                        Code::E0206,
                        Label::new(name.span, "logged again here"),
                        format!("`log {}` appears twice", name.name),
                    ));
                }
                if let Ty::Scalar(s) | Ty::Bool(s) = &ty {
                    if s.axis == Axis::Sample {
                        self.report(
                            Diagnostic::error(
                                Code::E0311,
                                Label::new(e.span, "one value per sample"),
                                format!("logged quantity `{}` is not reduced over the batch", name.name),
                            )
                            .with_help(format!("log mean(...) or sum(...), e.g. `log {} = mean(...)`", name.name)),
                        );
                    }
                } else if ty != Ty::Error {
                    self.report(Diagnostic::error(
                        Code::E0205,
                        Label::new(e.span, ty.describe()),
                        format!("only numbers can be logged, found {}", ty.describe()),
                    ));
                }
                self.logs.push((name.name.clone(), ty));
            }
            StmtKind::Loss(e) => {
                let ty = self.infer(e);
                if let Some((_, prev)) = &self.loss {
                    let prev = *prev;
                    self.duplicate("loss", stmt.span, prev);
                    return;
                }
                self.loss_rules(e, &ty);
                self.loss = Some((ty, stmt.span));
            }
        }
    }

    /// Maps a setting word to its value, reporting E0207 with the accepted words.
    pub(crate) fn choice<T: Copy>(&mut self, id: &Ident, what: &str, options: &[(&str, T)]) -> Option<T> {
        if let Some((_, v)) = options.iter().find(|(w, _)| *w == id.name) {
            return Some(*v);
        }
        let words: Vec<String> = options.iter().map(|(w, _)| w.to_string()).collect();
        let found = if id.name.is_empty() { "this".to_string() } else { format!("`{}`", id.name) };
        let mut diag = Diagnostic::error(
            Code::E0207,
            Label::new(id.span, format!("unknown {what}")),
            format!("unknown {what} {found}"),
        )
        .with_note(format!("expected one of: {}", words.join(", ")));
        if let Some(s) = scope::suggest(&id.name, &words) {
            diag = diag.with_help(format!("did you mean `{s}`?"));
        }
        self.report(diag);
        None
    }

    fn declare(&mut self, name: &Ident, ty: Ty, kind: BindingKind) {
        let binding = Binding { ty, span: name.span, kind, used: false };
        match self.scope.declare(&name.name, binding) {
            Ok(()) => {}
            Err(None) => self.report(Diagnostic::error(
                Code::E0206,
                Label::new(name.span, "builtin name"),
                format!("`{}` is a builtin name and cannot be redefined", name.name),
            )),
            Err(Some(prev)) => self.report(
                Diagnostic::error(
                    Code::E0206,
                    Label::new(name.span, "defined again here"),
                    format!("`{}` is defined twice", name.name),
                )
                .with_label(prev, "first defined here"),
            ),
        }
    }

    fn pool_stmt(&mut self, args: &[Arg], span: Span) {
        if let Some((_, prev)) = &self.pool {
            let prev = *prev;
            return self.duplicate("pool", span, prev);
        }
        let (mut every, mut keep) = (None, None);
        for arg in args {
            let Some(name) = &arg.name else { continue };
            let slot = match name.name.as_str() {
                "every" => &mut every,
                "keep" => &mut keep,
                other => {
                    self.report(
                        Diagnostic::error(
                            Code::E0204,
                            Label::new(name.span, "unknown setting"),
                            format!("`pool` has no setting `{other}`"),
                        )
                        .with_note("settings: every (updates between checkpoints), keep (checkpoints kept)"),
                    );
                    continue;
                }
            };
            if slot.is_some() {
                self.report(Diagnostic::error(
                    Code::E0204,
                    Label::new(name.span, "given again here"),
                    format!("`{}` is given twice", name.name),
                ));
                continue;
            }
            *slot = Some(arg);
        }
        let every = every.and_then(|a| self.bounded(&a.value, "`pool every`", true, 1.0, 1e9));
        let keep = keep.and_then(|a| self.bounded(&a.value, "`pool keep`", true, 1.0, 1e6));
        match (every, keep) {
            (Some(e), Some(k)) => self.pool = Some((Pool { every: e as u64, keep: k as u64 }, span)),
            _ if args.iter().all(|a| a.name.as_ref().is_some_and(|n| n.name == "every" || n.name == "keep"))
                && args.len() < 2 =>
            {
                self.report(
                    Diagnostic::error(
                        Code::E0204,
                        Label::new(span, "incomplete pool"),
                        "`pool` needs both `every` and `keep`",
                    )
                    .with_help("pool every = 30, keep = 7"),
                );
            }
            _ => {}
        }
    }

    fn param(&mut self, name: &Ident, ty: &Ident, default: &crate::syntax::ast::Expr, domain: Option<&Interval>) {
        let integer = self.choice(ty, "parameter type", &[("real", false), ("int", true)]);
        let value = self.constant(default, "a parameter default");
        if let (Some(true), Some(c)) = (integer, value) {
            if !c.integer {
                self.report(Diagnostic::error(
                    Code::E0205,
                    Label::new(default.span, "a real number"),
                    format!("`{}` is declared `int`, but its default is {:?}", name.name, c.value),
                ));
            }
        }
        let domain = domain.and_then(|d| {
            let lo = self.constant(&d.lo, "a domain bound")?;
            let hi = self.constant(&d.hi, "a domain bound")?;
            if lo.value > hi.value {
                self.report(Diagnostic::error(
                    Code::E0308,
                    Label::new(d.span, "empty interval"),
                    format!("domain of `{}` is empty: {} > {}", name.name, lo.value, hi.value),
                ));
                return None;
            }
            Some((lo.value, d.lo_closed, hi.value, d.hi_closed))
        });
        let param = Param {
            name: name.name.clone(),
            integer: integer.unwrap_or(false),
            default: value.map_or(0.0, |c| c.value),
            domain,
        };
        if let (Some(_), Some(range)) = (value, overrides::domain_error(&param, param.default)) {
            self.report(
                Diagnostic::error(
                    Code::E0308,
                    Label::new(default.span, format!("outside {range}")),
                    format!("default of `{}` is outside its domain {range}", name.name),
                )
                .with_note("Diffusion-DPO and SePPO use beta = 2000..5000 on a mean-MSE margin (arXiv 2311.12908)"),
            );
        }
        self.declare(name, Ty::Scalar(Scalar::CONST), BindingKind::Param);
        self.params.push(param);
    }

    fn reference(&mut self, name: &Ident, strategy: &Ident, args: Option<&[Arg]>, span: Span) {
        let args = args.unwrap_or(&[]);
        let allowed = STRATEGIES.iter().find(|(n, _)| *n == strategy.name).map_or(&[][..], |(_, a)| *a);
        let named = self.named_args(&strategy.name, args, allowed);
        let strat = match strategy.name.as_str() {
            "initial" => Some(Strategy::Initial),
            "latest" => Some(Strategy::Latest),
            "uniform" => {
                let draw = match named.get("draw") {
                    None => Some(Draw::Step),
                    Some(a) => {
                        let name = match &a.value.kind {
                            crate::syntax::ast::ExprKind::Name(n) => n.clone(),
                            _ => String::new(),
                        };
                        let id = Ident { name, span: a.value.span };
                        self.choice(&id, "draw granularity", &[("step", Draw::Step), ("sample", Draw::Sample)])
                    }
                };
                draw.map(Strategy::Uniform)
            }
            "ema" => match named.get("decay") {
                Some(a) => self.bounded(&a.value, "`ema` decay", false, 0.0, 1.0).map(|decay| Strategy::Ema { decay }),
                None => {
                    self.report(
                        Diagnostic::error(
                            Code::E0203,
                            Label::new(strategy.span, "needs `decay`"),
                            "`ema` needs a decay",
                        )
                        .with_help("reference ref = ema(decay = 0.999)"),
                    );
                    None
                }
            },
            "policy" => {
                self.report(
                    Diagnostic::error(Code::E0307, Label::new(strategy.span, "the trained policy"), format!("reference `{}` aliases the policy: a frozen reference would need gradients", name.name))
                        .with_note("with ref = policy, e_theta - e_ref is identically 0 and every DPO-family loss is stuck at ln 2")
                        .with_help("use `initial`, `latest`, `uniform` or `ema(decay = 0.999)`"),
                );
                None
            }
            _ => self.choice(strategy, "reference strategy", &STRATEGIES.map(|(n, _)| (n, ()))).and(None),
        };
        self.declare(name, Ty::Model(Model::Reference(name.name.clone())), BindingKind::Reference);
        if let Some(strategy) = strat {
            self.references.push((Reference { name: name.name.clone(), strategy }, span));
        }
    }

    /// The loss must be reduced exactly once, reach the policy, and not differentiate through a gate.
    fn loss_rules(&mut self, e: &crate::syntax::ast::Expr, ty: &Ty) {
        let s = match ty {
            Ty::Scalar(s) => *s,
            Ty::Error => return,
            other => {
                self.report(Diagnostic::error(
                    Code::E0205,
                    Label::new(e.span, other.describe()),
                    format!("the loss must be a number, found {}", other.describe()),
                ));
                return;
            }
        };
        if s.axis == Axis::Sample {
            self.report(
                Diagnostic::error(
                    Code::E0304,
                    Label::new(e.span, "one value per sample"),
                    "loss is not reduced over the batch",
                )
                .with_help("reduce last: `loss mean(...)`"),
            );
        }
        if !s.grad {
            self.report(
                Diagnostic::error(
                    Code::E0305,
                    Label::new(e.span, "no gradient reaches the policy"),
                    "loss cannot reach the policy's parameters",
                )
                .with_note("gradients come only from `err(policy, ...)` or `logratio(policy, ...)` outside `stopgrad`"),
            );
        }
        if let Some(gate) = s.gate_with_grad {
            self.report(
                Diagnostic::error(Code::E0306, Label::new(gate, "condition carries gradient"), "gradient through a gate")
                    .with_label(e.span, "used in the loss")
                    .with_note("a gate is piecewise constant: its condition must be computed outside the tape")
                    .with_help("wrap the condition in `stopgrad(...)`, e.g. `sign(stopgrad(err(ref, winner) - err(policy, winner)), tie = 1)`"),
            );
        }
    }
}
