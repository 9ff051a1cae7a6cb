//! Stable diagnostic codes. Each variant's doc gives the smallest `.obj` input that triggers it.

use super::Severity;

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident = $sev:ident,)*) => {
        /// A stable diagnostic code. `E01xx` syntax, `E02xx` names and types, `E03xx` objective semantics,
        /// `W03xx` warnings.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[doc = $doc])* $name,)*
        }

        impl Code {
            /// Every code, in order (a test checks each appears in a `tests/ui` snapshot).
            pub const ALL: &'static [Code] = &[$(Code::$name,)*];

            /// The code as printed, e.g. `E0303`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$name => stringify!($name),)* }
            }

            /// Whether this code is an error or a warning.
            pub fn severity(self) -> Severity {
                match self { $(Code::$name => Severity::$sev,)* }
            }
        }
    };
}

codes! {
    /// Invalid UTF-8: any file containing the byte `0xFF`.
    E0100 = Error,
    /// File larger than 1 MiB.
    E0101 = Error,
    /// Unexpected token: `objective 3`, `param beta real = 1` (expected `:`), a stray `@`.
    E0102 = Error,
    /// Expected an expression: `loss` at end of input, `loss mean(`.
    E0103 = Error,
    /// Unclosed delimiter: `loss mean(x`.
    E0104 = Error,
    /// Expected end of statement: `param beta: real = 1.0 2.0`.
    E0105 = Error,
    /// Expression nested too deeply: `loss ((((...))))` 200 levels deep.
    E0106 = Error,
    /// Invalid number literal: `loss 1e999`, `param n: int = 99999999999999999999`.
    E0107 = Error,
    /// Unknown name: `loss mean(err(policy, winer))`.
    E0201 = Error,
    /// Unknown function: `loss mean(logsigmod(x))`.
    E0202 = Error,
    /// Wrong number of arguments: `loss mean(err(policy))`.
    E0203 = Error,
    /// Unknown or repeated named argument: `sample(ref, prompt, step = 20)`.
    E0204 = Error,
    /// Type mismatch: `err(winner, policy)` (an image where a model is expected).
    E0205 = Error,
    /// Duplicate definition: `let d = 1` twice, or `objective` declared twice.
    E0206 = Error,
    /// Unknown setting value: `data triples`, `noise maybe`, `reference r = newest`, `sampler = euler`.
    E0207 = Error,
    /// Argument must be a constant: `sample(ref, prompt, steps = err(policy, winner))`,
    /// `pow(err(policy, winner), err(ref, winner))`.
    E0208 = Error,
    /// Bad `--set` override: unknown parameter, or a value that does not parse as the declared type.
    E0209 = Error,
    /// No `loss` statement: an empty file.
    E0301 = Error,
    /// No `objective NAME` header.
    E0302 = Error,
    /// Batch reduction inside a nonlinearity: `loss -logsigmoid(beta * mean(d))` (diffusers #6702).
    E0303 = Error,
    /// Loss not reduced over the batch: `loss -logsigmoid(m)` with per-sample `m`.
    E0304 = Error,
    /// Loss cannot reach the policy's parameters: `loss mean(err(ref, winner))`.
    E0305 = Error,
    /// Gradient through a gate: `sign(err(ref, winner) - err(policy, winner))` without `stopgrad`.
    E0306 = Error,
    /// A frozen reference would need gradients: `reference ref = policy`.
    E0307 = Error,
    /// Parameter outside its domain: `param beta: real = -1 in (0, inf)`.
    E0308 = Error,
    /// Sampling from the policy would need gradients through the sampler: `sample(policy, prompt)`.
    E0309 = Error,
    /// Pair data used with an unpaired data set: `data winners` then `err(policy, loser)`.
    E0310 = Error,
    /// Logged quantity not reduced over the batch: `log gap = d_w`.
    E0311 = Error,
    /// Reference strategy needs a checkpoint pool: `reference ref = uniform` with no `pool`.
    E0312 = Error,
    /// Constant term that is not finite: `loss mean(err(policy, winner)) + log1p(-2.0)`, or a division by a
    /// constant zero such as `err(policy, winner) / (beta - beta)`.
    E0313 = Error,
    /// A draw fixed inside an average over draws: `draws(4, err(policy, winner, draw = 1))`, or `draws(...)`
    /// nested inside `draws(...)`.
    E0314 = Error,
    /// Reserved, no longer reported: a construct the PyTorch target could not emit. `seppoc emit --target torch`
    /// and `export-torch` now accept every checked objective (draws, `dist`, time values, `progress`,
    /// `num_timesteps`, data fields, `image`).
    E0315 = Error,
    /// An image or data field the declared data kind does not define: `image` outside `data labelled`,
    /// `winner` or `loser` with `data labelled`, `label` with `data winners`.
    E0316 = Error,
    /// `sample(...)` calls with different group sizes in one file: `sample(ref, prompt, group = 8)` and
    /// `sample(ref, prompt, group = 4)` (a step's rows come in one block size).
    E0317 = Error,
    /// A group statistic over groups of one sample: `group_std(reward(x))` where no `sample(...)` has
    /// `group = K` with K > 1 (`group_std` is then 0 and an advantage divided by it is not finite).
    E0318 = Error,
    /// A group statistic of a value that carries gradient: `group_mean(err(policy, x))` (group statistics are
    /// computed without gradient, so the policy would not be trained through the baseline it was meant to use).
    E0319 = Error,
    /// Unused binding: `let unused = err(policy, winner)`.
    W0301 = Warning,
    /// Gate without a tie rule: `sign(stopgrad(x))` (the value at 0 changes the first update's gradient).
    W0302 = Warning,
    /// Value reduced over the batch twice: `mean(mean(x))`.
    W0303 = Warning,
    /// Product or quotient of batch reductions with gradient: `mean(a) * mean(b)`, `mean(a) / mean(b)` (like
    /// `f(mean(x))`, its gradient is not the batch mean of per-sample gradients).
    W0304 = Warning,
    /// Soft gate with gradient: `let s = 2 * sigmoid(k * (err(ref, winner) - err(policy, winner))) - 1` (or
    /// `tanh`, `clamp`, `x / abs(x)`) multiplying another term such as `s * d_ref`, without `stopgrad`.
    W0305 = Warning,
    /// The loss trains in reverse or not at all, probed on the f64 oracle: `loss mean(-err(policy, winner))`
    /// (lowering the winners' error raises it), a DPO margin with its sign flipped, or a loss whose gradient
    /// with respect to the policy is 0 everywhere.
    W0306 = Warning,
    /// Ineffective allow comment: `# allow(W0306)` without a reason, `# allow(E0205): ...` (errors cannot be
    /// allowed), or an allow that silences nothing.
    W0307 = Warning,
    /// A data reward read next to an online one: `reward(winner)` (the data's column) and `reward(x)` of
    /// generated images (scored by the run's reward model) in one file, different scorers on different scales.
    W0308 = Warning,
}

impl Code {
    /// Codes no longer reported, kept so their numbers are never given another meaning.
    pub const RESERVED: &'static [Code] = &[Code::E0315];
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
