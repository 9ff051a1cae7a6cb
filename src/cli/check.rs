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
}

/// Runs `seppoc check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
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
