//! The [`Backend`] trait and the tensor types of its fused ops.

use dfdx::prelude::*;
use dfdx::tensor::Cache;

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

/// What the model, the optimizer, the compiled loss, the trainer and the sampler need from a dfdx device: dfdx's
/// f32 ops with its allocation cache, boolean masks (the loss graph's `choose`), and the DiT's fused ops below.
///
/// The fused ops are implemented in `kernels::fused`: on `Cpu` by hand-written kernels (`kernels/fused/cpu`), on
/// CUDA by the composite dfdx versions (`kernels::fused::composite`, also the reference the CPU kernels are
/// tested against).
///
/// The DiT calls `self_attention`, `norm_modulate`, `gate_residual`, `linear`, `mlp_relu` and `adamw_update`
/// (through `kernels::fused::Ops`). `attention`, `add_bias`, `add_bias_relu` and `linear_relu` are the
/// finer-grained pieces those are built from; they stay as ops so that `tests/cpu_kernels.rs` checks each piece's
/// CPU kernel against its composite form on its own (the attention core's edge tiles, the bias and ReLU backward).
///
/// Each taped op records one backward operation that adds its input gradients into the [`Gradients`] slots of
/// its inputs, so it composes with dfdx's own ops on the same tape.
pub trait Backend:
    Device<f32> + Cache + TensorToArray<(), f32, Array = f32> + ZerosTensor<bool> + CopySlice<bool>
{
    /// Computes `softmax(Q_h K_hᵀ / √d_h) V_h` per sample and head `h` (heads are column blocks of width
    /// `d_h = w / heads`); `q`, `k`, `v` and the result are `(b·n, w)`.
    ///
    /// Derivatives, with `P` the probabilities and `dO` the upstream gradient: `dV = Pᵀ dO`,
    /// `dS = P ⊙ (dO Vᵀ − rowsum(P ⊙ dO Vᵀ))`, `dQ = dS K / √d_h`, `dK = dSᵀ Q / √d_h`.
    fn attention<T: Tape<f32, Self>>(
        q: T2<Self, T>,
        k: T2<Self, T>,
        v: T2<Self, T>,
        b: usize,
        heads: usize,
    ) -> T2<Self, T>;

    /// Computes the self-attention layer `attention(x·Wq + bq, x·Wk + bk, x·Wv + bv) · Wo + bo` (see
    /// [`Backend::attention`]) with `qkvo = [(Wq, bq), (Wk, bk), (Wv, bv), (Wo, bo)]`, each weight `(w, w)`.
    ///
    /// Derivatives: the chain of [`Backend::linear`] and [`Backend::attention`]; `x`'s gradient sums the three
    /// projections'.
    fn self_attention<T: Tape<f32, Self>>(
        x: T2<Self, T>,
        qkvo: [Layer<Self, T>; 4],
        b: usize,
        heads: usize,
    ) -> T2<Self, T>;

    /// Computes `LN(x) · (1 + scale) + shift`, `LN` a LayerNorm over features without affine (eps 1e-5);
    /// `x` is `(b·n, w)`, `shift` and `scale` are `(b, w)`, broadcast over each sample's `n` tokens.
    ///
    /// Derivatives, with `x̂ = LN(x)`, `g = dy ⊙ (1 + scale)`, `r = 1/σ`: `dshift = Σ_tokens dy`,
    /// `dscale = Σ_tokens dy ⊙ x̂`, `dx = r · (g − mean(g) − x̂ · mean(g ⊙ x̂))`.
    fn norm_modulate<T: Tape<f32, Self>>(
        x: T2<Self, T>,
        shift: T2<Self, T>,
        scale: T2<Self, T>,
        b: usize,
    ) -> T2<Self, T>;

    /// Computes `res + h · gate`, `h` and `res` `(b·n, w)`, `gate` `(b, w)` broadcast over tokens.
    ///
    /// Derivatives: `dres = dy`, `dh = dy ⊙ gate`, `dgate = Σ_tokens dy ⊙ h`.
    fn gate_residual<T: Tape<f32, Self>>(h: T2<Self, T>, gate: T2<Self, T>, res: T2<Self, T>, b: usize) -> T2<Self, T>;

    /// Computes `x + bias` with `bias` `(w,)` broadcast over the rows of `x` `(rows, w)`.
    ///
    /// Derivatives: `dx = dy`, `dbias = Σ_rows dy`.
    fn add_bias<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T>;

    /// Computes `max(x + bias, 0)` (a linear layer's bias and ReLU in one pass).
    ///
    /// Derivatives: with `d = dy ⊙ [x + bias > 0]`, `dx = d`, `dbias = Σ_rows d`.
    fn add_bias_relu<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T>;

    /// Computes `x · w + bias`, `x` `(rows, i)`, `w` `(i, o)`, `bias` `(o,)` broadcast over rows.
    ///
    /// Derivatives: `dx = dy · wᵀ`, `dw = xᵀ · dy`, `dbias = Σ_rows dy`.
    fn linear<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T>;

    /// Computes `max(x · w + bias, 0)` (a linear layer followed by ReLU).
    ///
    /// Derivatives: with `d = dy ⊙ [x · w + bias > 0]`, `dx = d · wᵀ`, `dw = xᵀ · d`, `dbias = Σ_rows d`.
    fn linear_relu<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T>;

    /// Computes `max(x · w1 + b1, 0) · w2 + b2` with `fc1 = (w1, b1)`, `fc2 = (w2, b2)` (the DiT's ReLU MLP).
    ///
    /// Derivatives: the chain of [`Backend::linear_relu`] and [`Backend::linear`].
    fn mlp_relu<T: Tape<f32, Self>>(x: T2<Self, T>, fc1: Layer<Self, T>, fc2: Layer<Self, T>) -> T2<Self, T>;

    /// One AdamW update of a flat parameter and its moments (`kernels::fused::composite::adamw_update` is the formula); not taped.
    fn adamw_update(param: &mut T1<Self>, m: &mut T1<Self>, v: &mut T1<Self>, grad: &T1<Self>, step: &AdamStep);
}
