//! `seppoc check` (being written).

use std::process::ExitCode;

/// Arguments of `seppoc check`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `seppoc check`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seppoc check` is not implemented yet")
}
