//! Names in scope: builtins, parameters, references and `let` bindings, with use tracking for W0301.

use super::types::{Axis, Images, Model, Scalar, Ty};
use crate::source::Span;
use std::collections::HashMap;

/// Names every objective can use without declaring them.
pub const BUILTINS: &[&str] =
    &["policy", "winner", "loser", "image", "prompt", "inf", "progress", "num_timesteps", "label", "weight"];

/// What declared a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingKind {
    /// `param`
    Param,
    /// `reference`
    Reference,
    /// `let`
    Let,
}

/// A declared name.
#[derive(Clone, Debug)]
pub struct Binding {
    /// Its type.
    pub ty: Ty,
    /// The span of the name where it was declared.
    pub span: Span,
    /// What declared it.
    pub kind: BindingKind,
    /// Whether any expression refers to it.
    pub used: bool,
}

/// The scope of one file (the language has no nested scopes).
#[derive(Default)]
pub struct Scope {
    bindings: HashMap<String, Binding>,
    order: Vec<String>,
}

impl Scope {
    /// Declares a name; returns the earlier declaration's span if the name is taken.
    pub fn declare(&mut self, name: &str, binding: Binding) -> Result<(), Option<Span>> {
        if BUILTINS.contains(&name) {
            return Err(None);
        }
        if let Some(prev) = self.bindings.get(name) {
            return Err(Some(prev.span));
        }
        self.order.push(name.to_string());
        self.bindings.insert(name.to_string(), binding);
        Ok(())
    }

    /// Looks a name up and marks it used; builtins resolve to their fixed types.
    pub fn lookup(&mut self, name: &str) -> Option<Ty> {
        match name {
            "policy" => return Some(Ty::Model(Model::Policy)),
            "winner" => return Some(Ty::Images(Images::Winner)),
            "loser" => return Some(Ty::Images(Images::Loser)),
            "image" => return Some(Ty::Images(Images::Image)),
            "prompt" => return Some(Ty::Prompt),
            "inf" => return Some(Ty::Scalar(Scalar::CONST)),
            // One value per step (or per run), constant over the batch and without gradient.
            "progress" | "num_timesteps" => {
                return Some(Ty::Scalar(Scalar { axis: Axis::Batch, grad: false, gate_with_grad: None }))
            }
            // Per-sample data fields: constant with respect to the policy.
            "label" | "weight" => {
                return Some(Ty::Scalar(Scalar { axis: Axis::Sample, grad: false, gate_with_grad: None }))
            }
            _ => {}
        }
        let binding = self.bindings.get_mut(name)?;
        binding.used = true;
        Some(binding.ty.clone())
    }

    /// Declared names in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Binding)> {
        self.order.iter().map(|n| (n.as_str(), &self.bindings[n]))
    }

    /// Every name a typo could have meant.
    pub fn candidates(&self) -> Vec<String> {
        BUILTINS.iter().map(|s| s.to_string()).chain(self.order.iter().cloned()).collect()
    }
}

/// The closest candidate within edit distance 2, for "did you mean" help.
pub fn suggest(name: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= 2 && *d < name.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
