//! Decoding an objective file's bytes into a [`SourceFile`]; an oversized file or invalid UTF-8 is a diagnostic.

use super::{Code, Diagnostic, Label};
use crate::source::{SourceFile, Span, MAX_SOURCE_BYTES};

impl SourceFile {
    /// Decodes raw bytes; invalid UTF-8 or an oversized file becomes a diagnostic on an empty file. A UTF-8
    /// byte order mark at the start (some Windows editors write one) is skipped: it is not part of the text.
    pub fn from_bytes(path: impl Into<String>, bytes: &[u8]) -> (SourceFile, Option<Diagnostic>) {
        let path = path.into();
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
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
                let file = SourceFile::new(path, String::from_utf8_lossy(&bytes[..valid]).into_owned());
                let (line, col) = file.line_col(valid);
                let diag = Diagnostic::error(
                    Code::E0100,
                    Label::new(Span::new(valid, valid), "invalid byte here"),
                    format!("file is not valid UTF-8 (byte {valid}, line {line}, column {col})"),
                )
                .with_help("save the file as UTF-8");
                (file, Some(diag))
            }
        }
    }
}
