//! The synthetic shapes world: its configuration, the prompt universe and its train / held-out split, clean
//! renders, the noisy "web" pretraining distribution, and synthetic preference sets. Deterministic from seeds.

use super::image::Image;
use super::preference::SyntheticWorld;
use super::prompt::{Colour, ObjectSpec, Position, Prompt, Shape};
use super::render::{paint, Degradation, Placed, BASE_RADIUS};
use super::vocab::Vocab;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How wrong the "web" pretraining data is: each probability applies independently per example or object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebNoise {
    /// Per object: the caption names another colour.
    pub p_wrong_colour: f64,
    /// Per object: the caption names another shape.
    pub p_wrong_shape: f64,
    /// Per object: the caption leaves out the position.
    pub p_drop_position: f64,
    /// Per two-object example: the caption leaves out the second object.
    pub p_drop_object: f64,
    /// Per example: the image is degraded (noise, blur or colour shift).
    pub p_degrade: f64,
}

/// Everything that defines a world. There is no `Default`: use [`WorldConfig::default_16`] and change fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldConfig {
    /// Side of the square images in pixels.
    pub image_size: usize,
    /// Largest number of objects in a prompt: 1 or 2.
    pub max_objects: usize,
    /// Probability that a sampled prompt has two objects (when `max_objects` is 2).
    pub p_two_objects: f64,
    /// Relative jitter of object size: the radius is scaled by a uniform factor in `1 ± size_jitter`.
    pub size_jitter: f32,
    /// Jitter of object centres as a fraction of the image side, uniform in `± offset_jitter`.
    pub offset_jitter: f32,
    /// Number of colour×shape pairs that never appear in training prompts.
    pub heldout_pairs: usize,
    /// Fraction of the remaining prompts also held out (unseen compositions of seen pairs).
    pub heldout_fraction: f64,
    /// Seed of the train / held-out split.
    pub split_seed: u64,
    /// Noise of the web pretraining distribution.
    pub web: WebNoise,
    /// Probability that a loser is a degraded render of the prompt rather than a render with one attribute wrong.
    pub p_loser_degraded: f64,
}

impl WorldConfig {
    /// The standard 16×16 world: up to two objects, two held-out colour×shape pairs, moderately noisy web data.
    pub fn default_16() -> WorldConfig {
        WorldConfig {
            image_size: 16,
            max_objects: 2,
            p_two_objects: 0.4,
            size_jitter: 0.1,
            offset_jitter: 0.03,
            heldout_pairs: 2,
            heldout_fraction: 0.1,
            split_seed: 0,
            web: WebNoise {
                p_wrong_colour: 0.2,
                p_wrong_shape: 0.2,
                p_drop_position: 0.3,
                p_drop_object: 0.3,
                p_degrade: 0.3,
            },
            p_loser_degraded: 0.3,
        }
    }
}

/// Why a [`WorldConfig`] cannot make a world.
#[derive(Clone, Debug, PartialEq)]
pub enum WorldConfigError {
    /// `image_size: 4` (must be in 8..=256).
    ImageSize(usize),
    /// `max_objects: 3` (must be 1 or 2).
    MaxObjects(usize),
    /// `p_degrade: 1.5` (a probability or fraction outside [0, 1], or a negative jitter); names the field.
    OutOfRange(&'static str),
    /// `heldout_pairs: 9` (too many: every colour and every shape must keep two training pairs).
    HeldoutPairs(usize),
    /// `frames: 1` in a video world (must be in 2..=16).
    Frames(usize),
}

impl fmt::Display for WorldConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldConfigError::ImageSize(n) => write!(f, "image_size must be in 8..=256, found {n}"),
            WorldConfigError::MaxObjects(n) => write!(f, "max_objects must be 1 or 2, found {n}"),
            WorldConfigError::OutOfRange(field) => write!(f, "{field} is out of range"),
            WorldConfigError::HeldoutPairs(n) => {
                write!(f, "heldout_pairs {n} would leave a colour or shape with fewer than two training pairs")
            }
            WorldConfigError::Frames(n) => write!(f, "frames must be in 2..=16, found {n}"),
        }
    }
}

