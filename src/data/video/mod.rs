//! The video world: clips of `F` frames (default 4, 16×16 RGB) showing one shapes-world object in motion,
//! their prompts and train / held-out split (unseen colour×motion and shape×motion combinations), the noisy
//! "web" pretraining distribution and synthetic preference pairs. Deterministic from seeds; reuses the image
//! world's palette, shapes, rasteriser and degradations.

mod clip;
mod prompt;

pub use self::clip::{clip_to_strip, join_frames, split_frames, strip_to_clip, ClipDegradation};
pub use self::prompt::{Motion, VideoPrompt};

use super::image::Image;
use super::preference::SyntheticWorld;
use super::prompt::{Colour, Shape};
use super::render::{centroid_dy_factor, paint, Placed, BASE_RADIUS};
use super::vocab::Vocab;
use super::world::{other, WorldConfigError};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Start and end of a translation, as fractions of the image side.
const TRAVEL: (f32, f32) = (0.25, 0.75);
/// Smallest and largest size of a growing or shrinking object, as multiples of the base size.
const SCALE_RANGE: (f32, f32) = (0.7, 1.4);

/// How wrong the "web" pretraining clips are: each probability applies independently per example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoWebNoise {
    /// The caption names another colour.
    pub p_wrong_colour: f64,
    /// The caption names another shape.
    pub p_wrong_shape: f64,
    /// The caption names another motion.
    pub p_wrong_motion: f64,
    /// The caption leaves out the motion.
    pub p_drop_motion: f64,
    /// The clip is degraded (see [`ClipDegradation`]).
    pub p_degrade: f64,
}

/// Everything that defines a video world. There is no `Default`: use [`VideoWorldConfig::default_16`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoWorldConfig {
    /// Side of the square frames in pixels.
    pub image_size: usize,
    /// Frames per clip, in 2..=16.
    pub frames: usize,
    /// Relative jitter of the object's base size, uniform in `1 ± size_jitter`.
    pub size_jitter: f32,
    /// Jitter of the trajectory as a fraction of the image side, uniform in `± offset_jitter`.
    pub offset_jitter: f32,
    /// Number of colour×motion combinations that never appear in training prompts.
    pub heldout_colour_motion: usize,
    /// Number of shape×motion combinations that never appear in training prompts.
    pub heldout_shape_motion: usize,
    /// Fraction of the remaining prompts also held out (unseen compositions of seen combinations).
    pub heldout_fraction: f64,
    /// Seed of the train / held-out split.
    pub split_seed: u64,
    /// Noise of the web pretraining distribution.
    pub web: VideoWebNoise,
    /// Probability that a loser is a degraded clip of the prompt rather than a clip with one attribute wrong.
    pub p_loser_degraded: f64,
}

impl VideoWorldConfig {
    /// The standard world: 4 frames of 16×16, two held-out colour×motion and one shape×motion combination.
    pub fn default_16() -> VideoWorldConfig {
        VideoWorldConfig {
            image_size: 16,
            frames: 4,
            size_jitter: 0.1,
            offset_jitter: 0.03,
            heldout_colour_motion: 2,
            heldout_shape_motion: 1,
            heldout_fraction: 0.1,
            split_seed: 0,
            web: VideoWebNoise {
                p_wrong_colour: 0.2,
                p_wrong_shape: 0.2,
                p_wrong_motion: 0.2,
                p_drop_motion: 0.3,
                p_degrade: 0.3,
            },
            p_loser_degraded: 0.3,
        }
    }
}

/// An attribute×motion combination that no training prompt has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum HeldoutCombo {
    /// A colour with a motion, e.g. red moving left.
    ColourMotion(Colour, Motion),
    /// A shape with a motion, e.g. triangle growing.
    ShapeMotion(Shape, Motion),
}

impl HeldoutCombo {
    /// Whether the prompt has this combination (a prompt without a motion has none).
    pub fn matches(&self, p: &VideoPrompt) -> bool {
        match *self {
            HeldoutCombo::ColourMotion(c, m) => p.colour == c && p.motion == Some(m),
            HeldoutCombo::ShapeMotion(s, m) => p.shape == s && p.motion == Some(m),
        }
    }
}

