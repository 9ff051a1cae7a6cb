//! `seppoc sample` (being written).

use std::process::ExitCode;

/// Arguments of `seppoc sample`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `seppoc sample`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seppoc sample` is not implemented yet")
}
