//! The scorer: a DiT trunk read as a text–image reward model, and the Bradley–Terry loss it is trained with.
//!
//! The image is cut into patches and embedded as tokens; the caption goes through the DiT's own caption encoding
//! (the world's vocabulary, a learned bag-of-words plus word-at-position table) and conditions every block by
//! adaLN; the timestep input is fixed at 0, so the timestep branch is a learned constant. The reward is the
//! mean of the final projection over every output value, which equals a linear head on the mean-pooled final
//! tokens: `r = mean_n(h_n) · mean_cols(W_out) + mean(b_out)`.
//!
//! Storing the scorer as a DiT keeps one checkpoint format, one optimizer and the fused CPU kernels for it.

use crate::data::Image;
use crate::device::{upload, Backend};
use crate::ir::{log_sigmoid, sigmoid};
use crate::model::{Dit, Images, ModelError, ParamGrads};
use dfdx::prelude::*;

/// The rewards of a batch of images for their captions, `(B,)`.
pub fn rewards<D: Backend, T: Tape<f32, D>>(
    model: &Dit<D>,
    images: Images<D, T>,
    tokens: &[Vec<usize>],
) -> Result<Tensor<(usize,), f32, D, T>, ModelError> {
    let t = vec![0usize; tokens.len()];
    let out = model.forward(images, &t, tokens)?;
    Ok(out.mean::<(usize,), Axes3<1, 2, 3>>())
}

/// Images scored together in one untaped forward pass.
const CHUNK: usize = 256;

/// The reward of every image for its caption's tokens, without gradients, in chunks.
pub fn score<D: Backend>(model: &Dit<D>, images: &[&Image], tokens: &[Vec<usize>]) -> Result<Vec<f32>, ModelError> {
    if images.len() != tokens.len() {
        return Err(ModelError::Shape(format!("{} images with {} captions", images.len(), tokens.len())));
    }
    let mut out = Vec::with_capacity(images.len());
    for (imgs, toks) in images.chunks(CHUNK).zip(tokens.chunks(CHUNK)) {
        let x = model.images(crate::data::image::stack(imgs))?;
        out.extend(rewards(model, x, toks)?.as_vec());
    }
    Ok(out)
}

/// The Bradley–Terry loss of one comparison with reward difference `d = r_0 − r_1` and target `p0` (the
/// probability that image 0 is preferred): the cross-entropy `−p0·log σ(d) − (1 − p0)·log σ(−d)`
/// (Bradley & Terry 1952; with soft targets for ties as PickScore, arXiv 2305.01569 eq. 2), written as
/// `−log σ(d) + (1 − p0)·d`.
pub fn bt_loss(d: f64, p0: f64) -> f64 {
    -log_sigmoid(d) + (1.0 - p0) * d
}

/// What one training step measured, before its update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BtStep {
    /// Mean Bradley–Terry loss over the batch.
    pub loss: f64,
    /// Share of the batch's decided comparisons ordered as the label says (a zero difference counts ½); `None`
    /// when the batch has none.
    pub acc: Option<f64>,
}

/// The loss, gradients and accuracy of one batch of comparisons: `images` holds the batch's images 0 then its
/// images 1 (`2B` images), `tokens` their captions in the same order, `p0` the `B` targets.
///
/// The gradient of the mean loss with respect to each difference, `(σ(d) − p0) / B`, is computed on the host in
/// f64 and pulled back through the network as the weights of `Σ_i c_i·r_i`, so the parameter gradients are those
/// of the loss and its value never passes through a `log` of a rounded probability.
pub fn bt_gradients<D: Backend>(
    model: &Dit<D>,
    images: Vec<f32>,
    tokens: &[Vec<usize>],
    p0: &[f64],
) -> Result<(BtStep, ParamGrads<D>), ModelError> {
    let b = p0.len();
    if tokens.len() != 2 * b || b == 0 {
        return Err(ModelError::Shape(format!(
            "{} captions for {b} comparisons (need two per comparison)",
            tokens.len()
        )));
    }
    let x = model.images(images)?;
    let r = rewards(model, x.traced(model.alloc_grads()), tokens)?;
    let values = r.retaped::<NoneTape>().as_vec();
    let (mut loss, mut right, mut decided) = (0.0, 0.0, 0usize);
    let mut weights = vec![0.0f32; 2 * b];
    for i in 0..b {
        let d = f64::from(values[i]) - f64::from(values[b + i]);
        loss += bt_loss(d, p0[i]);
        let g = (sigmoid(d) - p0[i]) / b as f64;
        weights[i] = g as f32;
        weights[b + i] = -g as f32;
        if p0[i] != 0.5 {
            decided += 1;
            right += agreement(d, p0[i]);
        }
    }
    let dev = model.device().clone();
    let surrogate = (r * upload(&dev, &weights, (2 * b,))).sum::<Rank0, _>();
    let grads = ParamGrads::backward(model, surrogate);
    let acc = (decided > 0).then(|| right / decided as f64);
    Ok((BtStep { loss: loss / b as f64, acc }, grads))
}

/// 1 when the sign of `d` agrees with a decided target `p0`, ½ when `d` is 0, else 0.
pub fn agreement(d: f64, p0: f64) -> f64 {
    if d == 0.0 {
        0.5
    } else if (d > 0.0) == (p0 > 0.5) {
        1.0
    } else {
        0.0
    }
}
