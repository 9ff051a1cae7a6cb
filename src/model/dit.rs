//! The DiT ε-predictor: parameter layout, initialisation and the forward pass shared by taped and untaped calls.

use dfdx::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::DitConfig;
use super::layers::{attention, linear, mlp, silu, Lin};
use super::ModelError;
use crate::device::{upload, Backend, T1, T2};
use crate::kernels::fused::OpPath;

/// A batch of images `(B, C, H, W)` with tape `T`.
pub type Images<D, T = NoneTape> = Tensor<(usize, usize, usize, usize), f32, D, T>;

/// Name and shape of one stored parameter (the safetensors key and shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Dotted name, e.g. `blocks.0.attn.q.weight`.
    pub name: String,
    /// Logical shape; linear weights are `(in, out)`, used as `x · W`.
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Block {
    /// shift/scale/gate for attention, then shift/scale/gate for the MLP, all `Linear(width → width)` of `silu(c)`.
    mods: [Lin; 6],
    qkvo: [Lin; 4],
    fc1: Lin,
    fc2: Lin,
}

#[derive(Clone, Debug)]
struct Layout {
    patch: Lin,
    pos: usize,
    /// The learned frame embedding `(frames, width)`; only clip models (`frames > 1`) have one.
    frame: Option<usize>,
    t1: Lin,
    t2: Lin,
    text: usize,
    blocks: Vec<Block>,
    final_mods: [Lin; 2],
    out: Lin,
}

enum Init {
    /// Uniform in `±bound`.
    Uniform(f32),
    Zeros,
}

struct Builder {
    specs: Vec<ParamSpec>,
    inits: Vec<Init>,
}

impl Builder {
    fn param(&mut self, name: String, shape: Vec<usize>, init: Init) -> usize {
        self.specs.push(ParamSpec { name, shape });
        self.inits.push(init);
        self.specs.len() - 1
    }

    fn lin(&mut self, name: &str, i: usize, o: usize) -> Lin {
        let bound = 1.0 / (i as f32).sqrt();
        let w = self.param(format!("{name}.weight"), vec![i, o], Init::Uniform(bound));
        let b = self.param(format!("{name}.bias"), vec![o], Init::Zeros);
        Lin { w, b, i, o }
    }
}

fn build_layout(cfg: &DitConfig) -> (Layout, Builder) {
    let mut bld = Builder { specs: Vec::new(), inits: Vec::new() };
    let w = cfg.width;
    let patch = bld.lin("patch_embed", cfg.patch_dim(), w);
    let pos = bld.param("pos_embed".into(), vec![cfg.n_patches(), w], Init::Uniform(0.035));
    let frame = (cfg.frames > 1).then(|| bld.param("frame_embed".into(), vec![cfg.frames, w], Init::Uniform(0.035)));
    let t1 = bld.lin("t_embed.fc1", w, w);
    let t2 = bld.lin("t_embed.fc2", w, w);
    let rows = cfg.vocab_size * (cfg.max_tokens + 1);
    let text = bld.param("text_embed".into(), vec![rows, w], Init::Uniform(0.17));
    let mut blocks = Vec::with_capacity(cfg.depth);
    for d in 0..cfg.depth {
        let names = ["shift_attn", "scale_attn", "gate_attn", "shift_mlp", "scale_mlp", "gate_mlp"];
        let mods = names.map(|m| bld.lin(&format!("blocks.{d}.ada.{m}"), w, w));
        let qkvo = ["q", "k", "v", "o"].map(|m| bld.lin(&format!("blocks.{d}.attn.{m}"), w, w));
        let fc1 = bld.lin(&format!("blocks.{d}.mlp.fc1"), w, w * cfg.mlp_ratio);
        let fc2 = bld.lin(&format!("blocks.{d}.mlp.fc2"), w * cfg.mlp_ratio, w);
        blocks.push(Block { mods, qkvo, fc1, fc2 });
    }
    let final_mods = ["shift", "scale"].map(|m| bld.lin(&format!("final.ada.{m}"), w, w));
    let out = bld.lin("final.out", w, cfg.patch_dim());
    (Layout { patch, pos, frame, t1, t2, text, blocks, final_mods, out }, bld)
}

