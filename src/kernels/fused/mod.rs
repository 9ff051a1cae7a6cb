//! Fused DiT ops on dfdx's tape, dispatched per device through [`FusedOps`]: on `Cpu` hand-written kernels
//! (`cpu/`, forward and backward by hand, parallel over samples with rayon), on CUDA the composite dfdx ops of
//! [`composite`], which are also the reference the CPU kernels are tested against (`tests/cpu_kernels.rs`).
//!
//! Shapes: activations are `(b·n, w)` row-major (`b` samples of `n` tokens), per-sample vectors `(b, w)`.

pub mod composite;
mod cpu;

use dfdx::prelude::*;

/// A 2-D tensor `(rows, features)` with tape `T`.
pub type T2<D, T = NoneTape> = Tensor<(usize, usize), f32, D, T>;
/// A flat (1-D) tensor with tape `T`.
pub type T1<D, T = NoneTape> = Tensor<(usize,), f32, D, T>;

/// The scalars of one AdamW update (see [`composite::adamw_update`]).
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

/// Which implementation the DiT and AdamW use for the ops of [`FusedOps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpPath {
    /// The device's own implementation: the fused kernels on `Cpu`, the composite dfdx ops on CUDA.
    Device,
    /// The composite dfdx ops on every device (the reference; `bench_dit --composite` times it).
    Composite,
}

/// A linear layer's weight `(i, o)` and bias `(o,)`.
pub type Layer<D, T> = (T2<D, T>, T1<D, T>);

/// A 2-D op with three inputs and the number of samples they hold.
type Op3<D, T> = fn(T2<D, T>, T2<D, T>, T2<D, T>, usize) -> T2<D, T>;
/// A linear layer `(x, w, bias) -> out`.
type LinearOp<D, T> = fn(T2<D, T>, T2<D, T>, T1<D, T>) -> T2<D, T>;
/// Self-attention with its projections: `(x, [q, k, v, o], samples, heads) -> out`.
type SelfAttnOp<D, T> = fn(T2<D, T>, [Layer<D, T>; 4], usize, usize) -> T2<D, T>;
/// A two-layer MLP `(x, fc1, fc2) -> out`.
type MlpOp<D, T> = fn(T2<D, T>, Layer<D, T>, Layer<D, T>) -> T2<D, T>;

/// The taped ops of one [`OpPath`], as function pointers for tape `T` (see [`FusedOps`] for each formula).
pub struct Ops<D: FusedOps, T: Tape<f32, D>> {
    /// [`FusedOps::norm_modulate`].
    pub norm_modulate: Op3<D, T>,
    /// [`FusedOps::gate_residual`].
    pub gate_residual: Op3<D, T>,
    /// [`FusedOps::linear`].
    pub linear: LinearOp<D, T>,
    /// [`FusedOps::mlp_relu`].
    pub mlp_relu: MlpOp<D, T>,
    /// [`FusedOps::self_attention`].
    pub self_attention: SelfAttnOp<D, T>,
}

impl OpPath {
    /// The ops this path runs on device `D` with tape `T`.
    pub fn ops<D: FusedOps, T: Tape<f32, D>>(self) -> Ops<D, T> {
        match self {
            OpPath::Device => Ops {
                norm_modulate: D::norm_modulate,
                gate_residual: D::gate_residual,
                linear: D::linear,
                mlp_relu: D::mlp_relu,
                self_attention: D::self_attention,
            },
            OpPath::Composite => Ops {
                norm_modulate: composite::norm_modulate,
                gate_residual: composite::gate_residual,
                linear: composite::linear,
                mlp_relu: composite::mlp_relu,
                self_attention: composite::self_attention,
            },
        }
    }

    /// One AdamW update on this path (see [`composite::adamw_update`]).
    pub fn adamw_update<D: FusedOps>(
        self,
        param: &mut T1<D>,
        m: &mut T1<D>,
        v: &mut T1<D>,
        grad: &T1<D>,
        step: &AdamStep,
    ) {
        match self {
            OpPath::Device => D::adamw_update(param, m, v, grad, step),
            OpPath::Composite => composite::adamw_update(param, m, v, grad, step),
        }
    }
}

/// The DiT's fused ops. The default methods are the composite dfdx versions; `Cpu` overrides every one.
///
/// The DiT calls `self_attention`, `norm_modulate`, `gate_residual`, `linear`, `mlp_relu` and `adamw_update`
/// (through [`Ops`]). `attention`, `add_bias`, `add_bias_relu` and `linear_relu` are the finer-grained pieces those
/// are built from; they stay as ops so that `tests/cpu_kernels.rs` checks each piece's CPU kernel against its
/// composite form on its own (the attention core's edge tiles, the bias and ReLU backward).
///
/// Each taped op records one backward operation that adds its input gradients into the [`Gradients`] slots of
/// its inputs, so it composes with dfdx's own ops on the same tape.
pub trait FusedOps: Device<f32> {
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
    /// [`FusedOps::attention`]) with `qkvo = [(Wq, bq), (Wk, bk), (Wv, bv), (Wo, bo)]`, each weight `(w, w)`.
    ///
    /// Derivatives: the chain of [`FusedOps::linear`] and [`FusedOps::attention`]; `x`'s gradient sums the three
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
    /// Derivatives: the chain of [`FusedOps::linear_relu`] and [`FusedOps::linear`].
    fn mlp_relu<T: Tape<f32, Self>>(x: T2<Self, T>, fc1: Layer<Self, T>, fc2: Layer<Self, T>) -> T2<Self, T> {
        composite::mlp_relu(x, fc1, fc2)
    }

    /// One AdamW update of a flat parameter and its moments (see [`composite::adamw_update`]); not taped.
    fn adamw_update(param: &mut T1<Self>, m: &mut T1<Self>, v: &mut T1<Self>, grad: &T1<Self>, step: &AdamStep) {
        composite::adamw_update(param, m, v, grad, step)
    }
}
