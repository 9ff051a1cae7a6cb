//! `seppoc explain FILE`: the lowered IR (leaves, nodes, loss, logs) and the per-step execution plan.

use super::checked_or_exit;
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
    let (checked, _) = match checked_or_exit(&args.file, &[])? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    out!("{}", lower(&checked).explain());
    Ok(ExitCode::SUCCESS)
}
