//! Text to syntax tree. Parsing never fails: it returns a tree of the statements it understood and a
//! diagnostic for each statement it did not.

pub mod ast;
pub(crate) mod comments;
pub mod error;
mod fmt;
pub mod parser;
mod statements;

pub use fmt::expr as format_expr;
pub use fmt::format;

use crate::diag::Diagnostic;
use crate::source::SourceFile;
use nom_locate::LocatedSpan;

/// Parses a whole file, recovering at the next line that starts with a statement keyword after each error.
pub fn parse(file: &SourceFile) -> (ast::File, Vec<Diagnostic>) {
    let text = file.text.as_str();
    let mut stmts = Vec::new();
    let mut diags = Vec::new();
    let mut input = LocatedSpan::new(text);
    loop {
        let at_end = parser::ws(input).map(|(r, _)| r.fragment().is_empty()).unwrap_or(true);
        if at_end {
            break;
        }
        match statements::stmt(input) {
            Ok((rest, stmt)) => {
                stmts.push(stmt);
                input = rest;
            }
            Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => {
                diags.push(error::to_diagnostic(&e, text));
                let stmt_start = parser::ws(input).map_or(input.location_offset(), |(r, _)| r.location_offset());
                match next_statement_line(text, stmt_start, e.at) {
                    Some(next) => input = advance(input, next),
                    None => break,
                }
            }
            Err(nom::Err::Incomplete(_)) => break,
        }
    }
    let (stmts, trailing_comments) = comments::attach(text, stmts);
    (ast::File { stmts, trailing_comments }, diags)
}

/// Moves `input` forward to byte offset `to` (a char boundary past its current offset).
fn advance(input: LocatedSpan<&str>, to: usize) -> LocatedSpan<&str> {
    let skipped = &input.fragment()[..to - input.location_offset()];
    let n_chars = skipped.chars().count();
    nom::bytes::complete::take::<_, _, error::ParseError>(n_chars)(input).map_or(input, |(rest, _)| rest)
}

/// Offset of the first keyword that starts a line, lies after the failed statement's start, and is on or
/// after the line of the error.
fn next_statement_line(text: &str, stmt_start: usize, err_at: usize) -> Option<usize> {
    let err_line_start = text[..err_at.min(text.len())].rfind('\n').map_or(0, |n| n + 1);
    let mut offset = err_line_start;
    for line in text[err_line_start..].split_inclusive('\n') {
        let trimmed = line.trim_start();
        let kw_at = offset + (line.len() - trimmed.len());
        offset += line.len();
        let first: String = trimmed.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if kw_at > stmt_start && parser::KEYWORDS.contains(&first.as_str()) && first != "in" {
            return Some(kw_at);
        }
    }
    None
}
