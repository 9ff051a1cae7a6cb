//! Prompts of the video world: one object with a colour, a shape and a motion, e.g. `a red circle moving
//! right`, their text and a parser back from those words.

use crate::data::prompt::{Colour, ObjectSpec, PromptError, Shape};
use crate::data::vocab::Vocab;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How the object of a clip changes from the first frame to the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Motion {
    /// The centre moves from 3/4 to 1/4 of the width.
    Left,
    /// The centre moves from 1/4 to 3/4 of the width.
    Right,
    /// The centre moves from 3/4 to 1/4 of the height.
    Up,
    /// The centre moves from 1/4 to 3/4 of the height.
    Down,
    /// The size grows from 0.7 to 1.4 times the base size, centre fixed.
    Grow,
    /// The size shrinks from 1.4 to 0.7 times the base size, centre fixed.
    Shrink,
}

impl Motion {
    /// Every motion, in a fixed order.
    pub const ALL: [Motion; 6] = [Motion::Left, Motion::Right, Motion::Up, Motion::Down, Motion::Grow, Motion::Shrink];

    /// The phrase used in prompts, e.g. `moving left` or `growing`.
    pub fn phrase(self) -> &'static str {
        match self {
            Motion::Left => "moving left",
            Motion::Right => "moving right",
            Motion::Up => "moving up",
            Motion::Down => "moving down",
            Motion::Grow => "growing",
            Motion::Shrink => "shrinking",
        }
    }

    /// Whether the motion moves the centre (rather than changing the size).
    pub fn is_translation(self) -> bool {
        !matches!(self, Motion::Grow | Motion::Shrink)
    }
}

impl Vocab {
    /// The video world's vocabulary: [`Vocab::new`] followed by the motion words not already in it, so every
    /// image-world word keeps its id. (Defined here, beside [`Motion`], so that `vocab` does not depend on the video
    /// world.)
    pub fn video() -> Vocab {
        let mut vocab = Vocab::new();
        vocab.extend_new(Motion::ALL.iter().flat_map(|m| m.phrase().split(' ')));
        vocab
    }
}

/// A structured video prompt. A missing motion means "any motion" (web captions drop it; users may too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VideoPrompt {
    /// The object's colour.
    pub colour: Colour,
    /// The object's shape.
    pub shape: Shape,
    /// What the object does, if the prompt says.
    pub motion: Option<Motion>,
}

impl VideoPrompt {
    /// The plain-word text, e.g. `a red circle moving right` or `a blue square growing`.
    pub fn text(&self) -> String {
        let mut s = format!("a {} {}", self.colour.word(), self.shape.word());
        if let Some(m) = self.motion {
            s.push(' ');
            s.push_str(m.phrase());
        }
        s
    }

    /// The object as an image-world spec without a position (what one frame of the clip shows).
    pub fn object(&self) -> ObjectSpec {
        ObjectSpec { shape: self.shape, colour: self.colour, position: None }
    }

    /// Parses `a COLOUR SHAPE [MOTION]` (case-insensitive, extra whitespace and a trailing period allowed).
    pub fn parse(text: &str) -> Result<VideoPrompt, PromptError> {
        let lower = text.trim().trim_end_matches('.').to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        if words.is_empty() {
            return Err(PromptError::Empty);
        }
        let unexpected = |idx: usize, expected: &'static str| PromptError::Unexpected {
            word_idx: idx,
            found: words.get(idx).copied().unwrap_or("").to_string(),
            expected,
        };
        if !matches!(words[0], "a" | "an") {
            return Err(unexpected(0, "`a`"));
        }
        let colour = Colour::ALL.into_iter().find(|c| words.get(1) == Some(&c.word()));
        let colour = colour.ok_or_else(|| unexpected(1, "a colour"))?;
        let shape = Shape::ALL.into_iter().find(|s| words.get(2) == Some(&s.word()));
        let shape = shape.ok_or_else(|| unexpected(2, "a shape"))?;
        let rest = &words[3..];
        if rest.is_empty() {
            return Ok(VideoPrompt { colour, shape, motion: None });
        }
        let motion = Motion::ALL.into_iter().find(|m| m.phrase().split(' ').eq(rest.iter().copied()));
        match motion {
            Some(m) => Ok(VideoPrompt { colour, shape, motion: Some(m) }),
            None if rest[0] == "moving" => Err(unexpected(4, "`left`, `right`, `up` or `down`")),
            None if Motion::ALL.iter().any(|m| m.phrase() == rest[0]) => Err(unexpected(4, "end of prompt")),
            None => Err(unexpected(3, "`moving`, `growing`, `shrinking` or end of prompt")),
        }
    }
}

impl fmt::Display for VideoPrompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}
