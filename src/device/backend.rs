//! The [`Backend`] trait.

use super::composite;
use super::types::{AdamStep, Layer, T1, T2};
use dfdx::prelude::*;
use dfdx::tensor::Cache;

/// What the model, the optimizer, the compiled loss, the trainer and the sampler need from a dfdx device: dfdx's
/// f32 ops with its allocation cache, boolean masks (the loss graph's `choose`), and the DiT's fused ops below.
///
/// The ops' default methods are the composite dfdx versions ([`composite`], the reference); CUDA uses them, `Cpu`
/// overrides every one with the hand-written kernels of `kernels::fused`.
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
    ) -> T2<Self, T> {
        composite::attention(q, k, v, b, heads)
    }

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
    ) -> T2<Self, T> {
        composite::self_attention(x, qkvo, b, heads)
    }

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
    ) -> T2<Self, T> {
        composite::norm_modulate(x, shift, scale, b)
    }

    /// Computes `res + h · gate`, `h` and `res` `(b·n, w)`, `gate` `(b, w)` broadcast over tokens.
    ///
    /// Derivatives: `dres = dy`, `dh = dy ⊙ gate`, `dgate = Σ_tokens dy ⊙ h`.
    fn gate_residual<T: Tape<f32, Self>>(h: T2<Self, T>, gate: T2<Self, T>, res: T2<Self, T>, b: usize) -> T2<Self, T> {
        composite::gate_residual(h, gate, res, b)
    }

    /// Computes `x + bias` with `bias` `(w,)` broadcast over the rows of `x` `(rows, w)`.
    ///
    /// Derivatives: `dx = dy`, `dbias = Σ_rows dy`.
    fn add_bias<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        composite::add_bias(x, bias)
    }

    /// Computes `max(x + bias, 0)` (a linear layer's bias and ReLU in one pass).
    ///
    /// Derivatives: with `d = dy ⊙ [x + bias > 0]`, `dx = d`, `dbias = Σ_rows d`.
    fn add_bias_relu<T: Tape<f32, Self>>(x: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        composite::add_bias_relu(x, bias)
    }

    /// Computes `x · w + bias`, `x` `(rows, i)`, `w` `(i, o)`, `bias` `(o,)` broadcast over rows.
    ///
    /// Derivatives: `dx = dy · wᵀ`, `dw = xᵀ · dy`, `dbias = Σ_rows dy`.
    fn linear<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        composite::linear(x, w, bias)
    }

    /// Computes `max(x · w + bias, 0)` (a linear layer followed by ReLU).
    ///
    /// Derivatives: with `d = dy ⊙ [x · w + bias > 0]`, `dx = d · wᵀ`, `dw = xᵀ · d`, `dbias = Σ_rows d`.
    fn linear_relu<T: Tape<f32, Self>>(x: T2<Self, T>, w: T2<Self, T>, bias: T1<Self, T>) -> T2<Self, T> {
        composite::linear_relu(x, w, bias)
    }

    /// Computes `max(x · w1 + b1, 0) · w2 + b2` with `fc1 = (w1, b1)`, `fc2 = (w2, b2)` (the DiT's ReLU MLP).
    ///
    /// Derivatives: the chain of [`Backend::linear_relu`] and [`Backend::linear`].
    fn mlp_relu<T: Tape<f32, Self>>(x: T2<Self, T>, fc1: Layer<Self, T>, fc2: Layer<Self, T>) -> T2<Self, T> {
        composite::mlp_relu(x, fc1, fc2)
    }

    /// One AdamW update of a flat parameter and its moments (see [`composite::adamw_update`]); not taped.
    fn adamw_update(param: &mut T1<Self>, m: &mut T1<Self>, v: &mut T1<Self>, grad: &T1<Self>, step: &AdamStep) {
        composite::adamw_update(param, m, v, grad, step)
    }
}
