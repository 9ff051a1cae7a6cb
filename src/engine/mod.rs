//! The diffusion engine as a library: open a checkpoint with its world and schedule ([`open`]), pretrain a
//! base model ([`pretrain`]), train it with an objective ([`run`]) and judge models ([`eval`]). The command
//! line only parses arguments into these types, prints what they return and picks exit codes.
//!
//! Errors are `anyhow` errors whose messages name the file, the flag or the quantity at fault.

pub mod assets;
pub mod collect;
pub mod eval;
pub mod export;
pub mod files;
pub mod open;
pub mod pretrain;
pub mod progress;
pub mod reward;
pub mod run;
pub mod stop;

pub use assets::{Assets, AssetsOrigin, ASSETS_ENV};
pub use collect::{CollectReport, CollectSettings, Collecting, GeneratorSpec};
pub use eval::{evaluate, spread, Comparison, Curve, EvalSettings, Evaluation, DEFAULT_EVAL_SAMPLES};
pub use files::{ensure_writable, model_label, write_atomic, write_grid_index, write_json, DirLock, JsonlWriter};
pub use open::{default_model, model_path, open, Opened};
pub use pretrain::{LrSchedule, ModelSize, PretrainSettings, Pretrained, Pretraining};
pub use progress::Progress;
pub use run::{prepare, ObjectiveRun, RunOutcome, RunSettings, Start, Training, DEFAULT_STEPS};
pub use stop::Interrupted;
