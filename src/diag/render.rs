//! Renders diagnostics rustc-style with ariadne; the only module that knows ariadne.

use super::{Diagnostic, Severity};
use crate::source::SourceFile;
use ariadne::{Cache, Color, Config, IndexType, Label, Report, ReportKind, Source};

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

/// The one file a report is drawn from, under several section ids. Ariadne heads each run of labels with the
/// report's own location when the run is in the report's source, so a label on a line before the primary one is
/// put in a section of its own (another source id for the same text), which ariadne heads with the label's own
/// line:col. Section 0 holds the primary label and the labels at or after its line.
struct OneFile<'a> {
    path: &'a str,
    source: Source<&'a str>,
}

impl<'a> Cache<usize> for OneFile<'a> {
    type Storage = &'a str;

    fn fetch(&mut self, _section: &usize) -> Result<&Source<&'a str>, impl std::fmt::Debug> {
        Ok::<_, std::convert::Infallible>(&self.source)
    }

    fn display<'b>(&self, _section: &'b usize) -> Option<impl std::fmt::Display + 'b> {
        Some(self.path.to_string())
    }
}

fn render_one(diag: &Diagnostic, file: &SourceFile, style: Style) -> String {
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
    // An offset at the very end of the file is drawn on its last line, as ariadne does.
    let line_of = |offset: usize| file.line_col(offset.min(len.saturating_sub(1))).0 as i32;
    let primary_line = line_of(primary.start);
    let config = Config::default().with_color(style == Style::Color).with_index_type(IndexType::Byte);
    // Section 0 is drawn first, its labels in line order (one run); earlier-line labels follow, one section each.
    let mut report = Report::build(kind, (0usize, primary.clone()))
        .with_config(config)
        .with_code(diag.code.as_str())
        .with_message(&diag.message)
        .with_label(
            Label::new((0usize, primary))
                .with_message(&diag.primary.message)
                .with_color(color)
                .with_order(primary_line),
        );
    for (k, label) in diag.secondary.iter().enumerate() {
        let span = clamp(label.span.range());
        let line = line_of(span.start);
        let (section, order) = if line >= primary_line { (0, line) } else { (k + 1, i32::MAX - 1000 + k as i32) };
        report = report.with_label(
            Label::new((section, span)).with_message(&label.message).with_color(Color::Blue).with_order(order),
        );
    }
    for note in &diag.notes {
        report = report.with_note(note);
    }
    if let Some(help) = &diag.help {
        report = report.with_help(help);
    }
    let mut buf = Vec::new();
    let cache = OneFile { path: file.path.as_str(), source: Source::from(file.text.as_str()) };
    match report.finish().write(cache, &mut buf) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        // Writing into a Vec cannot fail; keep the message anyway rather than lose it.
        Err(_) => format!("[{}] {}: {}\n", diag.code, file.path, diag.message),
    }
}
