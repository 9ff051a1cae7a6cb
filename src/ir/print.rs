//! Stable text of the IR and of the per-step execution plan (`seppoc explain`).

use super::*;
use std::fmt::Write;

impl Objective {
    /// The IR, one node per line, then the loss, logs and the plan.
    pub fn explain(&self) -> String {
        let taped = self.taped();
        let mut s = String::new();
        let _ = writeln!(s, "objective {}", self.name);
        let _ = writeln!(s, "\n# leaves (per-sample model passes; names used by `seppoc loss --inputs`)");
        for (k, input) in self.inputs.iter().enumerate() {
            let grad = if input.model == ModelRef::Policy { "  (gradient)" } else { "" };
            let draw = if input.draw == 0 { String::new() } else { format!(", draw = {}", input.draw) };
            let (func, against) = match &input.against {
                None => ("err", String::new()),
                Some(r) => ("dist", format!("{r}, ")),
            };
            let (m, x) = (input.model.name(), image_name(input.images));
            let _ = writeln!(s, "in{k} {} = {func}({m}, {against}{x}{draw}){grad}", input.name());
        }
        if !self.datums.is_empty() {
            let _ = writeln!(s, "\n# data (per-sample or per-step values, no gradient; also `--inputs` names)");
            for (k, d) in self.datums.iter().enumerate() {
                let what = match d {
                    Datum::Time(q, v) => {
                        let draw = if v.draw == 0 { String::new() } else { format!(", draw = {}", v.draw) };
                        format!("{}({}{draw})", q.name(), image_name(v.images))
                    }
                    Datum::Progress => "progress (updates applied / updates of the run)".to_string(),
                    Datum::Timesteps => "num_timesteps (the noise schedule's training timesteps T)".to_string(),
                    Datum::Label => "label (the data's label of each sample)".to_string(),
                    Datum::Weight => "weight (the data's weight of each sample)".to_string(),
                    Datum::Reward(x @ ImageRef::Sample(_)) => {
                        format!("reward({}) (the run's reward model's score of each generated image)", image_name(*x))
                    }
                    Datum::Reward(x) => format!("reward({}) (the data's reward of each image)", image_name(*x)),
                };
                let _ = writeln!(s, "d{k} {} = {what}", d.name());
            }
        }
        let _ = writeln!(s, "\n# nodes (topological; * = on the tape)");
        for (k, node) in self.nodes.iter().enumerate() {
            let mark = if taped[k] { "*" } else { " " };
            let _ = writeln!(s, "{mark}n{k} = {}", self.node_text(node));
        }
        let _ = writeln!(s, "\nloss = n{}", self.loss.0);
        for (name, id) in &self.logs {
            let _ = writeln!(s, "log {name} = n{}", id.0);
        }
        s.push_str(&self.plan_text());
        s
    }

    fn node_text(&self, node: &Node) -> String {
        let n = |id: &NodeId| format!("n{}", id.0);
        match node {
            Node::Input(k) => format!("input in{} ({})", k.0, self.inputs[k.0 as usize].name()),
            Node::Datum(k) => format!("datum {}", self.datums[k.0 as usize].name()),
            Node::Param(k) => {
                let p = &self.params[k.0 as usize];
                format!("param {} (default {:?})", p.name, p.default)
            }
            Node::Const(bits) => format!("const {:?}", f64::from_bits(*bits)),
            Node::Unary(op, x) => format!("{} {}", format!("{op:?}").to_lowercase(), n(x)),
            Node::Binary(op, a, b) => format!("{} {} {}", format!("{op:?}").to_lowercase(), n(a), n(b)),
            Node::Clamp(x, lo, hi) => format!("clamp {} {} {}", n(x), n(lo), n(hi)),
            Node::Compare(op, a, b) => format!("{} {} {}", format!("{op:?}").to_lowercase(), n(a), n(b)),
            Node::Sign { arg, tie } => format!("sign {} tie={:?}", n(arg), f64::from_bits(*tie)),
            Node::Where(c, a, b) => format!("where {} {} {}", n(c), n(a), n(b)),
            Node::StopGrad(x) => format!("stopgrad {}", n(x)),
            Node::Reduce(op, x) => format!("{} {}", format!("{op:?}").to_lowercase(), n(x)),
            Node::Group(op, x) => format!("{} {} (over groups of {} rows)", op.name(), n(x), self.group()),
        }
    }