/// A video world: its config, vocabulary and the split of its finite prompt universe.
#[derive(Clone, Debug)]
pub struct VideoWorld {
    /// The config it was built from.
    pub config: VideoWorldConfig,
    /// The tokenizer vocabulary: the image world's words plus the motion words ([`Vocab::video`]).
    pub vocab: Vocab,
    /// Combinations that appear in no training prompt.
    pub heldout_combos: Vec<HeldoutCombo>,
    /// Training prompts (every motion given), sorted.
    pub train: Vec<VideoPrompt>,
    /// Held-out prompts: every prompt with a held-out combination plus a random fraction of the rest, sorted.
    pub heldout: Vec<VideoPrompt>,
}

/// A web example with its ground truth.
#[derive(Clone, Debug)]
pub struct VideoWebExample {
    /// The (possibly degraded) clip.
    pub clip: Image,
    /// The prompt the clip was rendered from.
    pub truth: VideoPrompt,
    /// The caption as the web would give it.
    pub caption: VideoPrompt,
}

impl VideoWorld {
    /// Builds the world and its split; the split depends only on the config.
    pub fn new(config: VideoWorldConfig) -> Result<VideoWorld, WorldConfigError> {
        validate(&config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.split_seed);
        let mut heldout_combos = Vec::new();
        let colour_pairs = pick_pairs(&Colour::ALL, config.heldout_colour_motion, &mut rng)
            .ok_or(WorldConfigError::HeldoutPairs(config.heldout_colour_motion))?;
        heldout_combos.extend(colour_pairs.into_iter().map(|(c, m)| HeldoutCombo::ColourMotion(c, m)));
        let shape_pairs = pick_pairs(&Shape::ALL, config.heldout_shape_motion, &mut rng)
            .ok_or(WorldConfigError::HeldoutPairs(config.heldout_shape_motion))?;
        heldout_combos.extend(shape_pairs.into_iter().map(|(s, m)| HeldoutCombo::ShapeMotion(s, m)));
        let (mut train, mut heldout) = (Vec::new(), Vec::new());
        for prompt in all_prompts() {
            let held = heldout_combos.iter().any(|h| h.matches(&prompt));
            if held || rng.gen_bool(config.heldout_fraction) {
                heldout.push(prompt);
            } else {
                train.push(prompt);
            }
        }
        Ok(VideoWorld { config, vocab: Vocab::video(), heldout_combos, train, heldout })
    }

    /// Whether the prompt has a held-out attribute×motion combination.
    pub fn has_heldout_combo(&self, prompt: &VideoPrompt) -> bool {
        self.heldout_combos.iter().any(|h| h.matches(prompt))
    }

    /// Every prompt the world can produce (train and held-out), with the motion given.
    pub fn all_prompts(&self) -> Vec<VideoPrompt> {
        all_prompts()
    }

    /// Draws a training prompt uniformly.
    pub fn sample_train_prompt(&self, rng: &mut impl Rng) -> VideoPrompt {
        self.train.choose(rng).copied().unwrap_or(VideoPrompt {
            colour: Colour::Red,
            shape: Shape::Circle,
            motion: Some(Motion::Right),
        })
    }

