//! `seppoc check FILE...`: print diagnostics, exit 1 if any file has errors.

use super::{load_source, parse_set, print_diags};
use crate::frontend::frontend_with;
use std::process::ExitCode;

/// Arguments of `seppoc check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Objective files to check.
    #[arg(required = true)]
    files: Vec<String>,
    /// Override a parameter (`--set beta=5000`), checked against its declared type and domain.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    /// Also print the checked program (types of every binding, resolved settings).
    #[arg(long)]
    dump: bool,
    /// A checkpoint the objective will train: say what `err(M, x)` and the timestep values mean for its
    /// parametrisation (ε, v or rectified flow).
    #[arg(long, value_name = "PATH")]
    model: Option<String>,
}

/// Runs `seppoc check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let param = match &args.model {
        Some(m) => Some(
            crate::model::read_checkpoint_meta(std::path::Path::new(m))
                .map_err(|e| anyhow::anyhow!("--model `{m}`: {e}"))?
                .1
                .schedule
                .param,
        ),
        None => None,
    };
    let mut failed = false;
    for path in &args.files {
        let (file, load_diag) = load_source(path)?;
        let result = match load_diag {
            Some(d) => Err(vec![d]),
            None => frontend_with(&file, &args.sets).map(|(checked, _)| checked),
        };
        match result {
            Ok(checked) => {
                print_diags(&checked.warnings, &file);
                if args.dump {
                    out!("{}", checked.dump());
                }
                let n = checked.warnings.len();
                let warn =
                    if n == 0 { String::new() } else { format!(" ({n} warning{})", if n == 1 { "" } else { "s" }) };
                outln!("{path}: ok{warn}");
                if let Some(param) = param {
                    for note in parametrisation_notes(&crate::ir::lower(&checked), param) {
                        outln!("  note: {note}");
                    }
                }
            }
            Err(diags) => {
                print_diags(&diags, &file);
                let n = diags.iter().filter(|d| d.is_error()).count();
                outln!("{path}: {n} error{}", if n == 1 { "" } else { "s" });
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What the objective's model-dependent terms mean on a model of `param`: its own training error, and the
/// timestep values of its noising path.
fn parametrisation_notes(obj: &crate::ir::Objective, param: crate::model::Parametrisation) -> Vec<String> {
    use crate::ir::Datum;
    let mut notes = vec![crate::model::err_weighting_note(param).unwrap_or_else(|| {
        "the model is an ε-prediction model: `err(M, x)` is its ε error, the form the shipped formulas are written in"
            .into()
    })];
    let times: Vec<String> = obj.datums.iter().filter(|d| matches!(d, Datum::Time(..))).map(Datum::name).collect();
    if !times.is_empty() {
        let path = if param == crate::model::Parametrisation::Flow {
            "alpha = 1 − t, sigma = t, snr = alpha²/sigma², timestep = t"
        } else {
            "alpha = √ᾱ_t, sigma = √(1 − ᾱ_t), snr = ᾱ_t/(1 − ᾱ_t), timestep = (t + 1)/T"
        };
        notes.push(format!("{} read this model's noising path: {path}", times.join(", ")));
    }
    notes
}
