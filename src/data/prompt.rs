//! Structured prompts of the shapes world: objects with a shape, a colour and a position, their plain-word
//! text, and a parser back from those words.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A shape the world can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Shape {
    /// A filled disk.
    Circle,
    /// A filled axis-aligned square.
    Square,
    /// A filled isosceles triangle pointing up.
    Triangle,
}

impl Shape {
    /// Every shape, in a fixed order.
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];

    /// The word used in prompts.
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }
}

/// A palette colour. The palette is well separated in RGB and every colour has the same maximum channel
/// value ([`Colour::MAX_CHANNEL`]), so a pixel's foreground coverage can be read off its brightest channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Colour {
    /// RGB (230, 40, 40).
    Red,
    /// RGB (40, 230, 40).
    Green,
    /// RGB (40, 90, 230).
    Blue,
    /// RGB (230, 210, 30).
    Yellow,
}

impl Colour {
    /// Every colour, in a fixed order.
    pub const ALL: [Colour; 4] = [Colour::Red, Colour::Green, Colour::Blue, Colour::Yellow];

    /// The brightest channel of every palette colour, in [0, 1] units (230 / 255).
    pub const MAX_CHANNEL: f32 = 230.0 / 255.0;

    /// The word used in prompts.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
        }
    }

    /// The colour as RGB in [0, 1].
    pub fn rgb(self) -> [f32; 3] {
        let c = match self {
            Colour::Red => [230, 40, 40],
            Colour::Green => [40, 230, 40],
            Colour::Blue => [40, 90, 230],
            Colour::Yellow => [230, 210, 30],
        };
        c.map(|v| v as f32 / 255.0)
    }
}

/// The background colour of every world image: a uniform dark grey, RGB (20, 20, 20), in [0, 1] units.
pub const BACKGROUND: f32 = 20.0 / 255.0;

/// Where an object sits in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Position {
    /// Centre at (0.22, 0.5) of the image.
    Left,
    /// Centre at (0.78, 0.5) of the image.
    Right,
    /// Centre at (0.5, 0.22) of the image.
    Top,
    /// Centre at (0.5, 0.78) of the image.
    Bottom,
    /// Centre at (0.5, 0.5) of the image.
    Center,
}

impl Position {
    /// Every position, in a fixed order.
    pub const ALL: [Position; 5] = [Position::Left, Position::Right, Position::Top, Position::Bottom, Position::Center];

    /// The phrase used in prompts, e.g. `on the left`.
    pub fn phrase(self) -> &'static str {
        match self {
            Position::Left => "on the left",
            Position::Right => "on the right",
            Position::Top => "at the top",
            Position::Bottom => "at the bottom",
            Position::Center => "in the center",
        }
    }

    /// The anchor point as fractions `(x, y)` of the image width and height.
    pub fn anchor(self) -> (f32, f32) {
        match self {
            Position::Left => (0.22, 0.5),
            Position::Right => (0.78, 0.5),
            Position::Top => (0.5, 0.22),
            Position::Bottom => (0.5, 0.78),
            Position::Center => (0.5, 0.5),
        }
    }

    /// The position across the image: two objects may only share an image at opposite positions.
    pub fn opposite(self) -> Option<Position> {
        match self {
            Position::Left => Some(Position::Right),
            Position::Right => Some(Position::Left),
            Position::Top => Some(Position::Bottom),
            Position::Bottom => Some(Position::Top),
            Position::Center => None,
        }
    }
}

/// One object of a prompt. A missing position means "anywhere" (web captions drop it; users may too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// The object's shape.
    pub shape: Shape,
    /// The object's colour.
    pub colour: Colour,
    /// Where the object is, if the prompt says.
    pub position: Option<Position>,
}

impl ObjectSpec {
    /// The words for this object, e.g. `a red circle on the left`.
    pub fn text(&self) -> String {
        let mut s = format!("a {} {}", self.colour.word(), self.shape.word());
        if let Some(p) = self.position {
            s.push(' ');
            s.push_str(p.phrase());
        }
        s
    }
}

/// A structured prompt: one or two objects, in the order the text names them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prompt {
    /// The objects, in text order.
    pub objects: Vec<ObjectSpec>,
}