impl std::error::Error for WorldConfigError {}

/// A world: its config, vocabulary and the split of its finite prompt universe.
#[derive(Clone, Debug)]
pub struct World {
    /// The config it was built from.
    pub config: WorldConfig,
    /// The tokenizer vocabulary.
    pub vocab: Vocab,
    /// Colour×shape pairs that appear in no training prompt.
    pub heldout_pairs: Vec<(Colour, Shape)>,
    /// Training prompts (every position given), sorted.
    pub train: Vec<Prompt>,
    /// Held-out prompts: every prompt with a held-out pair plus a random fraction of the rest, sorted.
    pub heldout: Vec<Prompt>,
}

impl World {
    /// Builds the world and its split; the split depends only on the config.
    pub fn new(config: WorldConfig) -> Result<World, WorldConfigError> {
        validate(&config)?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.split_seed);
        let heldout_pairs = pick_heldout_pairs(config.heldout_pairs, &mut rng)?;
        let (mut train, mut heldout) = (Vec::new(), Vec::new());
        for prompt in all_prompts(config.max_objects) {
            let has_pair = prompt.objects.iter().any(|o| heldout_pairs.contains(&(o.colour, o.shape)));
            if has_pair || rng.gen_bool(config.heldout_fraction) {
                heldout.push(prompt);
            } else {
                train.push(prompt);
            }
        }
        Ok(World { config, vocab: Vocab::new(), heldout_pairs, train, heldout })
    }

    /// Whether any object of the prompt is a held-out colour×shape pair.
    pub fn has_heldout_pair(&self, prompt: &Prompt) -> bool {
        prompt.objects.iter().any(|o| self.heldout_pairs.contains(&(o.colour, o.shape)))
    }

    /// Every prompt the world can produce (train and held-out), with every position given.
    pub fn all_prompts(&self) -> Vec<Prompt> {
        all_prompts(self.config.max_objects)
    }

    /// Draws a training prompt: two objects with probability `p_two_objects`, else one.
    pub fn sample_train_prompt(&self, rng: &mut impl Rng) -> Prompt {
        let want = if self.config.max_objects == 2 && rng.gen_bool(self.config.p_two_objects) { 2 } else { 1 };
        let pool: Vec<&Prompt> = self.train.iter().filter(|p| p.objects.len() == want).collect();
        let pool = if pool.is_empty() { self.train.iter().collect() } else { pool };
        pool.choose(rng).map(|p| (*p).clone()).unwrap_or_else(|| Prompt { objects: Vec::new() })
    }

    /// Renders a clean, faithful image of the prompt with random size and offset jitter. Missing positions are
    /// drawn at random (two objects go to opposite sides).
    pub fn render(&self, prompt: &Prompt, rng: &mut impl Rng) -> Image {
        let s = self.config.image_size as f32;
        let positions = resolve_positions(prompt, rng);
        let mut shapes = Vec::with_capacity(prompt.objects.len());
        for (obj, pos) in prompt.objects.iter().zip(positions) {
            let (ax, ay) = pos.anchor();
            let j = self.config.size_jitter;
            let o = self.config.offset_jitter;
            let r = BASE_RADIUS * s * (1.0 + if j > 0.0 { rng.gen_range(-j..=j) } else { 0.0 });
            let mut jitter = || if o > 0.0 { rng.gen_range(-o..=o) * s } else { 0.0 };
            let placed = Placed { shape: obj.shape, cx: ax * s + jitter(), cy: ay * s + jitter(), r };
            shapes.push((placed, obj.colour));
        }
        paint(self.config.image_size, self.config.image_size, &shapes)
    }

    /// One web pretraining example: `(image, caption)`. The image is a render of a training prompt, degraded
    /// with probability `p_degrade`; the caption is often wrong or incomplete (see [`WebNoise`]).
    pub fn web_example(&self, rng: &mut impl Rng) -> (Image, String) {
        let ex = self.web_example_full(rng);
        (ex.image, ex.caption.text())
    }

    /// Like [`World::web_example`], also returning the true prompt and the structured caption.
    pub fn web_example_full(&self, rng: &mut impl Rng) -> WebExample {
        let truth = self.sample_train_prompt(rng);
        let mut image = self.render(&truth, rng);
        if rng.gen_bool(self.config.web.p_degrade) {
            image = Degradation::sample(rng).apply(&image, rng);
        }
        let caption = corrupt_caption(self, &truth, rng);
        WebExample { image, truth, caption }
    }
}

