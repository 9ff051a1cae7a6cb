//! The DiT denoiser on dfdx (ε-, v- or flow-velocity prediction), its noise schedules and parametrisations,
//! optimizer, EMA and checkpoints.
//!
//! Sizes come from [`DitConfig`] at run time; parameters are flat runtime-shaped tensors generic over the
//! device ([`crate::device::Backend`]).

pub mod checkpoint;
pub mod config;
mod dit;
mod layers;
pub mod optim;
pub mod param;
pub mod schedule;
mod time_values;
pub mod train;

use std::fmt;

pub use checkpoint::{
    load_checkpoint, load_checkpoint_expecting, load_tensors, read_checkpoint_meta, save_checkpoint, save_tensors,
    CheckpointError, CheckpointMeta, ObjectiveMeta, REWARD_KIND,
};
pub use config::{Activation, DitConfig};
pub use dit::{param_specs, timestep_embedding, Dit, Images, ParamSpec};
pub use optim::{AdamW, AdamWConfig, Ema, ParamGrads};
pub use param::{err_weighting_note, Parametrisation, TimeSampling};
pub use schedule::{NoiseSchedule, ScheduleKind, ScheduleSpec};
pub use time_values::TimeValues;
pub use train::{blank_caption, per_sample_error, train_step_mse, MseBatch, StepStats, PAD};

/// Errors from building or running the model on caller-supplied values.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// The configuration is inconsistent (message names the field).
    Config(String),
    /// An input tensor or buffer has the wrong shape.
    Shape(String),
    /// A caption is too long or holds an id outside the vocabulary.
    Tokens(String),
    /// A parameter list has the wrong number of entries.
    ParamCount {
        /// Parameters the model has.
        expected: usize,
        /// Parameters supplied.
        found: usize,
    },
    /// The device (the CUDA driver) failed; the message says what is missing.
    Device(String),
    /// A parameter buffer has the wrong length.
    ParamLen {
        /// Parameter name.
        name: String,
        /// Values expected.
        expected: usize,
        /// Values supplied.
        found: usize,
    },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(m) => write!(f, "invalid model config: {m}"),
            ModelError::Shape(m) => write!(f, "shape mismatch: {m}"),
            ModelError::Tokens(m) => write!(f, "invalid caption: {m}"),
            ModelError::Device(m) => write!(f, "device error: {m}"),
            ModelError::ParamCount { expected, found } => {
                write!(f, "expected {expected} parameter tensors, found {found}")
            }
            ModelError::ParamLen { name, expected, found } => {
                write!(f, "parameter `{name}` needs {expected} values, found {found}")
            }
        }
    }
}

impl std::error::Error for ModelError {}
