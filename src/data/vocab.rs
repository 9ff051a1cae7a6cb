//! The fixed word vocabulary of the world and the tokenizer the model's text encoder uses.

use super::prompt::{Colour, Position, Shape};

/// Number of tokens every encoded text has (padded with PAD or truncated).
pub const MAX_TOKENS: usize = 16;

/// The fixed vocabulary: id 0 is PAD, id 1 is UNK, then every word the world can emit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<&'static str>,
}

impl Vocab {
    /// Id of the padding token; an all-PAD sequence is the null condition for classifier-free guidance.
    pub const PAD: usize = 0;
    /// Id of the unknown-word token.
    pub const UNK: usize = 1;

    /// Builds the vocabulary. The order is fixed, so ids are stable across runs and versions of the world.
    pub fn new() -> Vocab {
        let mut words: Vec<&'static str> = vec!["<pad>", "<unk>", "a", "an", "and", "on", "at", "in", "the"];
        words.extend(Colour::ALL.iter().map(|c| c.word()));
        words.extend(Shape::ALL.iter().map(|s| s.word()));
        for p in Position::ALL {
            if let Some(last) = p.phrase().split(' ').next_back() {
                words.push(last);
            }
        }
        Vocab { words }
    }

    /// Appends each of `words` not already in the vocabulary, in order, so every existing word keeps its id
    /// (the video world's vocabulary, [`Vocab::video`], adds the motion words this way).
    pub(crate) fn extend_new(&mut self, words: impl IntoIterator<Item = &'static str>) {
        for word in words {
            if self.id(word).is_none() {
                self.words.push(word);
            }
        }
    }

    /// Number of ids (including PAD and UNK).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Always false: the vocabulary has at least PAD and UNK.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of a lowercase word, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<usize> {
        self.words.iter().position(|w| *w == word)
    }

    /// The word of an id (`<pad>`, `<unk>` for the special ids), if the id is in range.
    pub fn word(&self, id: usize) -> Option<&'static str> {
        self.words.get(id).copied()
    }

    /// Encodes a text to exactly [`MAX_TOKENS`] ids: lowercased, split on anything that is not a letter,
    /// unknown words become UNK, then padded with PAD or truncated. `""` encodes to all PAD.
    pub fn encode(&self, text: &str) -> Vec<usize> {
        let lower = text.to_lowercase();
        let mut ids: Vec<usize> = lower
            .split(|c: char| !c.is_alphabetic())
            .filter(|w| !w.is_empty())
            .map(|w| self.id(w).unwrap_or(Vocab::UNK))
            .take(MAX_TOKENS)
            .collect();
        ids.resize(MAX_TOKENS, Vocab::PAD);
        ids
    }

    /// Decodes ids back to words, skipping PAD.
    pub fn decode(&self, ids: &[usize]) -> String {
        let words: Vec<&str> =
            ids.iter().filter(|&&i| i != Vocab::PAD).map(|&i| self.word(i).unwrap_or("<unk>")).collect();
        words.join(" ")
    }
}

impl Default for Vocab {
    /// The one fixed vocabulary; same as [`Vocab::new`].
    fn default() -> Vocab {
        Vocab::new()
    }
}
