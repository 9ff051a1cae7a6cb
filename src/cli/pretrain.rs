//! `seppoc pretrain` (being written).

use std::process::ExitCode;

/// Arguments of `seppoc pretrain`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `seppoc pretrain`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`seppoc pretrain` is not implemented yet")
}
