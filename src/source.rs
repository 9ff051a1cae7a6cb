//! Source files and byte-offset spans; the only place that turns raw bytes into checked text.

use crate::diag::{Code, Diagnostic, Label};

/// Largest objective file seppoc reads (1 MiB); real objectives are a few hundred bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

/// A half-open byte range `start..end` into a [`SourceFile`]'s text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// Creates the span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The byte range, for slicing.
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// An objective file: its path (as shown in diagnostics) and its UTF-8 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path shown in diagnostics.
    pub path: String,
    /// The whole text.
    pub text: String,
}

impl SourceFile {
    /// Wraps text that is already a `String`.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile { path: path.into(), text: text.into() }
    }

    /// Decodes raw bytes; invalid UTF-8 or an oversized file becomes a diagnostic on an empty file.
    pub fn from_bytes(path: impl Into<String>, bytes: &[u8]) -> (SourceFile, Option<Diagnostic>) {
        let path = path.into();
        if bytes.len() > MAX_SOURCE_BYTES {
            let diag = Diagnostic::error(
                Code::E0101,
                Label::new(Span::new(0, 0), "file starts here"),
                format!("file is {} bytes; objective files are limited to {} bytes", bytes.len(), MAX_SOURCE_BYTES),
            );
            return (SourceFile::new(path, ""), Some(diag));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => (SourceFile::new(path, text), None),
            Err(err) => {
                // Keep the valid prefix so the label can point at the bad byte with a real line:col.
                let valid = err.valid_up_to();
                let prefix = String::from_utf8_lossy(&bytes[..valid]).into_owned();
                let (line, col) = line_col(&prefix, valid);
                let diag = Diagnostic::error(
                    Code::E0100,
                    Label::new(Span::new(valid, valid), "invalid byte here"),
                    format!("file is not valid UTF-8 (byte {valid}, line {line}, column {col})"),
                )
                .with_help("save the file as UTF-8");
                (SourceFile::new(path, prefix), Some(diag))
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
