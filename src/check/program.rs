//! The checked program: every setting resolved, every binding typed. Later stages read this, not the AST.

use super::types::Ty;
use crate::syntax::ast;
use std::fmt::Write;

/// Which data the objective reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// Prompt + preferred image only (SFT, SePPO, SPIN).
    Winners,
    /// Prompt + preferred + dispreferred image (Diffusion-DPO), with the winner's label (1, or 0.5 for a tie
    /// when the objective reads `label`).
    Pairs,
    /// Prompt + one image + its label, 1 (desirable) or 0 (undesirable): each image of a decided comparison is
    /// a sample of its own (Diffusion-KTO's unpaired data).
    Labelled,
}

impl DataKind {
    /// The word after `data`.
    pub fn word(self) -> &'static str {
        match self {
            DataKind::Winners => "winners",
            DataKind::Pairs => "pairs",
            DataKind::Labelled => "labelled",
        }
    }
}

/// Whether the images of one prompt share the diffusion timestep and noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noise {
    /// One `(t, eps)` per prompt, used for all of its images (Diffusion-DPO's `chunk(2)[0].repeat(2)`).
    Shared,
    /// A fresh `(t, eps)` per image.
    Independent,
}

/// Checkpoint pool: save the policy every `every` optimizer updates, keep the newest `keep` (the initial
/// model always stays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Updates between checkpoints.
    pub every: u64,
    /// Checkpoints kept.
    pub keep: u64,
}

/// When a random reference is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// One draw per optimizer update, shared by the batch.
    Step,
    /// One draw per sample.
    Sample,
}

/// How a reference model is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// The frozen initial model theta_0 (Diffusion-DPO; DITTO).
    Initial,
    /// The newest pool checkpoint (SPIN-Diffusion).
    Latest,
    /// A uniformly random pool checkpoint, theta_0 included (SePPO's RCR).
    Uniform(Draw),
    /// An exponential moving average of the policy.
    Ema {
        /// EMA decay per update.
        decay: f64,
    },
}

/// A declared parameter with its resolved default.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Name.
    pub name: String,
    /// Whether it takes integers only.
    pub integer: bool,
    /// Default value.
    pub default: f64,
    /// Allowed range `(lo, lo_closed, hi, hi_closed)`.
    pub domain: Option<(f64, bool, f64, bool)>,
}

/// A declared reference model.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// Name.
    pub name: String,
    /// Selection strategy.
    pub strategy: Strategy,
}

/// Sampler family for reference samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    /// Deterministic at `eta = 0`.
    Ddim,
    /// Ancestral sampling.
    Ddpm,
}

/// One `sample(...)` call: which model generates images for the batch's prompts, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleSpec {
    /// The generating model (always a frozen reference).
    pub model: String,
    /// DDIM or DDPM.
    pub sampler: SamplerKind,
    /// Denoising steps.
    pub steps: u64,
    /// Classifier-free guidance scale.
    pub cfg: f64,
    /// DDIM stochasticity.
    pub eta: f64,
    /// Samples per prompt (`group = K`, default 1): the step's rows come in consecutive blocks of K that share
    /// one data item (prompt), each row with its own sample; group statistics reduce over a block.
    pub group: u32,
    /// Settings given by a parameter (`steps = n`): the parameter's name per setting, whose bound value
    /// replaces the default above when the objective is bound (`--set` sweeps it).
    pub from_params: Vec<(SampleSetting, String)>,
}

/// A numeric setting of `sample(...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleSetting {
    /// Denoising steps: an integer in [1, 1000].
    Steps,
    /// Guidance scale in [0, 100].
    Cfg,
    /// DDIM eta in [0, 1].
    Eta,
}

