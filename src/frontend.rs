//! The front end as one call: source text to checked program, with every diagnostic on failure.

use crate::check::{self, Checked};
use crate::diag::Diagnostic;
use crate::source::SourceFile;
use crate::syntax;

/// Parses and checks a file. Syntax errors stop before checking (the tree would be partial); otherwise the
/// checker reports everything it finds. Warnings of an accepted program are in `Checked::warnings`.
pub fn frontend(file: &SourceFile) -> Result<Checked, Vec<Diagnostic>> {
    let (ast, errors) = syntax::parse(file);
    if !errors.is_empty() {
        return Err(errors);
    }
    check::check(&ast)
}

/// A checked program with its final parameter values (name, value), after `--set`.
pub type WithParams = (Checked, Vec<(String, f64)>);

/// [`frontend`] followed by `--set` overrides (validated against each parameter's type and domain); returns
/// the program and the final parameter values.
pub fn frontend_with(file: &SourceFile, sets: &[(String, String)]) -> Result<WithParams, Vec<Diagnostic>> {
    let checked = frontend(file)?;
    let values = check::apply_overrides(&checked, sets)?;
    Ok((checked, values))
}

/// A checked objective together with its source: the entry point for using seppoc from Rust.
#[derive(Clone, Debug)]
pub struct Objective {
    /// Where it came from.
    pub source: SourceFile,
    /// The checked program.
    pub checked: Checked,
}

impl Objective {
    /// Parses and checks objective text; `path` is only used in diagnostics.
    pub fn parse(path: &str, text: &str) -> Result<Objective, (SourceFile, Vec<Diagnostic>)> {
        let source = SourceFile::new(path, text);
        match frontend(&source) {
            Ok(checked) => Ok(Objective { source, checked }),
            Err(diags) => Err((source, diags)),
        }
    }

    /// The canonical text of the objective (what `seppoc fmt` prints).
    pub fn canonical_text(&self) -> String {
        syntax::format(&self.checked.file)
    }
}
