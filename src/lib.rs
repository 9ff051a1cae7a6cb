//! seppoc: a small language for diffusion-alignment objectives, and the toolkit that trains with them.
//!
//! Pipeline: `.obj` text → [`syntax::parse`] → [`check::check`] → [`ir::lower`] → [`ir::Objective::bind`] (the
//! `--set` values, by name) → [`compile::loss_graph`] → [`trainer::Trainer`].
//! The diffusion engine lives beside it: [`data`] (the shapes world and user data sets), [`eval`] (the exact
//! judge), [`device`] (the `--device` choice and the [`device::Backend`] trait every device-generic part is built
//! on), [`model`] (the DiT denoiser, schedules, checkpoints), [`sampler`] (DDPM/DDIM
//! with CFG) and [`kernels`] (the DiT's fused ops: CPU kernels, composite dfdx ops on CUDA).
#![warn(missing_docs)]

pub mod builder;
pub mod check;
pub mod cli;
pub mod compare;
pub mod compile;
pub mod data;
pub mod device;
pub mod diag;
pub mod emit;
pub mod engine;
pub mod eval;
pub mod frontend;
pub mod ir;
pub mod kernels;
pub mod lint;
pub mod model;
mod panics;
pub mod sampler;
pub mod search;
pub mod source;
pub mod syntax;
pub mod trainer;
pub mod world;
