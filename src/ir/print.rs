//! Stable text of the IR and of the per-step execution plan (`seppoc explain`).

use super::*;
use std::fmt::Write;

impl Objective {
    /// The IR, one node per line, then the loss, logs and the plan.
    pub fn explain(&self) -> String {
        let taped = self.taped();
        let mut s = String::new();
        let _ = writeln!(s, "objective {}", self.name);
        let _ = writeln!(s, "\n# leaves (per-sample denoising errors; names used by `seppoc loss --inputs`)");
        for (k, input) in self.inputs.iter().enumerate() {
            let grad = if input.model == ModelRef::Policy { "  (gradient)" } else { "" };
            let _ = writeln!(
                s,
                "in{k} {} = err({}, {}){grad}",
                input.name(),
                model_name(&input.model),
                image_name(input.images)
            );
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
        }
    }

    /// Which images each step needs, which model passes run on them, and the network evaluations per sample.
    pub fn plan_text(&self) -> String {
        let plan = self.plan();
        let mut s = String::new();
        let _ = writeln!(s, "\n# plan per training step (B = prompts per batch)");
        let _ = writeln!(s, "data: {:?}; noise: {:?} (t, eps) per prompt", self.data, self.noise);
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
                "images sample{k}: {:?} from {}, {} steps, cfg {:?}, eta {:?} -> {} NFE per prompt, no gradient",
                spec.sampler,
                spec.model,
                spec.steps,
                spec.cfg,
                spec.eta,
                spec.steps * per
            );
        }
        for pass in &plan.passes {
            let imgs: Vec<String> = pass.images.iter().map(|i| image_name(*i)).collect();
            let tape = if pass.model == ModelRef::Policy { "taped" } else { "untaped" };
            let _ = writeln!(
                s,
                "pass {} ({tape}) on [{}] -> {} NFE per prompt",
                model_name(&pass.model),
                imgs.join(", "),
                pass.images.len()
            );
        }
        let _ = writeln!(
            s,
            "NFE per prompt per step: {} (denoising passes) + {} (sampling) = {}",
            plan.nfe_passes,
            plan.nfe_sampling,
            plan.nfe_passes + plan.nfe_sampling
        );
        s
    }
}

/// One batched model pass: every image kind the model must denoise in a step, in one forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// The model.
    pub model: ModelRef,
    /// The image kinds, in first-use order.
    pub images: Vec<ImageRef>,
}

/// The minimum work of one training step, per prompt in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One pass per model (the policy's first, taped).
    pub passes: Vec<Pass>,
    /// Network evaluations of the denoising passes, per prompt: each (model, image) leaf exactly once.
    pub nfe_passes: u64,
    /// Network evaluations of reference sampling, per prompt (two per step under CFG).
    pub nfe_sampling: u64,
}

impl Objective {
    /// Derives the plan: leaves grouped by model, so each (model, image, t, eps) is evaluated once.
    pub fn plan(&self) -> Plan {
        let mut passes: Vec<Pass> = Vec::new();
        let mut inputs: Vec<&Input> = self.inputs.iter().collect();
        inputs.sort_by_key(|i| i.model != ModelRef::Policy);
        for input in inputs {
            match passes.iter_mut().find(|p| p.model == input.model) {
                Some(p) => p.images.push(input.images),
                None => passes.push(Pass { model: input.model.clone(), images: vec![input.images] }),
            }
        }
        let nfe_passes = self.inputs.len() as u64;
        let nfe_sampling = self.samples.iter().map(|s| s.steps * if s.cfg == 1.0 { 1 } else { 2 }).sum();
        Plan { passes, nfe_passes, nfe_sampling }
    }
}

fn model_name(m: &ModelRef) -> String {
    match m {
        ModelRef::Policy => "policy".to_string(),
        ModelRef::Reference(n) => n.clone(),
    }
}

/// The name of an image kind: `winner`, `loser`, `sample0`, ...
pub fn image_name(i: ImageRef) -> String {
    match i {
        ImageRef::Winner => "winner".to_string(),
        ImageRef::Loser => "loser".to_string(),
        ImageRef::Sample(k) => format!("sample{k}"),
    }
}