impl SampleSetting {
    /// The argument name.
    pub fn name(self) -> &'static str {
        match self {
            SampleSetting::Steps => "steps",
            SampleSetting::Cfg => "cfg",
            SampleSetting::Eta => "eta",
        }
    }

    /// `(integer, lo, hi)`: the values it accepts (closed range).
    pub fn range(self) -> (bool, f64, f64) {
        match self {
            SampleSetting::Steps => (true, 1.0, 1000.0),
            SampleSetting::Cfg => (false, 0.0, 100.0),
            SampleSetting::Eta => (false, 0.0, 1.0),
        }
    }

    /// Why `v` is not accepted, if it is not: "must be an integer in [1, 1000]".
    pub fn reject(self, v: f64) -> Option<String> {
        let (integer, lo, hi) = self.range();
        let ok = v.is_finite() && (lo..=hi).contains(&v) && (!integer || v.fract() == 0.0);
        (!ok).then(|| {
            format!("`sample` {} must be {}in [{lo}, {hi}]", self.name(), if integer { "an integer " } else { "" })
        })
    }
}

impl SampleSpec {
    /// The spec with its parameter-given settings replaced by `value(name)`.
    pub fn with_params(&self, value: impl Fn(&str) -> Option<f64>) -> SampleSpec {
        let mut spec = self.clone();
        for (setting, name) in &self.from_params {
            let Some(v) = value(name) else { continue };
            match setting {
                SampleSetting::Steps => spec.steps = v as u64,
                SampleSetting::Cfg => spec.cfg = v,
                SampleSetting::Eta => spec.eta = v,
            }
        }
        spec
    }
}

/// A program that passed the checker.
#[derive(Clone, Debug)]
pub struct Checked {
    /// `objective NAME`.
    pub name: String,
    /// Data the objective reads.
    pub data: DataKind,
    /// Noise coupling.
    pub noise: Noise,
    /// Checkpoint pool, if any reference needs one.
    pub pool: Option<Pool>,
    /// Parameters in declaration order.
    pub params: Vec<Param>,
    /// References in declaration order.
    pub references: Vec<Reference>,
    /// Sample calls in order of appearance (`Images::Sample(k)` indexes here).
    pub samples: Vec<SampleSpec>,
    /// `let` bindings with their types.
    pub bindings: Vec<(String, Ty)>,
    /// `log` quantities with their types.
    pub logs: Vec<(String, Ty)>,
    /// The loss's type.
    pub loss: Ty,
    /// The syntax tree it came from.
    pub file: ast::File,
    /// Warnings (the program is accepted).
    pub warnings: Vec<crate::diag::Diagnostic>,
}

impl Checked {
    /// A stable, human-readable dump of the checked program (snapshotted in tests).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "objective {}", self.name);
        let _ = writeln!(s, "data {:?}", self.data);
        let _ = writeln!(s, "noise {:?}", self.noise);
        if let Some(p) = self.pool {
            let _ = writeln!(s, "pool every {} updates, keep {}", p.every, p.keep);
        }
        for p in &self.params {
            let ty = if p.integer { "int" } else { "real" };
            let _ = write!(s, "param {}: {ty} = {:?}", p.name, p.default);
            if let Some((lo, lc, hi, hc)) = p.domain {
                let _ = write!(s, " in {}{lo:?}, {hi:?}{}", if lc { "[" } else { "(" }, if hc { "]" } else { ")" });
            }
            s.push('\n');
        }
        for r in &self.references {
            let _ = writeln!(s, "reference {} = {:?}", r.name, r.strategy);
        }
        for (k, spec) in self.samples.iter().enumerate() {
            let _ = writeln!(
                s,
                "sample#{k} from {}: {:?}, {} steps, cfg {:?}, eta {:?}{}",
                spec.model,
                spec.sampler,
                spec.steps,
                spec.cfg,
                spec.eta,
                if spec.group == 1 { String::new() } else { format!(", group {}", spec.group) }
            );
            for (setting, name) in &spec.from_params {
                let _ = writeln!(s, "  {} from param {name}", setting.name());
            }
        }
        for (name, ty) in &self.bindings {
            let _ = writeln!(s, "let {name}: {}", ty.show());
        }
        for (name, ty) in &self.logs {
            let _ = writeln!(s, "log {name}: {}", ty.show());
        }
        let _ = writeln!(s, "loss: {}", self.loss.show());
        s
    }
}
