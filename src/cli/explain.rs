//! `seppoc explain FILE`: the lowered IR (leaves, nodes, loss, logs) and the per-step execution plan.

use super::{load_source, print_diags};
use crate::frontend::frontend;
use crate::ir::lower;
use std::process::ExitCode;

/// Arguments of `seppoc explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file.
    file: String,
}

/// Runs `seppoc explain`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (file, load_diag) = load_source(&args.file)?;
    let checked = match load_diag.map_or_else(|| frontend(&file), |d| Err(vec![d])) {
        Ok(c) => c,
        Err(diags) => {
            print_diags(&diags, &file);
            return Ok(ExitCode::from(1));
        }
    };
    print!("{}", lower(&checked).explain());
    Ok(ExitCode::SUCCESS)
}
