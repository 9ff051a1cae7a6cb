//! Diagnostics as data: a code, a severity, a message, labelled spans, notes and help.
//!
//! Stages return these; only [`render`] turns them into text (with ariadne).

mod codes;
mod decode;
mod render;

pub use codes::Code;
pub use render::{render, Style};

use crate::source::Span;

/// How bad a diagnostic is; any `Error` makes `seppoc check` exit non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Suspicious but accepted.
    Warning,
    /// The program is rejected.
    Error,
}

/// A span with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What is there.
    pub message: String,
}

impl Label {
    /// Creates a label.
    pub fn new(span: Span, message: impl Into<String>) -> Label {
        Label { span, message: message.into() }
    }
}

/// One finding of a stage, in a form any renderer can print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code (`E01xx` syntax, `E02xx` names and types, `E03xx` objective semantics, `W03xx` warnings).
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// Lowercase, no trailing period: what was expected and what was found.
    pub message: String,
    /// The main location.
    pub primary: Label,
    /// Related locations ("declared here").
    pub secondary: Vec<Label>,
    /// Background facts.
    pub notes: Vec<String>,
    /// A concrete fix, in `.obj` syntax where possible.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error; the severity of `code` decides whether it is really a warning.
    #[cold]
    pub fn error(code: Code, primary: Label, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            primary,
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label::new(span, message));
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Whether this diagnostic rejects the program.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether any diagnostic in the list is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}
