//! `seppoc export-torch FILE --out DIR [run settings]`: the run's preference data and the native trainer's first
//! step, for the PyTorch trainer in `python/` (see [`crate::engine::export`]).

use super::{checked_or_exit, parse_set};
use crate::device::DeviceKind;
use crate::engine::{export::export, prepare, ObjectiveRun, RunSettings, Start};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc export-torch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The objective file.
    file: String,
    /// Override a parameter (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Directory for `data.safetensors` and `first_step.safetensors`.
    #[arg(long)]
    out: String,
    #[command(flatten)]
    settings: RunSettings,
}

/// Runs `seppoc export-torch`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (checked, params) = match checked_or_exit(&args.file, &args.sets)? {
        Ok(ok) => ok,
        Err(code) => return Ok(code),
    };
    let objective = ObjectiveRun::new(&checked, &params)?;
    let out = PathBuf::from(&args.out);
    let start = Start::Fresh { out: Some(out.clone()), settings: args.settings };
    let training = prepare(objective, start, Some(1), DeviceKind::Cpu, String::new())?;
    let done = export(training, &out)?;
    println!(
        "{} preference items -> {}; native first step: loss {:.9} -> {}",
        done.items,
        out.join("data.safetensors").display(),
        done.first_step.loss,
        out.join("first_step.safetensors").display()
    );
    Ok(ExitCode::SUCCESS)
}
