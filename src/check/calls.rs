//! Builtin functions: denoising errors, reference sampling, scalar math, gates, stop-gradient, reductions.

use super::scope;
use super::types::{Axis, Images, Model, Scalar, Ty};
use super::*;
use crate::syntax::ast::{Arg, Expr, ExprKind, Ident};

/// Elementwise nonlinear functions of one number.
const UNARY: &[&str] =
    &["logsigmoid", "sigmoid", "softplus", "relu", "exp", "expm1", "log", "log1p", "sqrt", "tanh", "square", "abs"];

/// Every builtin function with the signature shown in arity errors.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("err", "err(model, images, draw = 0)"),
    ("logratio", "logratio(model, reference, images, draw = 0)"),
    ("dist", "dist(model, reference, images, draw = 0)"),
    ("mix_err", "mix_err(model, reference, w, images, draw = 0)"),
    ("timestep", "timestep(images, draw = 0)"),
    ("alpha", "alpha(images, draw = 0)"),
    ("sigma", "sigma(images, draw = 0)"),
    ("snr", "snr(images, draw = 0)"),
    ("draws", "draws(K, x)"),
    ("reward", "reward(images)"),
    ("sample", "sample(model, prompt, sampler = ddim, steps = 20, cfg = 5.0, eta = 0.0, group = 1)"),
    ("group_mean", "group_mean(x)"),
    ("group_std", "group_std(x)"),
    ("logsigmoid", "logsigmoid(x)"),
    ("sigmoid", "sigmoid(x)"),
    ("softplus", "softplus(x)"),
    ("relu", "relu(x)"),
    ("exp", "exp(x)"),
    ("expm1", "expm1(x)"),
    ("log", "log(x)"),
    ("log1p", "log1p(x)"),
    ("sqrt", "sqrt(x)"),
    ("tanh", "tanh(x)"),
    ("pow", "pow(x, p)"),
    ("square", "square(x)"),
    ("abs", "abs(x)"),
    ("min", "min(a, b)"),
    ("max", "max(a, b)"),
    ("clamp", "clamp(x, lo, hi)"),
    ("sign", "sign(x, tie = 1)"),
    ("indicator", "indicator(condition)"),
    ("where", "where(condition, a, b)"),
    ("stopgrad", "stopgrad(x)"),
    ("mean", "mean(x)"),
    ("sum", "sum(x)"),
];

impl Checker {
    pub(crate) fn call(&mut self, f: &Ident, args: &[Arg], span: Span) -> Ty {
        let Some((_, signature)) = FUNCTIONS.iter().find(|(n, _)| *n == f.name) else {
            for a in args {
                self.infer(&a.value);
            }
            let names: Vec<String> = FUNCTIONS.iter().map(|(n, _)| n.to_string()).collect();
            let mut diag = Diagnostic::error(
                Code::E0202,
                Label::new(f.span, "not a function"),
                format!("unknown function `{}`", f.name),
            );
            if let Some(s) = scope::suggest(&f.name, &names) {
                diag = diag.with_help(format!("did you mean `{s}`?"));
            }
            self.report(diag);
            return Ty::Error;
        };
        let allowed: &[&str] = match f.name.as_str() {
            "sample" => &["sampler", "steps", "cfg", "eta", "group"],
            "sign" => &["tie"],
            name if super::draws::DRAWN.contains(&name) => &["draw"],
            _ => &[],
        };
        let named = self.named_args(&f.name, args, allowed);
        self.draw_arg(&f.name, &named);
        if f.name == "draws" {
            let positional: Vec<&Expr> = args.iter().filter(|a| a.name.is_none()).map(|a| &a.value).collect();
            if positional.len() == 2 {
                return self.draws_call(f.span, &positional);
            }
        }
        let positional: Vec<&Expr> = args.iter().filter(|a| a.name.is_none()).map(|a| &a.value).collect();
        let expected = signature.split(',').filter(|p| !p.contains('=')).count();
        let tys: Vec<Ty> = positional.iter().map(|e| self.infer(e)).collect();
        if positional.len() != expected {
            self.report(
                Diagnostic::error(
                    Code::E0203,
                    Label::new(span, format!("{} given", positional.len())),
                    format!(
                        "`{}` takes {expected} argument{}, found {}",
                        f.name,
                        if expected == 1 { "" } else { "s" },
                        positional.len()
                    ),
                )
                .with_help(format!("the signature is `{signature}`")),
            );
            return Ty::Error;
        }
        match f.name.as_str() {
            "err" | "logratio" => self.err_call(&f.name, &positional, tys),
            "dist" => self.dist_call(&positional, tys),
            "mix_err" => self.mix_err_call(&positional, tys),
            "group_mean" | "group_std" => self.group_call(&f.name, positional[0], tys, span),
            "timestep" | "alpha" | "sigma" | "snr" => self.time_call(&f.name, &positional, tys),
            "reward" => self.reward_call(&positional, tys, f.span),
            "sample" => self.sample_call(&positional, tys, &named, span),
            "min" | "max" | "clamp" => self.nonlinear_n(&f.name, &positional, tys),
            "pow" => self.pow(&positional, tys),
            "sign" => self.sign(f, &positional, tys, &named),
            "indicator" | "where" => self.select(&f.name, &positional, tys),
            "stopgrad" => self
                .scalar(positional[0], tys[0].clone(), "`stopgrad`")
                .map_or(Ty::Error, |s| Ty::Scalar(Scalar { grad: false, gate_with_grad: None, ..s })),
            "mean" | "sum" => self.reduce(&f.name, positional[0], tys[0].clone(), span),
            name if UNARY.contains(&name) => self.nonlinear_n(name, &positional, tys),
            _ => Ty::Error,
        }
    }

