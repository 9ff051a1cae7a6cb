//! The command line: argument parsing and dispatch. Only `cli` reads files, prints, and picks exit codes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// `println!` to stdout; a closed pipe (`seppoc fmt *.obj | head -1`) ends the process quietly.
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::out(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` to stdout; a closed pipe ends the process quietly.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out(format_args!($($t)*)) };
}

/// `eprintln!` that never panics: a closed stderr loses the message.
macro_rules! errln {
    ($($t:tt)*) => { $crate::cli::errln(format_args!($($t)*)) };
}

mod check;
mod collect;
mod compare;
mod emit;
mod engine;
mod eval;
mod explain;
mod export;
mod fmt;
mod loss;
mod plot;
mod pretrain;
mod reward;
mod run;
mod sample;
mod search;

/// seppoc: write a diffusion-alignment objective as a `.obj` file, check it, and train with it.
#[derive(Parser, Debug)]
#[command(name = "seppoc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the base model with an objective, then judge base vs trained on held-out prompts.
    Run(run::Args),
    /// Train several objectives on the same seeds and compare them (table, JSON, Markdown, plots).
    Compare(compare::Args),
    /// Print an objective's IR and its per-step execution plan.
    Explain(explain::Args),
    /// Generate code from an objective: `--target torch` writes a PyTorch module (loss function and plan).
    Emit(emit::Args),
    /// Write a run's preference data and the native trainer's first step (its noised inputs, every datum the
    /// objective reads, its loss) for the PyTorch trainer (`python/`) to replay.
    ExportTorch(export::Args),
    /// Evaluate an objective on given leaf values (f64 oracle and dfdx), with gradients, as JSON.
    Loss(loss::Args),
    /// Check objective files and print their diagnostics; exits non-zero on errors.
    Check(check::Args),
    /// Print the canonical form of an objective file (`--check`: exit non-zero if it differs).
    Fmt(fmt::Args),
    /// Collect preference data as Pick-a-Pic was collected (generator pool, noisy annotator, ties) into Parquet.
    Collect(collect::Args),
    /// Pretrain the base denoiser on the world's noisy "web" distribution.
    Pretrain(pretrain::Args),
    /// Train a learned reward model on preference data (`reward train`) and measure it (`reward eval`).
    #[command(subcommand)]
    Reward(reward::Command),
    /// Sample images from a model for a prompt and write a PNG grid.
    Sample(sample::Args),
    /// Score a model with the judge on held-out prompts.
    Eval(eval::Args),
    /// Search for objectives: typed proposals, rejection on the oracle, a funnel of trainings judged on
    /// validation prompts (archive, leaderboard, plot, top candidates as `.obj` files).
    Search(search::Args),
    /// Plot one run's loss, gradient norm, logged values and judge score against the update (PNG files).
    Plot(plot::Args),
}

/// Writes to stdout. A reader that has gone away (`| head`) is not an error of ours: the process stops quietly
/// with status 0, as it would have printed nothing more anyone reads.
pub(crate) fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Writes a line to stderr, ignoring a closed stderr.
pub(crate) fn errln(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Reads a file as bytes; invalid UTF-8 or an oversized file comes back as a diagnostic, a missing file as an error.
fn load_source(path: &str) -> anyhow::Result<(crate::source::SourceFile, Option<crate::diag::Diagnostic>)> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read `{path}`: {e}"))?;
    Ok(crate::source::SourceFile::from_bytes(path, &bytes))
}

/// Reads, parses and checks an objective and applies `--set`; on diagnostics prints them and yields exit code 1.
fn checked_or_exit(
    path: &str,
    sets: &[(String, String)],
) -> anyhow::Result<Result<crate::frontend::WithParams, ExitCode>> {
    let (file, load_diag) = load_source(path)?;
    match load_diag.map_or_else(|| crate::frontend::frontend_with(&file, sets), |d| Err(vec![d])) {
        Ok(ok) => Ok(Ok(ok)),
        Err(diags) => {
            print_diags(&diags, &file);
            Ok(Err(ExitCode::from(1)))
        }
    }
}

/// Prints diagnostics to stderr, coloured when stderr is a terminal.
fn print_diags(diags: &[crate::diag::Diagnostic], file: &crate::source::SourceFile) {
    use std::io::IsTerminal;
    if diags.is_empty() {
        return;
    }
    let style = if std::io::stderr().is_terminal() { crate::diag::Style::Color } else { crate::diag::Style::Plain };
    let _ =
        std::io::Write::write_all(&mut std::io::stderr().lock(), crate::diag::render(diags, file, style).as_bytes());
}

/// An objective file with `--set` overrides, as `emit` and `export-torch` take it.
#[derive(clap::Args, Debug)]
struct ObjectiveArgs {
    /// The objective file.
    file: String,
    /// Override a parameter (`--set beta=5000`).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_set)]
    sets: Vec<(String, String)>,
}

impl ObjectiveArgs {
    /// The checked objective with its bound parameters, canonical text and hash; diagnostics yield exit code 1.
    fn load(&self) -> anyhow::Result<Result<crate::engine::ObjectiveRun, ExitCode>> {
        Ok(match checked_or_exit(&self.file, &self.sets)? {
            Ok((checked, params)) => Ok(crate::engine::ObjectiveRun::new(&checked, &params)?),
            Err(code) => Err(code),
        })
    }
}

/// Parses `NAME=VALUE` for `--set`.
fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected NAME=VALUE, found `{s}`")),
    }
}

/// The command line's definition, with negative numbers taken as values everywhere (`--steps -5` is then refused
/// by the flag's own check, not answered with clap's advice to write `-- -5`, which would not help).
fn command() -> clap::Command {
    fn allow_negative(cmd: clap::Command) -> clap::Command {
        let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
        let mut cmd = cmd.allow_negative_numbers(true);
        for name in subs {
            cmd = cmd.mut_subcommand(name, allow_negative);
        }
        cmd
    }
    allow_negative(<Cli as clap::CommandFactory>::command()).long_version(long_version())
}

/// `seppoc --version`'s text: the version, then the matrix-product kernel the fused CPU layers selected on this
/// CPU (after `SEPPOC_GEMM_KERNEL`), so a benchmark can say what it measured.
fn long_version() -> &'static str {
    use crate::kernels::fused::gemm::{Kernel, KERNEL_VAR};
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let kernel = Kernel::best();
        let forced = match std::env::var(KERNEL_VAR) {
            Ok(v) if v.trim() == kernel.name() => format!(", forced by {KERNEL_VAR}={v}"),
            _ => String::new(),
        };
        format!("{}\ncpu gemm kernel: {} ({}{forced})", env!("CARGO_PKG_VERSION"), kernel.name(), kernel.describe())
    })
}

/// The message for a negative number given to a flag that counts (steps, prompts, seeds, ...): clap's own says
/// "invalid digit found in string".
fn negative_number_message(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation || !e.to_string().contains("invalid digit") {
        return None;
    }
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (arg, value) = (text(ContextKind::InvalidArg)?, text(ContextKind::InvalidValue)?);
    let flag = arg.split(' ').next().unwrap_or(&arg).to_string();
    (value.trim().parse::<f64>().ok()? < 0.0).then(|| format!("{flag} must be a non-negative integer, got {value}"))
}

/// Parses the process's arguments; help, version and usage errors end the process as clap ends it (status 2 for
/// errors), a negative count with [`negative_number_message`].
fn parse_args() -> Cli {
    let matches = command().try_get_matches().unwrap_or_else(|e| match negative_number_message(&e) {
        Some(message) => {
            errln!("error: {message}");
            std::process::exit(2)
        }
        None => e.exit(),
    });
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the command line and returns the process exit code: 0 success, 1 diagnostics with errors, 2 other errors.
pub fn main() -> ExitCode {
    let cli = parse_args();
    if let Err(e) = crate::engine::stop::install() {
        errln!("warning: {e:#}; Ctrl-C will stop without saving");
    }
    // The command runs on a worker of rayon's pool, so the fused kernels' parallel loops start on this thread
    // and the other worker steals the rest: no hand-off to the pool and back, and no third thread waiting
    // beside two workers on a 2-core machine, for each of the many small products of a sampling step.
    let result = rayon::scope(move |_| match cli.command {
        Command::Run(args) => run::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Check(args) => check::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Loss(args) => loss::run(args),
        Command::Emit(args) => emit::run(args),
        Command::ExportTorch(args) => export::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Pretrain(args) => pretrain::run(args),
        Command::Collect(args) => collect::run(args),
        Command::Reward(cmd) => reward::run(cmd),
        Command::Sample(args) => sample::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Search(args) => search::run(args),
    });
    match result {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<crate::engine::Interrupted>() {
            // Stopped on SIGINT/SIGTERM at a safe point: the message says what was kept and how to resume.
            Some(stopped) => {
                errln!("{stopped}");
                ExitCode::from(130)
            }
            None => {
                errln!("error: {err:#}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    /// Every flag of every command answers `-5` with its own message or takes it as a value; none gives clap's
    /// advice to write `-- -5`, and every counting flag names itself.
    #[test]
    fn negative_numbers_never_get_the_double_dash_tip() {
        let cmd = super::command();
        let mut counted = 0;
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| a.get_long().is_some() && a.get_action().takes_values()) {
                let flag = format!("--{}", arg.get_long().unwrap_or_default());
                let got = super::command().try_get_matches_from(["seppoc", sub.get_name(), &flag, "-5"]);
                let Err(e) = got else { continue };
                let shown = e.to_string();
                assert!(!shown.contains("-- -5"), "{} {flag}: {shown}", sub.get_name());
                if let Some(message) = super::negative_number_message(&e) {
                    assert_eq!(message, format!("{flag} must be a non-negative integer, got -5"));
                    counted += 1;
                }
            }
        }
        assert!(counted > 20, "only {counted} counting flags");
    }
}
