//! Preference data: the synthetic shapes world (ground truth, "web" pretraining data, preference pairs) and
//! user data sets in the imagefolder convention; the video world (`video`) of short clips in motion.
//!
//! **Invariant:** nothing here knows about tensors or models; images are plain `Vec<f32>` in CHW layout, [-1, 1].

pub mod image;
pub mod load;
pub mod parquet;
pub mod preference;
pub mod prompt;
pub mod render;
pub mod video;
pub mod vocab;
pub mod world;

pub use self::image::Image;
pub use self::load::{load_imagefolder, LoadError};
pub use self::preference::{FieldNeeds, Fields, PairRef, PreferenceItem, PreferenceSet, SyntheticWorld};
pub use self::prompt::{Colour, ObjectSpec, Position, Prompt, PromptError, Shape};
pub use self::video::{Motion, VideoPrompt, VideoWorld, VideoWorldConfig};
pub use self::vocab::{Vocab, MAX_TOKENS};
pub use self::world::{World, WorldConfig, WorldConfigError};
