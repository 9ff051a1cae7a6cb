//! Preference sets in the Pick-a-Pic shape: a prompt, a preferred image, and optionally a rejected one; with
//! seeded batch sampling for SFT (winners only) and pairwise objectives (winner and loser).

use super::image::Image;
use rand::seq::SliceRandom;
use rand::Rng;

/// One preference record.
#[derive(Clone, Debug, PartialEq)]
pub struct PreferenceItem {
    /// The caption.
    pub prompt: String,
    /// The preferred image, `x_w` (for a tie, image 0; for an unpaired labelled sample, its one image).
    pub winner: Image,
    /// The rejected image, `x_l`, when the data set has pairs (for a tie, image 1).
    pub loser: Option<Image>,
    /// Its label, rewards and weight.
    pub fields: Fields,
}

/// A record's values besides its images, which objectives read as `label`, `reward(x)` and `weight`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fields {
    /// The winner's label: 1 for a decided comparison, 0.5 for a tie (Pick-a-Pic's `label_k`); for an
    /// unpaired labelled sample, its image's label, 1 (desirable) or 0 (undesirable).
    pub label: f64,
    /// The rewards of the winner (or the unpaired image) and of the loser, where the data has them.
    pub reward: [Option<f64>; 2],
    /// The record's weight, where the data has one.
    pub weight: Option<f64>,
}

impl Fields {
    /// A decided comparison (label 1) without rewards or weight.
    pub const DECIDED: Fields = Fields { label: 1.0, reward: [None, None], weight: None };
}

/// Optional fields a reader must supply for every record (an objective reads them), rather than ignore.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldNeeds {
    /// Per-image rewards (`reward(x)`).
    pub reward: bool,
    /// Per-record weights (`weight`).
    pub weight: bool,
}

/// A borrowed preference pair.
#[derive(Clone, Copy, Debug)]
pub struct PairRef<'a> {
    /// The caption.
    pub prompt: &'a str,
    /// The preferred image, `x_w`.
    pub winner: &'a Image,
    /// The rejected image, `x_l`.
    pub loser: &'a Image,
}

/// What a synthetic world (still images or clips) provides to make Pick-a-Pic-like preference data; the
/// preference set and the loser recipe are written once here for both worlds.
pub trait SyntheticWorld {
    /// The world's structured prompt.
    type Prompt: PartialEq;

    /// A uniformly chosen training prompt.
    fn train_prompt<R: Rng>(&self, rng: &mut R) -> Self::Prompt;
    /// A faithful, clean rendering of the prompt.
    fn render_clean<R: Rng>(&self, prompt: &Self::Prompt, rng: &mut R) -> Image;
    /// The prompt in plain words.
    fn prompt_text(prompt: &Self::Prompt) -> String;
    /// The prompt with one attribute changed (possibly to the same value).
    fn perturb_prompt<R: Rng>(prompt: &Self::Prompt, rng: &mut R) -> Self::Prompt;
    /// Whether the prompt names a held-out combination (never used for training data).
    fn is_heldout(&self, prompt: &Self::Prompt) -> bool;
    /// A randomly chosen degradation of a clean rendering.
    fn degrade<R: Rng>(&self, clean: &Image, rng: &mut R) -> Image;
    /// Probability that a loser is a degraded rendering rather than an unfaithful one.
    fn p_loser_degraded(&self) -> f64;

    /// A synthetic preference set of `n` items over training prompts: each winner is a clean rendering, each
    /// loser is a degraded rendering (probability [`SyntheticWorld::p_loser_degraded`]) or a rendering with one
    /// attribute wrong.
    fn preference_set<R: Rng>(&self, n: usize, rng: &mut R) -> PreferenceSet {
        let items = (0..n)
            .map(|_| {
                let prompt = self.train_prompt(rng);
                let winner = self.render_clean(&prompt, rng);
                let loser = self.loser(&prompt, rng);
                PreferenceItem {
                    prompt: Self::prompt_text(&prompt),
                    winner,
                    loser: Some(loser),
                    fields: Fields::DECIDED,
                }
            })
            .collect();
        PreferenceSet { items }
    }

