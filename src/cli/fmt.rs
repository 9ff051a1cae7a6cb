//! `seppoc fmt FILE`: print the canonical form; `--check` exits 1 when the file is not canonical.

use super::{load_source, print_diags};
use crate::syntax;
use std::process::ExitCode;

/// Arguments of `seppoc fmt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Objective files to format.
    #[arg(required = true)]
    files: Vec<String>,
    /// Print nothing; exit 1 if any file differs from its canonical form.
    #[arg(long, conflicts_with = "write")]
    check: bool,
    /// Rewrite each file that differs in place (atomically: a temporary file renamed over it).
    #[arg(long)]
    write: bool,
}

/// Runs `seppoc fmt`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in &args.files {
        let (file, load_diag) = load_source(path)?;
        if let Some(d) = load_diag {
            print_diags(&[d], &file);
            failed = true;
            continue;
        }
        let (ast, errors) = syntax::parse(&file);
        if !errors.is_empty() {
            // Formatting a partial tree would drop the statements that did not parse.
            print_diags(&errors, &file);
            failed = true;
            continue;
        }
        let canonical = syntax::format(&ast);
        if args.check {
            if canonical != file.text {
                outln!("{path}: not in canonical form (run `seppoc fmt --write {path}`)");
                failed = true;
            }
        } else if args.write {
            if canonical != file.text {
                crate::engine::write_atomic(std::path::Path::new(path), canonical.as_bytes())?;
                outln!("formatted {path}");
            }
        } else {
            out!("{canonical}");
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