/// Names and shapes of the parameters of a model with config `cfg`, in storage order (what [`Dit::specs`] returns,
/// without building the model).
pub fn param_specs(cfg: &DitConfig) -> Result<Vec<ParamSpec>, ModelError> {
    cfg.validate().map_err(ModelError::Config)?;
    Ok(build_layout(cfg).1.specs)
}

/// The DiT denoiser: predicts ε from `(x_t, t, caption)`. Cloning is cheap (copy-on-write buffers).
#[derive(Clone, Debug)]
pub struct Dit<D: Backend> {
    cfg: DitConfig,
    dev: D,
    specs: Vec<ParamSpec>,
    params: Vec<T1<D>>,
    layout: Layout,
    path: OpPath,
}

impl<D: Backend> Dit<D> {
    /// Builds a model with weights drawn from `ChaCha8Rng(seed)` on the host (identical on every device).
    pub fn new(cfg: &DitConfig, dev: &D, seed: u64) -> Result<Self, ModelError> {
        cfg.validate().map_err(ModelError::Config)?;
        let (layout, bld) = build_layout(cfg);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = bld
            .specs
            .iter()
            .zip(&bld.inits)
            .map(|(spec, init)| {
                let len: usize = spec.shape.iter().product();
                let data: Vec<f32> = match init {
                    Init::Uniform(bound) => (0..len).map(|_| rng.gen_range(-*bound..*bound)).collect(),
                    Init::Zeros => vec![0.0; len],
                };
                dev.tensor_from_vec(data, (len,))
            })
            .collect();
        Ok(Dit { cfg: cfg.clone(), dev: dev.clone(), specs: bld.specs, params, layout, path: OpPath::Device })
    }

    /// Builds a model from host parameter values, in [`Dit::specs`] order; lengths must match.
    pub fn from_host(cfg: &DitConfig, dev: &D, values: Vec<Vec<f32>>) -> Result<Self, ModelError> {
        cfg.validate().map_err(ModelError::Config)?;
        let (layout, bld) = build_layout(cfg);
        if values.len() != bld.specs.len() {
            return Err(ModelError::ParamCount { expected: bld.specs.len(), found: values.len() });
        }
        let mut params = Vec::with_capacity(values.len());
        for (spec, v) in bld.specs.iter().zip(values) {
            let len: usize = spec.shape.iter().product();
            if v.len() != len {
                return Err(ModelError::ParamLen { name: spec.name.clone(), expected: len, found: v.len() });
            }
            params.push(dev.tensor_from_vec(v, (len,)));
        }
        Ok(Dit { cfg: cfg.clone(), dev: dev.clone(), specs: bld.specs, params, layout, path: OpPath::Device })
    }

    /// Copies this model's weights onto another device (through the host).
    pub fn to_device<D2: Backend>(&self, dev: &D2) -> Result<Dit<D2>, ModelError> {
        Dit::from_host(&self.cfg, dev, self.to_host())
    }

    /// Chooses the fused ops of the device (the default) or the composite dfdx ops; the function is the same.
    pub fn set_op_path(&mut self, path: OpPath) {
        self.path = path;
    }

    /// Which implementation of the fused ops [`Dit::forward`] uses.
    pub fn op_path(&self) -> OpPath {
        self.path
    }

    /// The configuration this model was built from.
    pub fn config(&self) -> &DitConfig {
        &self.cfg
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Names and shapes of all parameters, in storage order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// The flat parameter tensors, in [`Dit::specs`] order.
    pub fn params(&self) -> &[Tensor<(usize,), f32, D>] {
        &self.params
    }

    /// Mutable access to the flat parameters (optimizer, EMA); lengths must not change.
    pub(crate) fn params_mut(&mut self) -> &mut Vec<T1<D>> {
        &mut self.params
    }

    /// Total number of scalar parameters.
    pub fn n_params(&self) -> usize {
        self.params.iter().map(|p| p.shape().0).sum()
    }

    /// Copies every parameter to the host, in [`Dit::specs`] order.
    pub fn to_host(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| p.as_vec()).collect()
    }