    pub(crate) fn model(&mut self, e: &Expr, ty: Ty, context: &str) -> Option<Model> {
        match ty {
            Ty::Model(m) => Some(m),
            Ty::Error => None,
            other => {
                self.mismatch(e, &other, context, "a model", "models are `policy` or a name declared with `reference`");
                None
            }
        }
    }

    /// `err(M, x)` = mean over C,H,W of (eps_M(x_t, t, c) - eps)^2, per sample; `logratio(M, R, x)` =
    /// err(R, x) - err(M, x), the ELBO log-ratio log p_M/p_R with its positive constant folded into beta.
    fn err_call(&mut self, func: &str, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let n = args.len();
        let mut grad = false;
        let mut ok = true;
        for (k, (e, ty)) in args.iter().zip(tys).enumerate() {
            if k + 1 < n {
                match self.model(e, ty, &format!("`{func}`")) {
                    // `logratio(ref, policy, x)` is `-logratio(policy, ref, x)`: the objective trains in reverse.
                    Some(Model::Policy) if k == 1 => {
                        self.policy_as_reference(func, args, e.span);
                        ok = false;
                    }
                    Some(m) => grad |= m == Model::Policy,
                    None => ok = false,
                }
            } else {
                ok &= self.images(e, ty, &format!("`{func}`")).is_some();
            }
        }
        if !ok {
            return Ty::Error;
        }
        Ty::Scalar(Scalar { axis: Axis::Sample, grad, gate_with_grad: None })
    }

    /// E0205: the policy in the reference (second) position of `logratio` or `dist`, with the call written in
    /// the right order as help.
    pub(crate) fn policy_as_reference(&mut self, func: &str, args: &[&Expr], at: Span) {
        let what = match func {
            "dist" => "measures a model against",
            "mix_err" => "mixes a model's prediction with",
            _ => "is the log-ratio of a model over",
        };
        let first = match &args[0].kind {
            ExprKind::Name(n) if n != "policy" => n.clone(),
            _ => "ref".to_string(),
        };
        let images_at = if func == "mix_err" { 3 } else { 2 };
        let images = match args.get(images_at).map(|a| &a.kind) {
            Some(ExprKind::Name(n)) => n.clone(),
            _ => "winner".to_string(),
        };
        let call = if func == "mix_err" {
            format!("mix_err(policy, {first}, w, {images})")
        } else {
            format!("{func}(policy, {first}, {images})")
        };
        let mut diag = Diagnostic::error(
            Code::E0205,
            Label::new(at, "the trained policy"),
            format!("`{func}` {what} a frozen reference, found the policy"),
        )
        .with_help(format!("put the policy first: `{call}`"));
        if func == "logratio" {
            diag = diag.with_note(
                "`logratio(M, R, x)` = err(R, x) - err(M, x) = log p_M(x)/p_R(x); with the models swapped every term \
                 that uses it trains in reverse",
            );
        }
        self.report(diag);
    }

