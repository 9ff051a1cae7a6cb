//! Comparing objectives (`seppoc compare`): the per-run records read back from run directories ([`read`]), the
//! summary table over seeds (mean ± sample standard deviation) and its Markdown and JSON forms ([`stats`]), and
//! the plots and the Markdown page ([`output`], [`plot`]). The command line runs the trainings and evaluations
//! as child processes and calls these.

pub mod output;
pub mod plot;
pub mod read;
pub mod stats;

pub use stats::*;
