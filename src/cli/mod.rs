//! The command line: argument parsing and dispatch. Only `cli` reads files, prints, and picks exit codes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check;
mod eval;
mod fmt;
mod pretrain;
mod sample;

/// seppoc: write a diffusion-alignment objective as a `.obj` file, check it, and train with it.
#[derive(Parser, Debug)]
#[command(name = "seppoc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check objective files and print their diagnostics; exits non-zero on errors.
    Check(check::Args),
    /// Print the canonical form of an objective file (`--check`: exit non-zero if it differs).
    Fmt(fmt::Args),
    /// Pretrain the base denoiser on the world's noisy "web" distribution.
    Pretrain(pretrain::Args),
    /// Sample images from a model for a prompt and write a PNG grid.
    Sample(sample::Args),
    /// Score a model with the judge on held-out prompts.
    Eval(eval::Args),
}

/// Runs the command line and returns the process exit code: 0 success, 1 diagnostics with errors, 2 other errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