impl SyntheticWorld for World {
    type Prompt = Prompt;

    fn train_prompt<R: Rng>(&self, rng: &mut R) -> Prompt {
        self.sample_train_prompt(rng)
    }

    fn render_clean<R: Rng>(&self, prompt: &Prompt, rng: &mut R) -> Image {
        self.render(prompt, rng)
    }

    fn prompt_text(prompt: &Prompt) -> String {
        prompt.text()
    }

    fn perturb_prompt<R: Rng>(prompt: &Prompt, rng: &mut R) -> Prompt {
        perturb(prompt, rng)
    }

    fn is_heldout(&self, prompt: &Prompt) -> bool {
        self.has_heldout_pair(prompt)
    }

    fn degrade<R: Rng>(&self, clean: &Image, rng: &mut R) -> Image {
        Degradation::sample(rng).apply(clean, rng)
    }

    fn p_loser_degraded(&self) -> f64 {
        self.config.p_loser_degraded
    }
}

/// A web example with its ground truth.
#[derive(Clone, Debug)]
pub struct WebExample {
    /// The (possibly degraded) image.
    pub image: Image,
    /// The prompt the image was rendered from.
    pub truth: Prompt,
    /// The caption as the web would give it.
    pub caption: Prompt,
}

/// Checks ranges of every config field.
fn validate(c: &WorldConfig) -> Result<(), WorldConfigError> {
    if !(8..=256).contains(&c.image_size) {
        return Err(WorldConfigError::ImageSize(c.image_size));
    }
    if !(1..=2).contains(&c.max_objects) {
        return Err(WorldConfigError::MaxObjects(c.max_objects));
    }
    let probs = [
        ("p_two_objects", c.p_two_objects),
        ("heldout_fraction", c.heldout_fraction),
        ("p_wrong_colour", c.web.p_wrong_colour),
        ("p_wrong_shape", c.web.p_wrong_shape),
        ("p_drop_position", c.web.p_drop_position),
        ("p_drop_object", c.web.p_drop_object),
        ("p_degrade", c.web.p_degrade),
        ("p_loser_degraded", c.p_loser_degraded),
    ];
    for (name, p) in probs {
        if !(0.0..=1.0).contains(&p) {
            return Err(WorldConfigError::OutOfRange(name));
        }
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

/// Picks held-out colour×shape pairs so that every colour and every shape keeps at least two training pairs.
fn pick_heldout_pairs(n: usize, rng: &mut impl Rng) -> Result<Vec<(Colour, Shape)>, WorldConfigError> {
    let mut pairs: Vec<(Colour, Shape)> =
        Colour::ALL.iter().flat_map(|c| Shape::ALL.iter().map(move |s| (*c, *s))).collect();
    pairs.shuffle(rng);
    let mut held = Vec::new();
    for pair in pairs {
        if held.len() == n {
            break;
        }
        let colour_left = Shape::ALL.len() - held.iter().filter(|(c, _)| *c == pair.0).count() - 1;
        let shape_left = Colour::ALL.len() - held.iter().filter(|(_, s)| *s == pair.1).count() - 1;
        if colour_left >= 2 && shape_left >= 2 {
            held.push(pair);
        }
    }
    if held.len() < n {
        return Err(WorldConfigError::HeldoutPairs(n));
    }
    held.sort();
    Ok(held)
}

/// The finite prompt universe: one object anywhere, or two objects at opposite sides (both orders).
fn all_prompts(max_objects: usize) -> Vec<Prompt> {
    let mut objs = Vec::new();
    for colour in Colour::ALL {
        for shape in Shape::ALL {
            objs.push((colour, shape));
        }
    }
    let mut out = Vec::new();
    for &(colour, shape) in &objs {
        for pos in Position::ALL {
            out.push(Prompt { objects: vec![ObjectSpec { shape, colour, position: Some(pos) }] });
        }
    }
    if max_objects >= 2 {
        for pos in [Position::Left, Position::Right, Position::Top, Position::Bottom] {
            let Some(other) = pos.opposite() else { continue };
            for &(c1, s1) in &objs {
                for &(c2, s2) in &objs {
                    let a = ObjectSpec { shape: s1, colour: c1, position: Some(pos) };
                    let b = ObjectSpec { shape: s2, colour: c2, position: Some(other) };
                    out.push(Prompt { objects: vec![a, b] });
                }
            }
        }
    }
    out.sort();
    out
}

/// Fills in missing positions: a lone object anywhere; a second object opposite the first.
fn resolve_positions(prompt: &Prompt, rng: &mut impl Rng) -> Vec<Position> {
    let sides = [Position::Left, Position::Right, Position::Top, Position::Bottom];
    let mut out: Vec<Option<Position>> = prompt.objects.iter().map(|o| o.position).collect();
    if out.len() == 2 {
        match (out[0], out[1]) {
            (None, None) => {
                let p = sides[rng.gen_range(0..4)];
                out = vec![Some(p), p.opposite()];
            }
            (Some(p), None) => out[1] = Some(p.opposite().unwrap_or(sides[rng.gen_range(0..4)])),
            (None, Some(p)) => out[0] = Some(p.opposite().unwrap_or(sides[rng.gen_range(0..4)])),
            _ => {}
        }
    }
    out.into_iter().map(|p| p.unwrap_or_else(|| Position::ALL[rng.gen_range(0..5)])).collect()
}

/// Draws a value from `all` other than `not`.
pub(crate) fn other<T: Copy + PartialEq>(all: &[T], not: T, rng: &mut impl Rng) -> T {
    let rest: Vec<T> = all.iter().copied().filter(|v| *v != not).collect();
    rest[rng.gen_range(0..rest.len())]
}

/// Changes exactly one attribute of one object (or swaps the positions of two objects).
fn perturb(prompt: &Prompt, rng: &mut impl Rng) -> Prompt {
    let mut out = prompt.clone();
    if out.objects.is_empty() {
        return out;
    }
    let i = rng.gen_range(0..out.objects.len());
    match rng.gen_range(0..3) {
        0 => out.objects[i].colour = other(&Colour::ALL, out.objects[i].colour, rng),
        1 => out.objects[i].shape = other(&Shape::ALL, out.objects[i].shape, rng),
        _ if out.objects.len() == 2 => {
            let (a, b) = (out.objects[0].position, out.objects[1].position);
            out.objects[0].position = b;
            out.objects[1].position = a;
        }
        _ => {
            let p = out.objects[i].position.unwrap_or(Position::Center);
            out.objects[i].position = Some(other(&Position::ALL, p, rng));
        }
    }
    out
}

/// Applies the web noise to a true prompt; a corruption that would name a held-out pair is undone.
fn corrupt_caption(world: &World, truth: &Prompt, rng: &mut impl Rng) -> Prompt {
    let noise = &world.config.web;
    let mut objects = truth.objects.clone();
    if objects.len() == 2 && rng.gen_bool(noise.p_drop_object) {
        objects.truncate(1);
    }
    for obj in &mut objects {
        let orig = *obj;
        if rng.gen_bool(noise.p_wrong_colour) {
            obj.colour = other(&Colour::ALL, obj.colour, rng);
        }
        if rng.gen_bool(noise.p_wrong_shape) {
            obj.shape = other(&Shape::ALL, obj.shape, rng);
        }
        if world.heldout_pairs.contains(&(obj.colour, obj.shape)) {
            obj.colour = orig.colour;
            obj.shape = orig.shape;
        }
        if rng.gen_bool(noise.p_drop_position) {
            obj.position = None;
        }
    }
    Prompt { objects }
}
