//! Attaches `#` comments to statements, so the formatter can print them back and nothing is lost.

use super::ast::Stmt;

/// A comment: byte offset of its `#` and the text after it (trailing whitespace removed).
pub(crate) struct Comment {
    /// Offset of the `#`.
    pub(crate) at: usize,
    /// Offset just past the comment's last non-blank character.
    pub(crate) end: usize,
    /// The text after `#`.
    pub(crate) text: String,
}

/// Every `#` comment in the text. The language has no strings, so every `#` starts one.
pub(crate) fn scan(text: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(hash) = line.find('#') {
            let body = line[hash + 1..].trim_end();
            out.push(Comment { at: offset + hash, end: offset + hash + 1 + body.len(), text: body.to_string() });
        }
        offset += line.len();
    }
    out
}

/// Distributes comments: own-line ones before a statement (or inside it) lead it, one on its last line trails
/// it, the rest after the last statement trail the file. Also records blank lines between statements.
pub fn attach(text: &str, mut stmts: Vec<Stmt>) -> (Vec<Stmt>, Vec<String>) {
    let mut comments = scan(text).into_iter().peekable();
    let mut prev_end = 0;
    let starts: Vec<usize> = stmts.iter().map(|s| s.span.start as usize).chain([text.len()]).collect();
    for (idx, stmt) in stmts.iter_mut().enumerate() {
        let start = stmt.span.start as usize;
        let end = stmt.span.end as usize;
        let mut first_start = start;
        while let Some(c) = comments.next_if(|c| c.at < end) {
            if c.at < start {
                first_start = first_start.min(c.at);
            }
            stmt.leading_comments.push(c.text);
        }
        stmt.blank_line_before = idx > 0 && has_blank_line(&text[prev_end.min(first_start)..first_start]);
        // A comment trails this statement if it is on its last line and no other statement comes first.
        let next_start = starts[idx + 1];
        let same_line = |c: &Comment| c.at < next_start && !text[end..c.at].contains('\n');
        prev_end = end;
        if let Some(c) = comments.next_if(same_line) {
            prev_end = c.end;
            stmt.trailing_comment = Some(c.text);
        }
    }
    (stmts, comments.map(|c| c.text).collect())
}

fn has_blank_line(gap: &str) -> bool {
    gap.matches('\n').count() >= 2
}