    /// The object's placement in every frame for the prompt, with random size and offset jitter drawn once per
    /// clip (so the motion itself is exactly linear in centroid and size). A missing motion is drawn at random.
    pub fn trajectory(&self, prompt: &VideoPrompt, rng: &mut impl Rng) -> Vec<Placed> {
        let s = self.config.image_size as f32;
        let motion = prompt.motion.unwrap_or_else(|| Motion::ALL[rng.gen_range(0..Motion::ALL.len())]);
        let (j, o) = (self.config.size_jitter, self.config.offset_jitter);
        let r0 = BASE_RADIUS * s * (1.0 + if j > 0.0 { rng.gen_range(-j..=j) } else { 0.0 });
        let mut jitter = || if o > 0.0 { rng.gen_range(-o..=o) } else { 0.0 };
        let (jx, jy) = (jitter(), jitter());
        let n = self.config.frames;
        (0..n)
            .map(|f| {
                let u = if n > 1 { f as f32 / (n - 1) as f32 } else { 0.0 };
                let lerp = |a: f32, b: f32| a + (b - a) * u;
                let (fx, fy, scale) = match motion {
                    Motion::Left => (lerp(TRAVEL.1, TRAVEL.0), 0.5, 1.0),
                    Motion::Right => (lerp(TRAVEL.0, TRAVEL.1), 0.5, 1.0),
                    Motion::Up => (0.5, lerp(TRAVEL.1, TRAVEL.0), 1.0),
                    Motion::Down => (0.5, lerp(TRAVEL.0, TRAVEL.1), 1.0),
                    Motion::Grow => (0.5, 0.5, lerp(SCALE_RANGE.0, SCALE_RANGE.1)),
                    Motion::Shrink => (0.5, 0.5, lerp(SCALE_RANGE.1, SCALE_RANGE.0)),
                };
                // `(fx, fy)` is the centroid, so a growing triangle does not drift.
                let r = r0 * scale;
                let cy = (fy + jy) * s - centroid_dy_factor(prompt.shape) * r;
                Placed { shape: prompt.shape, cx: (fx + jx) * s, cy, r }
            })
            .collect()
    }

    /// Renders a clean, faithful clip of the prompt (`3·F` channels, see [`join_frames`]).
    pub fn render(&self, prompt: &VideoPrompt, rng: &mut impl Rng) -> Image {
        let size = self.config.image_size;
        let frames: Vec<Image> =
            self.trajectory(prompt, rng).into_iter().map(|p| paint(size, size, &[(p, prompt.colour)])).collect();
        join_frames(&frames)
    }

    /// One web pretraining example: `(clip, caption)`. The clip is a render of a training prompt, degraded with
    /// probability `p_degrade`; the caption is often wrong or incomplete (see [`VideoWebNoise`]).
    pub fn web_example(&self, rng: &mut impl Rng) -> (Image, String) {
        let ex = self.web_example_full(rng);
        (ex.clip, ex.caption.text())
    }

    /// Like [`VideoWorld::web_example`], also returning the true prompt and the structured caption.
    pub fn web_example_full(&self, rng: &mut impl Rng) -> VideoWebExample {
        let truth = self.sample_train_prompt(rng);
        let mut clip = self.render(&truth, rng);
        if rng.gen_bool(self.config.web.p_degrade) {
            clip = ClipDegradation::sample(self.config.frames, rng).apply(&clip, rng);
        }
        let caption = self.corrupt_caption(&truth, rng);
        VideoWebExample { clip, truth, caption }
    }

    /// Applies the web noise to a true prompt; a corruption that would name a held-out combination is undone.
    fn corrupt_caption(&self, truth: &VideoPrompt, rng: &mut impl Rng) -> VideoPrompt {
        let noise = &self.config.web;
        let mut cap = *truth;
        if rng.gen_bool(noise.p_wrong_colour) {
            cap.colour = other(&Colour::ALL, cap.colour, rng);
        }
        if rng.gen_bool(noise.p_wrong_shape) {
            cap.shape = other(&Shape::ALL, cap.shape, rng);
        }
        if rng.gen_bool(noise.p_wrong_motion) {
            cap.motion = cap.motion.map(|m| other(&Motion::ALL, m, rng));
        }
        if self.has_heldout_combo(&cap) {
            cap = *truth;
        }
        if rng.gen_bool(noise.p_drop_motion) {
            cap.motion = None;
        }
        cap
    }
}

impl SyntheticWorld for VideoWorld {
    type Prompt = VideoPrompt;

    fn train_prompt<R: Rng>(&self, rng: &mut R) -> VideoPrompt {
        self.sample_train_prompt(rng)
    }

    fn render_clean<R: Rng>(&self, prompt: &VideoPrompt, rng: &mut R) -> Image {
        self.render(prompt, rng)
    }

