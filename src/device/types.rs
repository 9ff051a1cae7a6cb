//! The tensor types and the scalars the [`Backend`](super::Backend) ops take.

use dfdx::prelude::*;

/// A 2-D tensor `(rows, features)` with tape `T`.
pub type T2<D, T = NoneTape> = Tensor<(usize, usize), f32, D, T>;
/// A flat (1-D) tensor with tape `T`.
pub type T1<D, T = NoneTape> = Tensor<(usize,), f32, D, T>;

/// The scalars of one AdamW update (see [`Backend::adamw_update`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// First-moment decay `β1`.
    pub beta1: f32,
    /// Second-moment decay `β2`.
    pub beta2: f32,
    /// Denominator epsilon.
    pub eps: f32,
    /// Learning rate of this step.
    pub lr: f32,
    /// Bias corrections `1 − β1^t` and `1 − β2^t`.
    pub bias_correction: (f32, f32),
    /// The parameter's decay factor `1 − lr·wd` (1 for parameters without weight decay).
    pub decay: f32,
}

/// A linear layer's weight `(i, o)` and bias `(o,)`.
pub type Layer<D, T> = (T2<D, T>, T1<D, T>);
