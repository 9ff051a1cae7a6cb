//! Keeps `grammar/` honest: its keywords are exactly the parser's, and its worked examples check clean.

use seppoc::frontend::frontend;
use seppoc::source::SourceFile;

fn read(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("grammar file exists")
}

#[test]
fn ebnf_keywords_are_the_parser_keywords() {
    let ebnf = read("grammar/obj.ebnf");
    let line = ebnf.lines().find(|l| l.trim_start().starts_with("keyword")).expect("a keyword production");
    let mut listed: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    let mut parser: Vec<&str> = seppoc::syntax::parser::KEYWORDS.to_vec();
    listed.sort();
    parser.sort();
    assert_eq!(listed, parser);
    // Every statement keyword also starts a statement production.
    for kw in parser.iter().filter(|k| **k != "in") {
        assert!(ebnf.contains(&format!("= \"{kw}\"")), "no production starts with `{kw}`");
    }
}

#[test]
fn readme_examples_check_clean() {
    let readme = read("grammar/README.md");
    let blocks: Vec<&str> = readme.split("```obj\n").skip(1).map(|b| b.split("```").next().unwrap_or("")).collect();
    assert!(blocks.len() >= 2, "the grammar README has worked examples");
    for block in blocks {
        let checked = frontend(&SourceFile::new("grammar/README.md", block));
        match checked {
            Ok(c) => assert!(c.warnings.is_empty(), "example warns: {:?}\n{block}", c.warnings),
            Err(d) => panic!("example does not check: {d:?}\n{block}"),
        }
    }
}