    fn sample_call(
        &mut self,
        args: &[&Expr],
        tys: Vec<Ty>,
        named: &std::collections::HashMap<String, &Arg>,
        span: Span,
    ) -> Ty {
        let mut tys = tys.into_iter();
        let model = self.model(args[0], tys.next().unwrap_or(Ty::Error), "`sample`");
        match tys.next() {
            Some(Ty::Prompt) | Some(Ty::Error) | None => {}
            Some(other) => self.report(
                Diagnostic::error(
                    Code::E0205,
                    Label::new(args[1].span, other.describe()),
                    format!("`sample` conditions on the prompts, found {}", other.describe()),
                )
                .with_help("write `sample(ref, prompt)`"),
            ),
        }
        let sampler = match named.get("sampler").map(|a| &a.value) {
            None => Some(SamplerKind::Ddim),
            Some(e) => {
                let word = match &e.kind {
                    ExprKind::Name(n) => n.clone(),
                    _ => String::new(),
                };
                self.choice(
                    &Ident { name: word, span: e.span },
                    "sampler",
                    &[("ddim", SamplerKind::Ddim), ("ddpm", SamplerKind::Ddpm)],
                )
            }
        };
        let mut from_params = Vec::new();
        let mut get = |cx: &mut Checker, setting: SampleSetting, default: f64| {
            let key = setting.name();
            let (integer, lo, hi) = setting.range();
            match named.get(key) {
                None => Some(default),
                Some(a) => match cx.sample_param(&a.value, setting) {
                    Some(Some((name, value))) => {
                        from_params.push((setting, name));
                        Some(value)
                    }
                    Some(None) => None,
                    None => cx.bounded(&a.value, &format!("`sample` {key}"), integer, lo, hi),
                },
            }
        };
        let steps = get(self, SampleSetting::Steps, 20.0);
        let cfg = get(self, SampleSetting::Cfg, 5.0);
        let eta = get(self, SampleSetting::Eta, 0.0);
        let group = self.group_arg(named.get("group").map(|a| &a.value), span);
        match model {
            Some(Model::Policy) => {
                self.report(
                    Diagnostic::error(Code::E0309, Label::new(args[0].span, "the trained policy"), "sampling from the policy would need gradients through the sampler")
                        .with_note("reference samples are generated without gradients by a frozen model")
                        .with_help("declare a frozen copy, e.g. `reference ref = latest` (SPIN) or `reference ref = uniform` (SePPO), and sample from it"),
                );
                Ty::Error
            }
            Some(Model::Reference(name)) => match (sampler, steps, cfg, eta, group) {
                (Some(sampler), Some(steps), Some(cfg), Some(eta), Some(group)) => {
                    self.samples.push(SampleSpec {
                        model: name,
                        sampler,
                        steps: steps as u64,
                        cfg,
                        eta,
                        group,
                        from_params,
                    });
                    Ty::Images(Images::Sample(self.samples.len() - 1))
                }
                _ => Ty::Error,
            },
            None => Ty::Error,
        }
    }

    /// A `sample` setting given by a parameter: `None` if `e` is not a parameter's name, `Some(None)` after an
    /// error (a real parameter for `steps`, E0205; a default outside the setting's range, E0308), else the
    /// parameter's name and default. `--set` values are checked again (`apply_overrides`, `bind`).
    fn sample_param(&mut self, e: &Expr, setting: SampleSetting) -> Option<Option<(String, f64)>> {
        let ExprKind::Name(n) = &e.kind else { return None };
        let param = self.params.iter().find(|p| &p.name == n)?.clone();
        self.infer(e);
        let (integer, lo, hi) = setting.range();
        if integer && !param.integer {
            self.report(
                Diagnostic::error(
                    Code::E0205,
                    Label::new(e.span, "a real parameter"),
                    format!("`sample` {} must be an integer, found the real parameter `{n}`", setting.name()),
                )
                .with_help(format!("declare it `param {n}: int = ...`")),
            );
            return Some(None);
        }
        if let Some(why) = setting.reject(param.default) {
            self.report(Diagnostic::error(
                Code::E0308,
                Label::new(e.span, format!("must lie in [{lo}, {hi}]")),
                format!("{why}; the default of `{n}` is {}", param.default),
            ));
            return Some(None);
        }
        Some(Some((param.name, param.default)))
    }

    /// Nonlinear functions of numbers; each argument must not be a batch-reduced value with gradient.
    fn nonlinear_n(&mut self, func: &str, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let mut acc: Option<Scalar> = None;
        let mut ok = true;
        for (e, ty) in args.iter().zip(tys) {
            match self.scalar(e, ty, &format!("`{func}`")) {
                Some(s) => {
                    self.nonlinear_arg(func, e, s);
                    acc = Some(acc.map_or(s, |a| a.join(s)));
                }
                None => ok = false,
            }
        }
        match (ok, acc) {
            (true, Some(s)) => Ty::Scalar(s),
            _ => Ty::Error,
        }
    }

