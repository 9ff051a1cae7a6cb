//! Preference data in the Pick-a-Pic v2 Parquet schema (arXiv 2305.01569; the Hugging Face data set
//! `yuvalkirstain/pickapic_v2`): one row per comparison of two images for a caption.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `caption` | string | the prompt as the user typed it |
//! | `jpg_0`, `jpg_1` | binary | the two images, encoded (JPEG in Pick-a-Pic; seppoc writes PNG) |
//! | `label_0`, `label_1` | float64 | 1/0: that image won; 0.5/0.5: a tie |
//! | `model_0`, `model_1` | string | the generator of each image |
//! | `best_image_uid`, `image_0_uid`, `image_1_uid` | string | ids (`best_image_uid` is empty for a tie) |
//! | `has_label`, `are_different` | bool | a decision was recorded; the two images differ |
//! | `ranking_id`, `user_id`, `num_example_per_prompt` | int64 | the comparison chain, the annotator, chain length |
//!
//! | `reward_0`, `reward_1` | float64 | optional: each image's reward (`reward(x)` in an objective) |
//! | `weight` | float64 | optional: the comparison's weight, ≥ 0 (`weight` in an objective) |
//!
//! seppoc also writes `judge_0`, `judge_1` (float64): the exact judge's score of each image, which an objective
//! reads as the reward where a file has no `reward_0`, `reward_1`. The reader needs only `caption`, `jpg_0`,
//! `jpg_1` and `label_0`, as the field's trainers do, reads the reward and weight columns only for an objective
//! that reads them ([`read_fields`]), and ignores any other column. Images of any size are centre-cropped to a square and resized to the model's side
//! with a triangle (bilinear) filter, which at large reduction ratios averages over each output pixel's footprint.
//! A clip of `F` frames (the video world) is stored as one picture of its frames side by side, `F·H` wide and `H`
//! high ([`crate::data::video::clip_to_strip`]); [`read_clips`] reads such files, each frame resized as an image is.
//! Rows are counted from 0 in messages, as pandas counts them. Nothing here panics on a file's contents.

mod columns;
mod read;
mod write;

pub use read::{decode_clip, decode_image, read, read_clips, read_fields};
pub use write::write;

use super::image::Image;
use super::preference::PreferenceItem;
use super::preference::PreferenceSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The key of seppoc's own entry in the file's key-value metadata (how the set was made, as JSON).
pub const METADATA_KEY: &str = "seppoc";

/// Why a Parquet preference file could not be read or written. Each variant names the file; row-level ones
/// name the row (from 0) and the column.
#[derive(Clone, Debug, PartialEq)]
pub enum ParquetError {
    /// The file could not be opened, created, written or renamed.
    Io {
        /// The file.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The bytes are not a readable Parquet file (not Parquet at all, truncated, corrupt).
    NotParquet {
        /// The file.
        path: PathBuf,
        /// The Parquet reader's message.
        message: String,
    },
    /// A required column is absent.
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
    },
    /// A column has a type the reader cannot use.
    WrongType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// What the file holds.
        found: String,
        /// What would do.
        expected: &'static str,
    },
    /// A required value is null.
    Null {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// The column.
        column: &'static str,
    },
    /// A label is not 0, 0.5 or 1, or `label_1` is not `1 − label_0`.
    BadLabel {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// An optional column an objective reads is absent (`reward_0`/`reward_1`, `weight`).
    MissingField {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// The objective's name for it: `reward` or `weight`.
        field: &'static str,
    },
    /// A reward or weight value is not a finite number (a weight also not negative).
    BadValue {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// The column.
        column: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An image's bytes do not decode.
    BadImage {
        /// The file.
        path: PathBuf,
        /// The row, from 0.
        row: usize,
        /// The column.
        column: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The file has no rows with a decision.
    Empty {
        /// The file.
        path: PathBuf,
        /// Rows in the file.
        rows: usize,
    },
}

impl fmt::Display for ParquetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParquetError::*;
        match self {
            Io { path, message } => write!(f, "`{}`: {message}", path.display()),
            NotParquet { path, message } => {
                write!(f, "`{}` is not a readable Parquet file (truncated or corrupt?): {message}", path.display())
            }
            MissingColumn { path, column } => write!(
                f,
                "`{}` has no column `{column}` (a Pick-a-Pic file needs `caption`, `jpg_0`, `jpg_1` and `label_0`)",
                path.display()
            ),
            WrongType { path, column, found, expected } => {
                write!(f, "`{}`: column `{column}` holds {found}, expected {expected}", path.display())
            }
            MissingField { path, column, field } => {
                let columns = if *field == "reward" {
                    "`reward_0` and `reward_1` (each image's reward), or `judge_0` and `judge_1` as `seppoc collect` writes"
                } else {
                    "`weight` (one finite weight >= 0 per comparison)"
                };
                write!(
                    f,
                    "`{}` has no column `{column}`: the objective reads `{field}`, which needs the columns {columns}",
                    path.display()
                )
            }
            BadValue { path, row, column, message } => {
                write!(f, "`{}` row {row}: `{column}` {message}", path.display())
            }
            Null { path, row, column } => write!(f, "`{}` row {row}: `{column}` is null", path.display()),
            BadLabel { path, row, message } => write!(f, "`{}` row {row}: {message}", path.display()),
            BadImage { path, row, column, message } => {
                write!(f, "`{}` row {row}: `{column}` is not a decodable image: {message}", path.display())
            }
            Empty { path, rows } => write!(f, "`{}` has no decided comparison ({rows} rows)", path.display()),
        }
    }
}

impl std::error::Error for ParquetError {}

/// One comparison, as a row of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The prompt.
    pub caption: String,
    /// The two images.
    pub images: [Image; 2],
    /// `label_0`: 1 when image 0 won, 0 when image 1 won, 0.5 for a tie (`label_1` is `1 − label_0`).
    pub label_0: f64,
    /// The generator of each image.
    pub models: [String; 2],
    /// The exact judge's score of each image (written for analysis; not read back).
    pub judge: [f64; 2],
    /// The comparison chain this row belongs to (one per prompt).
    pub ranking_id: i64,
    /// The (simulated) annotator.
    pub user_id: i64,
    /// Comparisons in the chain.
    pub num_example_per_prompt: i64,
}

/// What [`read`] found: the decided pairs as a preference set, the ties kept apart.
#[derive(Clone, Debug, PartialEq)]
pub struct PickapicData {
    /// Decided comparisons: winner and loser.
    pub pairs: PreferenceSet,
    /// Ties (`label_0` 0.5), image 0 as `winner` and image 1 as `loser`, with label 0.5: left out of `pairs`,
    /// as Diffusion-DPO drops them, and kept for objectives that read `label`.
    pub ties: Vec<PreferenceItem>,
    /// Rows in the file.
    pub rows: usize,
    /// Rows with `has_label` false (no decision recorded), skipped.
    pub unlabelled: usize,
    /// seppoc's entry in the file's key-value metadata, if any.
    pub metadata: Option<String>,
}

pub(super) fn io(path: &Path, e: impl fmt::Display) -> ParquetError {
    ParquetError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Which image won a comparison with this `label_0`: 0 for 1, 1 for 0, none for a tie.
pub(super) fn winner_of(label_0: f64) -> Option<usize> {
    if label_0 == 1.0 {
        Some(0)
    } else if label_0 == 0.0 {
        Some(1)
    } else {
        None
    }
}