    /// A fresh gradient store with a zero slot per parameter; pass it to `x.traced(..)` for a taped forward.
    pub fn alloc_grads(&self) -> Gradients<f32, D> {
        let mut grads = Gradients::leaky();
        for p in &self.params {
            // Allocation only fails when the device is out of memory; then backward would fail as well.
            let _ = grads.try_alloc_for(p);
        }
        // Non-leaf gradients are only dropped after backward anyway, so a leaky store costs no extra peak memory;
        // callers should drop it once the parameter gradients are collected.
        grads
    }

    /// Uploads a batch of CHW images (flattened, `B · C·H·W` values, `C` = `frames · channels`) as an untaped
    /// tensor.
    pub fn images(&self, data: Vec<f32>) -> Result<Images<D>, ModelError> {
        let per = self.cfg.image_len();
        if data.is_empty() || !data.len().is_multiple_of(per) {
            return Err(ModelError::Shape(format!(
                "image buffer of {} values is not a positive multiple of C·H·W = {per}",
                data.len()
            )));
        }
        let (s, b) = (self.cfg.image_size, data.len() / per);
        Ok(upload(&self.dev, &data, (b, self.cfg.sample_channels(), s, s)))
    }

    /// Predicts ε for a batch; taped (`OwnedTape`) for training, untaped (`NoneTape`) for reference and sampling.
    ///
    /// A clip model (`frames = F > 1`) reads each sample's `F · C` channels as `F` frames: every frame is
    /// patchified like an image, its tokens get the patch position embedding plus the frame's embedding, and
    /// attention runs over all `F · n_patches` tokens of the clip.
    ///
    /// `t[i]` is the timestep of sample `i`; `tokens[i]` holds at most `max_tokens` ids (< `vocab_size`),
    /// padded with PAD = 0. An all-PAD caption is the null condition of classifier-free guidance.
    pub fn forward<T: Tape<f32, D>>(
        &self,
        x: Images<D, T>,
        t: &[usize],
        tokens: &[Vec<usize>],
    ) -> Result<Images<D, T>, ModelError> {
        let cfg = &self.cfg;
        let (b, c, h, w) = *x.shape();
        let s = cfg.image_size;
        if (c, h, w) != (cfg.sample_channels(), s, s) {
            let want = cfg.sample_channels();
            return Err(ModelError::Shape(format!("images are {c}×{h}×{w}, model expects {want}×{s}×{s}")));
        }
        if t.len() != b || tokens.len() != b {
            return Err(ModelError::Shape(format!(
                "batch of {b} images with {} timesteps and {} captions",
                t.len(),
                tokens.len()
            )));
        }
        let pool = self.text_pool(tokens)?;
        let temb = timestep_embedding(t, cfg.width);
        let (p, n, wd, lay, dev) = (cfg.patch_size, cfg.n_patches(), cfg.width, &self.layout, &self.dev);
        let (f, c, nt) = (cfg.frames, cfg.channels, cfg.n_tokens());
        let (pr, ops) = (&self.params, &self.path.ops::<D, T>());

        // Patchify every frame: (B,F·C,H,W) = (B·F,C,H,W) -> (B·F,C,H/P,P,W/P,P) -> (B·F,H/P,W/P,P,P,C)
        // -> (B·F·N, P·P·C); the tokens of a sample are frame-major.
        let xp = x
            .reshape_like(&(b * f, c, s / p, p, s / p, p))
            .permute::<(usize, usize, usize, usize, usize, usize), Axes6<0, 2, 4, 3, 5, 1>>()
            .reshape_like(&(b * nt, cfg.patch_dim()));

        // The conditioning branch borrows the tape first, so its parameters are recorded too.
        let (xp, tape) = xp.split_tape();
        let temb = upload(dev, &temb, (b, wd)).put_tape(tape);
        let cond = linear(ops, pr, lay.t2, silu(linear(ops, pr, lay.t1, temb)));
        let rows = cfg.vocab_size * (cfg.max_tokens + 1);
        let table = pr[lay.text].retaped::<T>().reshape_like(&(rows, wd));
        let text = upload(dev, &pool, (b, rows)).retaped::<T>().matmul(table);
        let (cond, tape) = silu(cond + text).split_tape();

        let x = linear(ops, pr, lay.patch, xp.put_tape(tape)).reshape_like(&(b, nt, wd));
        let pos = pr[lay.pos].retaped::<T>().reshape_like(&(n, wd));
        let pos = match lay.frame {
            None => pos,
            Some(idx) => {
                let frame = pr[idx].retaped::<T>().reshape_like(&(f, wd));
                let grid = (f, n, wd);
                let st = pos.broadcast_like::<_, Axis<0>>(&grid) + frame.broadcast_like::<_, Axis<1>>(&grid);
                st.reshape_like(&(nt, wd))
            }
        };
        let pos = pos.broadcast_like::<(usize, usize, usize), Axis<0>>(&(b, nt, wd));
        let mut x = (x + pos).reshape_like(&(b * nt, wd));
        let cmod = |l: Lin| linear(ops, pr, l, cond.retaped::<T>());
        for blk in &lay.blocks {
            let hn = (ops.norm_modulate)(x.with_empty_tape(), cmod(blk.mods[0]), cmod(blk.mods[1]), b);
            let a = attention(ops, pr, blk.qkvo, hn, b, cfg.heads);
            let x1 = (ops.gate_residual)(a, cmod(blk.mods[2]), x, b);
            let hn = (ops.norm_modulate)(x1.with_empty_tape(), cmod(blk.mods[3]), cmod(blk.mods[4]), b);
            let m = mlp(ops, pr, (blk.fc1, blk.fc2), hn, cfg.activation);
            x = (ops.gate_residual)(m, cmod(blk.mods[5]), x1, b);
        }
        let hn = (ops.norm_modulate)(x, cmod(lay.final_mods[0]), cmod(lay.final_mods[1]), b);
        let out: T2<D, T> = linear(ops, pr, lay.out, hn);
        // Unpatchify: (B·F·N, P·P·C) -> (B·F,H/P,W/P,P,P,C) -> (B·F,C,H/P,P,W/P,P) -> (B,F·C,H,W).
        Ok(out
            .reshape_like(&(b * f, s / p, s / p, p, p, c))
            .permute::<(usize, usize, usize, usize, usize, usize), Axes6<0, 5, 1, 3, 2, 4>>()
            .reshape_like(&(b, f * c, s, s)))
    }