    /// `pow(x, p)`: the exponent is a constant (literals, parameters, constant bindings), so the power has one
    /// derivative, `p x^(p-1)`, and `--set` can sweep it.
    fn pow(&mut self, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let exponent = tys.get(1).cloned();
        let ty = self.nonlinear_n("pow", args, tys);
        if let Some(Ty::Scalar(s)) = exponent {
            if s.axis != Axis::Const {
                self.report(
                    Diagnostic::error(Code::E0208, Label::new(args[1].span, "varies with the batch"), "the exponent of `pow` must be a constant")
                        .with_help("use a literal or a parameter, e.g. `pow(x, gamma)` with `param gamma: real = 2.0`; write `exp(p * log(x))` for a varying exponent"),
                );
                return Ty::Error;
            }
        }
        ty
    }

    /// `sign(x, tie = t)`: a gate in {-1, t, +1}; the tie value matters at the first update (docs/method.md, tie rule).
    fn sign(&mut self, f: &Ident, args: &[&Expr], tys: Vec<Ty>, named: &std::collections::HashMap<String, &Arg>) -> Ty {
        let Some(s) = self.scalar(args[0], tys.into_iter().next().unwrap_or(Ty::Error), "`sign`") else {
            return Ty::Error;
        };
        match named.get("tie") {
            Some(a) => {
                if let Some(c) = self.constant(&a.value, "the tie value") {
                    if ![-1.0, 0.0, 1.0].contains(&c.value) {
                        self.report(Diagnostic::error(Code::E0308, Label::new(a.value.span, "must be -1, 0 or 1"), format!("tie value {} is not -1, 0 or 1", c.value)));
                    }
                }
            }
            None => self.report(
                Diagnostic::error(Code::W0302, Label::new(f.span, "no tie rule"), "gate without a tie rule: sign(0) = 0 is used")
                    .with_note("ties are common: at the first update policy == reference and every sample ties; the tie value sets that update's gradient")
                    .with_help("state it: `sign(x, tie = 1)` (first step = SPIN), `tie = 0` (SFT) or `tie = -1`"),
            ),
        }
        Ty::Scalar(gate(s, args[0].span))
    }

    fn select(&mut self, func: &str, args: &[&Expr], tys: Vec<Ty>) -> Ty {
        let mut tys = tys.into_iter();
        let cond = match tys.next() {
            Some(Ty::Bool(s)) => Some(s),
            Some(Ty::Error) | None => None,
            Some(other) => {
                self.report(
                    Diagnostic::error(
                        Code::E0205,
                        Label::new(args[0].span, other.describe()),
                        format!("`{func}` expects a comparison, found {}", other.describe()),
                    )
                    .with_help("compare something, e.g. `indicator(stopgrad(x) > 0)`"),
                );
                None
            }
        };
        let mut value = Some(Scalar::CONST);
        for (e, ty) in args[1..].iter().zip(tys) {
            let s = self.scalar(e, ty, &format!("`{func}`"));
            value = value.zip(s).map(|(a, b)| a.join(b));
        }
        let (Some(cond), Some(value)) = (cond, value) else {
            return Ty::Error;
        };
        let gated = Scalar {
            axis: cond.axis.join(value.axis),
            grad: value.grad,
            gate_with_grad: cond.gate_with_grad.or(value.gate_with_grad),
        };
        Ty::Scalar(gated)
    }

    fn reduce(&mut self, func: &str, arg: &Expr, ty: Ty, span: Span) -> Ty {
        let s = match ty {
            Ty::Scalar(s) | Ty::Bool(s) => s,
            Ty::Error => return Ty::Error,
            other => return self.scalar(arg, other, &format!("`{func}`")).map_or(Ty::Error, Ty::Scalar),
        };
        if s.axis == Axis::Batch {
            self.report(
                Diagnostic::error(
                    Code::W0303,
                    Label::new(span, "reduced again here"),
                    format!("`{func}` of a value already reduced over the batch"),
                )
                .with_label(arg.span, "already one value per batch"),
            );
        }
        let axis = if s.axis == Axis::Const { Axis::Const } else { Axis::Batch };
        Ty::Scalar(Scalar { axis, ..s })
    }
}

/// A gate's output: piecewise constant, so no gradient; remembers whether its condition carried one.
fn gate(cond: Scalar, span: Span) -> Scalar {
    let taint = if cond.grad { Some(span) } else { cond.gate_with_grad };
    Scalar { axis: cond.axis, grad: false, gate_with_grad: taint }
}
