//! `seppoc fmt` (being written).

use std::process::ExitCode;

/// Arguments of `seppoc fmt`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `seppoc fmt`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seppoc fmt` is not implemented yet")
}
