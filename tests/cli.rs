//! End-to-end runs of the `seppoc` binary: exit codes and what reaches the terminal.

mod cli_support;

use cli_support::{seppoc, text};

fn shipped() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/objectives"))
        .expect("objectives/")
        .map(|e| format!("objectives/{}", e.expect("entry").file_name().to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_every_shipped_objective() {
    let files = shipped();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = seppoc(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches(": ok\n").count(), files.len());
    assert!(out.stderr.is_empty(), "no diagnostics expected: {}", text(&out.stderr));
}

#[test]
fn check_reports_errors_with_location_and_exits_1() {
    let out = seppoc(&["check", "tests/ui/check/mean_inside_logsigmoid.obj", "objectives/sft.obj"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("[E0303]"), "{err}");
    assert!(err.contains("tests/ui/check/mean_inside_logsigmoid.obj:8:18"), "{err}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("mean_inside_logsigmoid.obj: 1 error") && stdout.contains("objectives/sft.obj: ok"),
        "{stdout}"
    );
}

#[test]
fn set_overrides_are_checked() {
    assert_eq!(seppoc(&["check", "--set", "beta=5000", "objectives/seppo.obj"]).status.code(), Some(0));
    let out = seppoc(&["check", "--set", "beta=-1", "objectives/seppo.obj"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[E0308]"));
    let out = seppoc(&["check", "--set", "gamma=1", "objectives/seppo.obj"]);
    assert!(text(&out.stderr).contains("[E0209]"));
}

#[test]
fn invalid_utf8_and_missing_files() {
    let out = seppoc(&["check", "tests/ui/syntax/invalid_utf8.obj"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("[E0100]") && text(&out.stderr).contains(":3:23"));
    let out = seppoc(&["check", "no/such/file.obj"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read `no/such/file.obj`"));
}

#[test]
fn fmt_prints_canonical_form_and_check_mode_detects_drift() {
    let files = shipped();
    let mut args = vec!["fmt", "--check"];
    args.extend(files.iter().map(String::as_str));
    assert_eq!(seppoc(&args).status.code(), Some(0));

    let dir = std::env::temp_dir().join(format!("seppoc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let messy = dir.join("messy.obj");
    std::fs::write(&messy, "objective   t\nloss mean( (err(policy,winner)) )   # keep me\n").expect("write");
    let path = messy.to_string_lossy().to_string();
    assert_eq!(seppoc(&["fmt", "--check", &path]).status.code(), Some(1));
    let out = seppoc(&["fmt", &path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "objective t\nloss mean(err(policy, winner))  # keep me\n");
    let _ = std::fs::remove_dir_all(&dir);
}