    /// A plausible but unfaithful rendering for the prompt (see [`SyntheticWorld::preference_set`]).
    fn loser<R: Rng>(&self, prompt: &Self::Prompt, rng: &mut R) -> Image {
        if !rng.gen_bool(self.p_loser_degraded()) {
            for _ in 0..16 {
                let wrong = Self::perturb_prompt(prompt, rng);
                if wrong != *prompt && !self.is_heldout(&wrong) {
                    return self.render_clean(&wrong, rng);
                }
            }
        }
        let clean = self.render_clean(prompt, rng);
        self.degrade(&clean, rng)
    }
}

/// A preference data set: synthetic from [`SyntheticWorld::preference_set`] or loaded from an imagefolder.
#[derive(Clone, Debug, PartialEq)]
pub struct PreferenceSet {
    /// The records, in file or generation order.
    pub items: Vec<PreferenceItem>,
}

impl PreferenceSet {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether the set is non-empty and every record has a loser (pairwise objectives can use it).
    pub fn has_pairs(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.loser.is_some())
    }

    /// Number of records with a loser.
    pub fn n_pairs(&self) -> usize {
        self.items.iter().filter(|i| i.loser.is_some()).count()
    }

    /// The same records without losers (for SFT-style objectives that see only winners).
    pub fn winners_only(&self) -> PreferenceSet {
        let items = self.items.iter().map(|i| PreferenceItem { loser: None, ..i.clone() }).collect();
        PreferenceSet { items }
    }

    /// The unpaired labelled samples of the records (`data labelled`): each decided pair gives its winner with
    /// label 1 and its loser with label 0, each with its own reward and the record's weight; a record without
    /// a loser gives its winner with label 1. Ties (label 0.5) are left out: a tie makes neither image desirable
    /// nor undesirable.
    pub fn labelled(&self) -> PreferenceSet {
        let mut items = Vec::with_capacity(2 * self.items.len());
        for it in self.items.iter().filter(|it| it.fields.label == 1.0) {
            let f = it.fields;
            let one = |image: &Image, label: f64, reward: Option<f64>| PreferenceItem {
                prompt: it.prompt.clone(),
                winner: image.clone(),
                loser: None,
                fields: Fields { label, reward: [reward, None], weight: f.weight },
            };
            items.push(one(&it.winner, 1.0, f.reward[0]));
            if let Some(loser) = &it.loser {
                items.push(one(loser, 0.0, f.reward[1]));
            }
        }
        PreferenceSet { items }
    }

    /// Draws `n` records uniformly with replacement; empty when the set is empty.
    pub fn sample_winners(&self, n: usize, rng: &mut impl Rng) -> Vec<&PreferenceItem> {
        if self.items.is_empty() {
            return Vec::new();
        }
        (0..n).map(|_| &self.items[rng.gen_range(0..self.items.len())]).collect()
    }

    /// Draws `n` pairs uniformly with replacement from the records that have a loser; empty when none has.
    pub fn sample_pairs(&self, n: usize, rng: &mut impl Rng) -> Vec<PairRef<'_>> {
        let pairs: Vec<PairRef<'_>> = self
            .items
            .iter()
            .filter_map(|i| i.loser.as_ref().map(|l| PairRef { prompt: &i.prompt, winner: &i.winner, loser: l }))
            .collect();
        if pairs.is_empty() {
            return Vec::new();
        }
        (0..n).map(|_| pairs[rng.gen_range(0..pairs.len())]).collect()
    }

    /// One epoch: a seeded shuffle of all record indices cut into batches of `batch_size` (the last may be
    /// shorter). `batch_size` 0 is treated as 1.
    pub fn epoch_batches(&self, batch_size: usize, rng: &mut impl Rng) -> Vec<Vec<usize>> {
        let mut idx: Vec<usize> = (0..self.items.len()).collect();
        idx.shuffle(rng);
        idx.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
    }
}