    fn prompt_text(prompt: &VideoPrompt) -> String {
        prompt.text()
    }

    fn perturb_prompt<R: Rng>(prompt: &VideoPrompt, rng: &mut R) -> VideoPrompt {
        perturb(prompt, rng)
    }

    fn is_heldout(&self, prompt: &VideoPrompt) -> bool {
        self.has_heldout_combo(prompt)
    }

    fn degrade<R: Rng>(&self, clean: &Image, rng: &mut R) -> Image {
        ClipDegradation::sample(self.config.frames, rng).apply(clean, rng)
    }

    fn p_loser_degraded(&self) -> f64 {
        self.config.p_loser_degraded
    }
}

/// Checks ranges of every config field.
fn validate(c: &VideoWorldConfig) -> Result<(), WorldConfigError> {
    if !(8..=256).contains(&c.image_size) {
        return Err(WorldConfigError::ImageSize(c.image_size));
    }
    if !(2..=16).contains(&c.frames) {
        return Err(WorldConfigError::Frames(c.frames));
    }
    let probs = [
        ("heldout_fraction", c.heldout_fraction),
        ("p_wrong_colour", c.web.p_wrong_colour),
        ("p_wrong_shape", c.web.p_wrong_shape),
        ("p_wrong_motion", c.web.p_wrong_motion),
        ("p_drop_motion", c.web.p_drop_motion),
        ("p_degrade", c.web.p_degrade),
        ("p_loser_degraded", c.p_loser_degraded),
    ];
    if let Some((name, _)) = probs.iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
        return Err(WorldConfigError::OutOfRange(name));
    }
    if c.heldout_fraction > 0.5 {
        return Err(WorldConfigError::OutOfRange("heldout_fraction"));
    }
    if !(0.0..0.5).contains(&c.size_jitter) {
        return Err(WorldConfigError::OutOfRange("size_jitter"));
    }
    if !(0.0..0.1).contains(&c.offset_jitter) {
        return Err(WorldConfigError::OutOfRange("offset_jitter"));
    }
    Ok(())
}

/// Picks `n` attribute×motion pairs so that every attribute value keeps at least three training motions and
/// every motion at least two training values; `None` when that is impossible.
fn pick_pairs<A: Copy + PartialEq + Ord>(values: &[A], n: usize, rng: &mut impl Rng) -> Option<Vec<(A, Motion)>> {
    let mut pairs: Vec<(A, Motion)> = values.iter().flat_map(|a| Motion::ALL.map(|m| (*a, m))).collect();
    pairs.shuffle(rng);
    let mut held: Vec<(A, Motion)> = Vec::new();
    for pair in pairs {
        if held.len() == n {
            break;
        }
        let value_left = Motion::ALL.len() - held.iter().filter(|(a, _)| *a == pair.0).count() - 1;
        let motion_left = values.len() - held.iter().filter(|(_, m)| *m == pair.1).count() - 1;
        if value_left >= 3 && motion_left >= 2 {
            held.push(pair);
        }
    }
    held.sort();
    (held.len() == n).then_some(held)
}

/// The finite prompt universe: every colour, shape and motion.
fn all_prompts() -> Vec<VideoPrompt> {
    let mut out = Vec::new();
    for colour in Colour::ALL {
        for shape in Shape::ALL {
            for motion in Motion::ALL {
                out.push(VideoPrompt { colour, shape, motion: Some(motion) });
            }
        }
    }
    out.sort();
    out
}

/// Changes exactly one attribute: the colour, the shape or the motion.
fn perturb(prompt: &VideoPrompt, rng: &mut impl Rng) -> VideoPrompt {
    let mut out = *prompt;
    match rng.gen_range(0..3) {
        0 => out.colour = other(&Colour::ALL, out.colour, rng),
        1 => out.shape = other(&Shape::ALL, out.shape, rng),
        _ => out.motion = Some(other(&Motion::ALL, out.motion.unwrap_or(Motion::Right), rng)),
    }
    out
}