    /// Host pooling matrix `(B, V·(L+1))`: mean over non-PAD tokens of a bag-of-words row and a
    /// word-at-position row; an all-PAD caption selects row 0 (the learned null embedding).
    fn text_pool(&self, tokens: &[Vec<usize>]) -> Result<Vec<f32>, ModelError> {
        let (v, l) = (self.cfg.vocab_size, self.cfg.max_tokens);
        let rows = v * (l + 1);
        let mut pool = vec![0.0f32; tokens.len() * rows];
        for (i, caption) in tokens.iter().enumerate() {
            if caption.len() > l {
                return Err(ModelError::Tokens(format!("caption {i} has {} tokens, max is {l}", caption.len())));
            }
            if let Some(&bad) = caption.iter().find(|&&id| id >= v) {
                return Err(ModelError::Tokens(format!("caption {i} has token id {bad}, vocabulary size is {v}")));
            }
            let row = &mut pool[i * rows..(i + 1) * rows];
            let n_real = caption.iter().filter(|&&id| id != 0).count();
            if n_real == 0 {
                row[0] = 1.0;
                continue;
            }
            let wgt = 1.0 / n_real as f32;
            for (pos, &id) in caption.iter().enumerate().filter(|(_, &id)| id != 0) {
                row[id] += wgt;
                row[v * (pos + 1) + id] += wgt;
            }
        }
        Ok(pool)
    }
}

/// Sinusoidal timestep embedding `[cos(t·f_j), sin(t·f_j)]`, `f_j = 10000^(-j/half)`, on the host.
pub fn timestep_embedding(t: &[usize], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0.0f32; t.len() * dim];
    for (i, &ti) in t.iter().enumerate() {
        for j in 0..half {
            let freq = (-(10000f64.ln()) * j as f64 / half as f64).exp();
            let arg = ti as f64 * freq;
            out[i * dim + j] = arg.cos() as f32;
            out[i * dim + half + j] = arg.sin() as f32;
        }
    }
    out
}
