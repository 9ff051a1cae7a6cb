//! Every shipped objective checks clean (no errors, no warnings), is in canonical form, and its checked
//! program is snapshotted so any change to what it means shows up in review.

use seppoc::frontend::Objective;
use std::path::Path;

fn load(path: &Path) -> (String, Objective) {
    let text = std::fs::read_to_string(path).expect("objective file is UTF-8");
    let name = path.file_name().expect("has a name").to_string_lossy().to_string();
    match Objective::parse(&name, &text) {
        Ok(obj) => (text, obj),
        Err((file, diags)) => {
            panic!("{name} does not check:\n{}", seppoc::diag::render(&diags, &file, seppoc::diag::Style::Plain))
        }
    }
}

#[test]
fn shipped_objectives_check_clean() {
    insta::glob!("../objectives", "*.obj", |path| {
        let (text, obj) = load(path);
        assert!(obj.checked.warnings.is_empty(), "{} has warnings: {:?}", path.display(), obj.checked.warnings);
        assert_eq!(obj.canonical_text(), text, "{} is not in canonical form (run `seppoc fmt`)", path.display());
        insta::assert_snapshot!(obj.checked.dump());
    });
}

#[test]
fn every_shipped_objective_opens_with_a_citation() {
    insta::glob!("../objectives", "*.obj", |path| {
        let text = std::fs::read_to_string(path).expect("readable");
        let first = text.lines().next().unwrap_or("");
        assert!(first.starts_with('#'), "{} must open with a comment citing its paper", path.display());
        assert!(text.contains("arXiv"), "{} must cite its paper by arXiv id", path.display());
    });
}

#[test]
fn the_three_core_objectives_ship() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives");
    for name in ["seppo", "dpo", "sft", "spin", "hinge", "ipo", "kto", "robust", "seppo_indicator"] {
        assert!(dir.join(format!("{name}.obj")).exists(), "objectives/{name}.obj is missing");
    }
}