impl Prompt {
    /// The plain-word text: objects joined by `and`, e.g. `a blue square at the top and a green triangle at the bottom`.
    pub fn text(&self) -> String {
        let parts: Vec<String> = self.objects.iter().map(ObjectSpec::text).collect();
        parts.join(" and ")
    }

    /// Whether two prompts describe the same scene, ignoring the order in which objects are named.
    pub fn same_scene(&self, other: &Prompt) -> bool {
        let mut a = self.objects.clone();
        let mut b = other.objects.clone();
        a.sort();
        b.sort();
        a == b
    }

    /// Parses the words the world uses (case-insensitive, extra whitespace and a trailing period allowed).
    pub fn parse(text: &str) -> Result<Prompt, PromptError> {
        let lower = text.trim().trim_end_matches('.').to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        if words.is_empty() {
            return Err(PromptError::Empty);
        }
        let mut objects = Vec::new();
        let mut idx = 0;
        loop {
            let (obj, next) = parse_object(&words, idx)?;
            objects.push(obj);
            idx = next;
            match words.get(idx) {
                None => break,
                Some(&"and") => idx += 1,
                Some(w) => {
                    return Err(PromptError::Unexpected {
                        word_idx: idx,
                        found: w.to_string(),
                        expected: "`and` or end of prompt",
                    })
                }
            }
        }
        Ok(Prompt { objects })
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Why a text is not a prompt of the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptError {
    /// `""` or only whitespace.
    Empty,
    /// `a purple circle` (word 1 is not a colour), `a red circle on the` (ends early).
    Unexpected {
        /// Index of the offending word (the word count when the text ended early).
        word_idx: usize,
        /// The word found, or the empty string at end of text.
        found: String,
        /// What the parser expected there.
        expected: &'static str,
    },
}

impl fmt::Display for PromptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptError::Empty => f.write_str("empty prompt"),
            PromptError::Unexpected { word_idx, found, expected } if found.is_empty() => {
                write!(f, "prompt ended at word {} where {expected} was expected", word_idx + 1)
            }
            PromptError::Unexpected { word_idx, found, expected } => {
                write!(f, "expected {expected} at word {}, found `{found}`", word_idx + 1)
            }
        }
    }
}

impl std::error::Error for PromptError {}

/// Checks that `words[idx]` is one of `options` and returns the matching value.
fn expect_word<T: Copy>(
    words: &[&str],
    idx: usize,
    options: &[(&str, T)],
    what: &'static str,
) -> Result<T, PromptError> {
    let found = words.get(idx).copied().unwrap_or("");
    options.iter().find(|(w, _)| *w == found).map(|(_, v)| *v).ok_or(PromptError::Unexpected {
        word_idx: idx,
        found: found.to_string(),
        expected: what,
    })
}

/// Parses `a COLOUR SHAPE [PHRASE]` starting at `idx`; returns the object and the index after it.
fn parse_object(words: &[&str], idx: usize) -> Result<(ObjectSpec, usize), PromptError> {
    expect_word(words, idx, &[("a", ()), ("an", ())], "`a`")?;
    let colours: Vec<(&str, Colour)> = Colour::ALL.iter().map(|c| (c.word(), *c)).collect();
    let colour = expect_word(words, idx + 1, &colours, "a colour")?;
    let shapes: Vec<(&str, Shape)> = Shape::ALL.iter().map(|s| (s.word(), *s)).collect();
    let shape = expect_word(words, idx + 2, &shapes, "a shape")?;
    let mut next = idx + 3;
    let mut position = None;
    if let Some(&prep) = words.get(next) {
        if prep != "and" {
            let preps = [("on", ()), ("at", ()), ("in", ())];
            expect_word(words, next, &preps, "`on`, `at`, `in` or `and`")?;
            expect_word(words, next + 1, &[("the", ())], "`the`")?;
            let found = Position::ALL.iter().copied().find(|p| {
                let phrase: Vec<&str> = p.phrase().split(' ').collect();
                phrase[0] == prep && words.get(next + 2) == Some(&phrase[2])
            });
            position = Some(found.ok_or(PromptError::Unexpected {
                word_idx: next + 2,
                found: words.get(next + 2).copied().unwrap_or("").to_string(),
                expected: "a position matching the preposition",
            })?);
            next += 3;
        }
    }
    Ok((ObjectSpec { shape, colour, position }, next))
}
