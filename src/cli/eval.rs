//! `seppoc eval` (being written).

use std::process::ExitCode;

/// Arguments of `seppoc eval`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `seppoc eval`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seppoc eval` is not implemented yet")
}