    /// Which images each step needs, which model passes run on them, and the network evaluations per sample.
    pub fn plan_text(&self) -> String {
        let plan = self.plan();
        let mut s = String::new();
        let group = self.group();
        // Counts are per prompt; with groups, per row (each row its own image and passes).
        let unit = if group == 1 { "prompt" } else { "row" };
        if group == 1 {
            let _ = writeln!(s, "\n# plan per training step (B = prompts per batch)");
            let _ = writeln!(s, "data: {:?}; noise: {:?} (t, eps) per prompt", self.data, self.noise);
        } else {
            let _ = writeln!(s, "\n# plan per training step (B = rows per batch, in groups of {group} per prompt)");
            let _ = writeln!(s, "data: {:?}; noise: {:?} (t, eps) per row", self.data, self.noise);
            let _ = writeln!(
                s,
                "group: {group} rows per prompt, each with its own generated image and noise draw; \
                 group_mean and group_std reduce over each prompt's {group} rows"
            );
        }
        match self.data {
            DataKind::Labelled => {
                let _ = writeln!(s, "samples: one image each, a decided comparison's winner (label 1) or loser (label 0); ties left out");
            }
            DataKind::Pairs if self.datums.contains(&Datum::Label) => {
                let _ = writeln!(s, "samples: decided pairs (label 1) and ties (label 0.5, image 0 as winner)");
            }
            _ => {}
        }
        let fields: Vec<String> = self.datums.iter().filter(|d| d.is_field()).map(Datum::name).collect();
        if !fields.is_empty() {
            let _ = writeln!(s, "data fields read: {}", fields.join(", "));
        }
        let scored: Vec<String> = self.datums.iter().filter(|d| d.is_online_reward()).map(Datum::name).collect();
        if !scored.is_empty() {
            let _ = writeln!(s, "rewards scored at training time by the run's reward model: {}", scored.join(", "));
        }
        if let Some(p) = self.pool {
            let _ = writeln!(s, "pool: checkpoint every {} updates, keep {}", p.every, p.keep);
        }
        for r in &self.references {
            let _ = writeln!(s, "reference {}: {:?}", r.name, r.strategy);
        }
        for (k, spec) in self.samples.iter().enumerate() {
            let per = if spec.cfg == 1.0 { 1 } else { 2 };
            let _ = writeln!(
                s,
                "images sample{k}: {:?} from {}, {} steps, cfg {:?}, eta {:?} -> {} NFE per {unit}, no gradient",
                spec.sampler,
                spec.model,
                spec.steps,
                spec.cfg,
                spec.eta,
                spec.steps * per
            );
        }
        for pass in &plan.passes {
            let imgs: Vec<String> = pass.images.iter().map(View::name).collect();
            let tape = if pass.model == ModelRef::Policy { "taped" } else { "untaped" };
            let _ = writeln!(
                s,
                "pass {} ({tape}) on [{}] -> {} NFE per {unit}",
                pass.model.name(),
                imgs.join(", "),
                pass.images.len()
            );
        }
        let _ = writeln!(
            s,
            "NFE per {unit} per step: {} (denoising passes) + {} (sampling) = {}",
            plan.nfe_passes,
            plan.nfe_sampling,
            plan.nfe_passes + plan.nfe_sampling
        );
        s
    }
}

/// One batched model pass: every view (images under one draw) the model must denoise in a step, in one forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// The model.
    pub model: ModelRef,
    /// The views, in first-use order.
    pub images: Vec<View>,
}

/// The minimum work of one training step, per prompt in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One pass per model (the policy's first, taped).
    pub passes: Vec<Pass>,
    /// Network evaluations of the denoising passes, per prompt: each (model, view) exactly once.
    pub nfe_passes: u64,
    /// Network evaluations of reference sampling, per prompt (two per step under CFG).
    pub nfe_sampling: u64,
}

impl Objective {
    /// Derives the plan: leaves grouped by model, so each (model, images, t, eps) is evaluated once; a
    /// `dist(M, R, x)` needs the passes of both `M` and `R` on `x`.
    pub fn plan(&self) -> Plan {
        let mut models: Vec<ModelRef> = Vec::new();
        for input in &self.inputs {
            let against = input.against.iter().map(|r| ModelRef::Reference(r.clone()));
            for m in std::iter::once(input.model.clone()).chain(against) {
                if !models.contains(&m) {
                    models.push(m);
                }
            }
        }
        models.sort_by_key(|m| *m != ModelRef::Policy);
        let passes: Vec<Pass> = models.into_iter().map(|m| Pass { images: self.views(Some(&m)), model: m }).collect();
        let nfe_passes = passes.iter().map(|p| p.images.len() as u64).sum();
        let nfe_sampling = self.samples.iter().map(|s| s.steps * if s.cfg == 1.0 { 1 } else { 2 }).sum();
        Plan { passes, nfe_passes, nfe_sampling }
    }
}

/// The name of an image kind: `winner`, `loser`, `sample0`, ...
pub fn image_name(i: ImageRef) -> String {
    match i {
        ImageRef::Winner => "winner".to_string(),
        ImageRef::Loser => "loser".to_string(),
        ImageRef::Image => "image".to_string(),
        ImageRef::Sample(k) => format!("sample{k}"),
    }
}
