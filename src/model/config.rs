//! Configuration of the DiT denoiser: every size is a run-time value read from here.

use serde::{Deserialize, Serialize};

/// Pointwise nonlinearity used inside the transformer MLPs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`: the cheapest on CPU.
    Relu,
    /// `x * sigmoid(1.702 x)`: a GELU approximation that avoids dfdx's scalar `tanhf`.
    SigmoidGelu,
    /// `x * sigmoid(x)` (SiLU / swish).
    Silu,
}

/// Sizes and choices of the DiT ε-predictor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DitConfig {
    /// Height and width of the (square) images, in pixels.
    pub image_size: usize,
    /// Channels per pixel of one frame (3 for RGB).
    pub channels: usize,
    /// Frames per sample: 1 for images; `F > 1` for clips, stored as images of `F · channels` channels (frame
    /// `f` in channels `f·C..(f+1)·C`) and denoised with full attention over all `F · n_patches` tokens plus a
    /// learned frame embedding. Absent in (and omitted from) image-model configs, so their checkpoints are
    /// unchanged.
    #[serde(default = "one_frame", skip_serializing_if = "is_one_frame")]
    pub frames: usize,
    /// Side of a square patch; must divide `image_size`.
    pub patch_size: usize,
    /// Transformer width (token dimension).
    pub width: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Number of attention heads; must divide `width`.
    pub heads: usize,
    /// Hidden size of each MLP as a multiple of `width`.
    pub mlp_ratio: usize,
    /// Caption vocabulary size, including PAD = 0.
    pub vocab_size: usize,
    /// Fixed caption length in tokens.
    pub max_tokens: usize,
    /// MLP nonlinearity.
    pub activation: Activation,
}

impl DitConfig {
    /// The default model for the 16×16×3 shapes world: patch 4 (16 tokens), width 96, 4 blocks, 4 heads, ReLU.
    ///
    /// Chosen for 2 CPU cores: a batch-32 training step is ~0.13 s and a batch-32 no-grad forward ~0.03 s
    /// (BENCHMARKS.md), so a preference step with 10-step CFG sampling stays under a second.
    pub fn small(image_size: usize, vocab_size: usize, max_tokens: usize) -> Self {
        DitConfig {
            image_size,
            channels: 3,
            frames: 1,
            patch_size: 4,
            width: 96,
            depth: 4,
            heads: 4,
            mlp_ratio: 4,
            vocab_size,
            max_tokens,
            activation: Activation::Relu,
        }
    }

    /// A larger model for the same worlds: patch 4, width 128, 6 blocks, 4 heads (head width 32), ReLU; about 2.4×
    /// the parameters and the compute per step of [`DitConfig::small`].
    pub fn medium(image_size: usize, vocab_size: usize, max_tokens: usize) -> Self {
        DitConfig { width: 128, depth: 6, ..Self::small(image_size, vocab_size, max_tokens) }
    }

    /// A very small model for unit tests (width 32, 2 blocks, patch 4 on the given image size).
    pub fn tiny(image_size: usize, vocab_size: usize, max_tokens: usize) -> Self {
        DitConfig {
            image_size,
            channels: 3,
            frames: 1,
            patch_size: 4,
            width: 32,
            depth: 2,
            heads: 2,
            mlp_ratio: 2,
            vocab_size,
            max_tokens,
            activation: Activation::SigmoidGelu,
        }
    }

    /// The benchmark model of `docs/dfdx.md`, with 3 channels: patch 2, width 128, 4 blocks, 4 heads.
    pub fn bench(image_size: usize, vocab_size: usize, max_tokens: usize) -> Self {
        DitConfig { width: 128, patch_size: 2, ..Self::small(image_size, vocab_size, max_tokens) }
    }

    /// The same model for clips of `frames` frames.
    pub fn with_frames(self, frames: usize) -> Self {
        DitConfig { frames, ..self }
    }

    /// Number of patches per frame.
    pub fn n_patches(&self) -> usize {
        let side = self.image_size / self.patch_size.max(1);
        side * side
    }

    /// Number of tokens per sample (`frames · n_patches`).
    pub fn n_tokens(&self) -> usize {
        self.frames * self.n_patches()
    }

    /// Channels of a sample as the model reads it (`frames · channels`).
    pub fn sample_channels(&self) -> usize {
        self.frames * self.channels
    }

    /// Values per patch of one frame (`patch_size² · channels`).
    pub fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * self.channels
    }

    /// Values per sample (`frames · channels · image_size²`).
    pub fn image_len(&self) -> usize {
        self.sample_channels() * self.image_size * self.image_size
    }

    /// Checks that the sizes fit together; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("image_size", self.image_size),
            ("channels", self.channels),
            ("frames", self.frames),
            ("patch_size", self.patch_size),
            ("width", self.width),
            ("depth", self.depth),
            ("heads", self.heads),
            ("mlp_ratio", self.mlp_ratio),
            ("vocab_size", self.vocab_size),
            ("max_tokens", self.max_tokens),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` must be positive"));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!("`patch_size` {} does not divide `image_size` {}", self.patch_size, self.image_size));
        }
        if self.frames > 64 {
            return Err(format!("`frames` {} is more than 64", self.frames));
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!("`heads` {} does not divide `width` {}", self.heads, self.width));
        }
        Ok(())
    }
}

/// The serde default of [`DitConfig::frames`].
fn one_frame() -> usize {
    1
}

/// Whether [`DitConfig::frames`] is the image default (then it is not serialised).
fn is_one_frame(frames: &usize) -> bool {
    *frames == 1
}
