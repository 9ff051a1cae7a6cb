//! The comparisons a reward model learns from and is judged on: a Pick-a-Pic Parquet file read into pairs with
//! the probability that image 0 is preferred, and the split of their prompts into training, validation and
//! held-out parts.

use crate::data::parquet::{self, PickapicData};
use crate::data::Image;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// What to do with tied comparisons (`label_0 = label_1 = 0.5`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ties {
    /// Train on them with target ½ for each image, as PickScore does (Kirstain et al., arXiv 2305.01569 §3).
    Soft,
    /// Leave them out of training.
    Skip,
}

/// One comparison: a caption, two images, and `p0`, the probability that image 0 is preferred (1 or 0 for a
/// decided comparison, ½ for a tie).
#[derive(Clone, Debug, PartialEq)]
pub struct RewardPair {
    /// The prompt.
    pub caption: String,
    /// The two images.
    pub images: [Image; 2],
    /// The target: 1 when image 0 won, 0 when image 1 won, ½ for a tie.
    pub p0: f64,
}

impl RewardPair {
    /// Whether the comparison was decided (not a tie).
    pub fn decided(&self) -> bool {
        self.p0 != 0.5
    }
}

/// Which part of the data a prompt belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// Trained on.
    Train,
    /// Training prompts set aside to watch training (logged as `val_acc`; never trained on).
    Val,
    /// Held-out prompts: never seen in training or validation; `seppoc reward eval` measures on them.
    Heldout,
}

/// How prompts are split: each distinct caption goes to one part, by a hash of the caption and the seed, so the
/// parts are disjoint in prompts, independent of the file's row order, and the same for every file that holds
/// the caption.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Share of captions held out.
    pub heldout: f64,
    /// Share of the remaining captions kept for validation.
    pub val: f64,
    /// Seed of the hash.
    pub seed: u64,
}

impl Split {
    /// A number in [0, 1) from the SHA-256 of `(salt, seed, caption)`.
    fn unit(&self, salt: &str, caption: &str) -> f64 {
        let digest = Sha256::digest(format!("seppoc-reward-{salt}\0{}\0{caption}", self.seed).as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_le_bytes(head) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The part of `caption` (compared after trimming surrounding white space).
    pub fn part(&self, caption: &str) -> Part {
        let caption = caption.trim();
        if self.unit("heldout", caption) < self.heldout {
            Part::Heldout
        } else if self.unit("val", caption) < self.val {
            Part::Val
        } else {
            Part::Train
        }
    }
}

/// A preference file's comparisons, split by prompt.
#[derive(Clone, Debug, Default)]
pub struct SplitData {
    /// Training comparisons (ties included; the trainer skips them under `--ties skip`).
    pub train: Vec<RewardPair>,
    /// Validation comparisons.
    pub val: Vec<RewardPair>,
    /// Held-out comparisons.
    pub heldout: Vec<RewardPair>,
    /// Rows in the file.
    pub rows: usize,
    /// Rows without a recorded decision (`has_label` false), skipped.
    pub unlabelled: usize,
}

impl SplitData {
    /// The comparisons of one part.
    pub fn part(&self, part: Part) -> &[RewardPair] {
        match part {
            Part::Train => &self.train,
            Part::Val => &self.val,
            Part::Heldout => &self.heldout,
        }
    }

    /// Distinct captions of one part.
    pub fn captions(&self, part: Part) -> usize {
        let set: std::collections::BTreeSet<&str> = self.part(part).iter().map(|p| p.caption.trim()).collect();
        set.len()
    }
}

/// The pairs of a read file: decided comparisons with the winner as image 0 (`p0` = 1), then ties (`p0` = ½).
pub fn pairs_of(data: PickapicData) -> Vec<RewardPair> {
    let decided = data.pairs.items.into_iter().filter_map(|it| {
        let loser = it.loser?;
        Some(RewardPair { caption: it.prompt, images: [it.winner, loser], p0: 1.0 })
    });
    let ties = data.ties.into_iter().filter_map(|it| {
        let second = it.loser?;
        Some(RewardPair { caption: it.prompt, images: [it.winner, second], p0: 0.5 })
    });
    decided.chain(ties).collect()
}

/// Reads a Pick-a-Pic Parquet file with images of side `size` and splits its comparisons by prompt. Errors name
/// the file and the column or row ([`parquet::ParquetError`]).
pub fn read_split(path: &Path, size: usize, split: &Split) -> anyhow::Result<SplitData> {
    let data = parquet::read(path, size)?;
    let (rows, unlabelled) = (data.rows, data.unlabelled);
    let mut out = SplitData { rows, unlabelled, ..SplitData::default() };
    for pair in pairs_of(data) {
        match split.part(&pair.caption) {
            Part::Train => out.train.push(pair),
            Part::Val => out.val.push(pair),
            Part::Heldout => out.heldout.push(pair),
        }
    }
    Ok(out)
}

/// The SHA-256 of a file, in hex.
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
