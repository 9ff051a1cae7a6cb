//! Renders diagnostics rustc-style with ariadne; the only module that knows ariadne.

use super::{Diagnostic, Severity};
use crate::source::SourceFile;
use ariadne::{Color, Config, IndexType, Label, Report, ReportKind, Source};

/// Output style: colours for a terminal, plain text for snapshots and pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// ANSI colours.
    Color,
    /// No colours; trailing whitespace trimmed.
    Plain,
}

/// Renders every diagnostic against its source file into one string.
pub fn render(diags: &[Diagnostic], file: &SourceFile, style: Style) -> String {
    let mut out = String::new();
    for diag in diags {
        out.push_str(&render_one(diag, file, style));
    }
    if style == Style::Plain {
        let trimmed: Vec<&str> = out.lines().map(str::trim_end).collect();
        let mut joined = trimmed.join("\n");
        joined.push('\n');
        return joined;
    }
    out
}

fn render_one(diag: &Diagnostic, file: &SourceFile, style: Style) -> String {
    let path = file.path.as_str();
    let len = file.text.len();
    let clamp = |r: std::ops::Range<usize>| r.start.min(len)..r.end.min(len).max(r.start.min(len));
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let color = match diag.severity {
        Severity::Error => Color::Red,
        Severity::Warning => Color::Yellow,
    };
    let primary = clamp(diag.primary.span.range());
    let config = Config::default().with_color(style == Style::Color).with_index_type(IndexType::Byte);
    let mut report = Report::build(kind, (path, primary.clone()))
        .with_config(config)
        .with_code(diag.code.as_str())
        .with_message(&diag.message)
        .with_label(Label::new((path, primary)).with_message(&diag.primary.message).with_color(color));
    for label in &diag.secondary {
        report = report.with_label(
            Label::new((path, clamp(label.span.range()))).with_message(&label.message).with_color(Color::Blue),
        );
    }
    for note in &diag.notes {
        report = report.with_note(note);
    }
    if let Some(help) = &diag.help {
        report = report.with_help(help);
    }
    let mut buf = Vec::new();
    let written = report.finish().write((path, Source::from(file.text.as_str())), &mut buf);
    match written {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        // Writing into a Vec cannot fail; keep the message anyway rather than lose it.
        Err(_) => format!("[{}] {}: {}\n", diag.code, path, diag.message),
    }
}
