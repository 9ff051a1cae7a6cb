//! Data-driven diagnostics: every `tests/ui/**/*.obj` is parsed and checked, and the rendered diagnostics are
//! snapshotted. A first-line comment `args: --set NAME=VALUE` applies overrides. Bless with `cargo insta review`.

use seppoc::diag::{render, Code, Style};
use seppoc::frontend::frontend_with;
use seppoc::source::SourceFile;
use std::path::Path;

fn diagnose(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("test input exists");
    let name = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).display().to_string();
    let (file, load_diag) = SourceFile::from_bytes(name, &bytes);
    let sets = overrides(&file.text);
    let diags = match load_diag {
        Some(d) => vec![d],
        None => match frontend_with(&file, &sets) {
            Ok((checked, _)) => checked.warnings,
            Err(diags) => diags,
        },
    };
    if diags.is_empty() {
        return "(no diagnostics)\n".to_string();
    }
    render(&diags, &file, Style::Plain)
}

fn overrides(text: &str) -> Vec<(String, String)> {
    let first = text.lines().next().unwrap_or("");
    let Some((_, args)) = first.split_once("args:") else { return Vec::new() };
    args.split("--set")
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn ui() {
    insta::glob!("ui/**/*.obj", |path| {
        insta::assert_snapshot!(diagnose(path));
    });
}

#[test]
fn oversized_file() {
    let mut bytes = b"objective t\n".to_vec();
    bytes.resize(seppoc::source::MAX_SOURCE_BYTES + 1, b'#');
    let (file, diag) = SourceFile::from_bytes("tests/ui/generated/oversized.obj", &bytes);
    let diag = diag.expect("an oversized file is rejected");
    insta::assert_snapshot!(render(&[diag], &file, Style::Plain));
}

/// Every diagnostic code but the reserved ones is exercised by at least one snapshot.
#[test]
fn every_code_has_a_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut all = String::new();
    for entry in std::fs::read_dir(&dir).expect("snapshots exist") {
        let path = entry.expect("readable").path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ui__")) {
            all.push_str(&std::fs::read_to_string(&path).expect("snapshot is text"));
        }
    }
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| !Code::RESERVED.contains(c))
        .map(|c| c.as_str())
        .filter(|c| !all.contains(&format!("[{c}]")))
        .collect();
    assert!(missing.is_empty(), "codes without a tests/ui snapshot: {missing:?}");
}
