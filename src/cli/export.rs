//! `seppoc export-torch FILE --out DIR [run settings]`: the run's preference data and the native trainer's first
//! step (its inputs, every datum the objective reads, its loss), for the PyTorch trainer in `python/` to replay
//! (see [`crate::engine::export`]).

use super::ObjectiveArgs;
use crate::device::DeviceKind;
use crate::engine::{export::export, prepare, RunSettings, Start};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `seppoc export-torch`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    objective: ObjectiveArgs,
    /// Directory for `data.safetensors` (the preference set, tokens, model config, schedule) and
    /// `first_step.safetensors` (the native first step: tokens, `x_t.V`, `t.V`, `eps.V` per view `V`,
    /// `datum.NAME` for every data value the objective reads, and its loss, logs and leaf means).
    #[arg(long)]
    out: String,
    #[command(flatten)]
    settings: RunSettings,
}

/// Runs `seppoc export-torch`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let objective = match args.objective.load()? {
        Ok(obj) => obj,
        Err(code) => return Ok(code),
    };
    let out = PathBuf::from(&args.out);
    let start = Start::Fresh { out: Some(out.clone()), settings: args.settings };
    let training = prepare(objective, start, Some(1), DeviceKind::Cpu, String::new())?;
    if training.settings.model.is_none() {
        super::engine::note_assets()?;
    }
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
