//! Finds a Python with torch for the tests that run emitted modules and the PyTorch trainer.
//!
//! `SEPPOC_PYTHON`, else the venv `target/torch-venv` (which `.ci/run` and the README's optional PyTorch line
//! create), else `python3`. Without torch the caller returns early, so libtest counts it as passed; the skip is
//! therefore announced on the terminal, outside the harness's output capture (libtest captures only the
//! `print!`/`eprint!` macros, not writes to the `std::io::stderr()` handle), so it shows in a plain
//! `cargo test` run next to the test's `ok`. In CI (`CI=true`), where `.ci/run` installs torch, a missing torch
//! is a failure instead.

use std::path::PathBuf;
use std::process::Command;

/// The interpreter to use, or `None` (after printing why) when torch is absent outside CI.
#[allow(dead_code)] // each test binary uses one of the two
pub fn python_with_torch(test: &str) -> Option<PathBuf> {
    python_with(test, &["torch", "safetensors"])
}

/// A Python that can run the `seppoc_torch` package on seppoc's DiT (`python/pyproject.toml`'s dependencies),
/// or `None` as [`python_with_torch`].
#[allow(dead_code)]
pub fn python_for_seppoc_torch(test: &str) -> Option<PathBuf> {
    python_with(test, &["torch", "safetensors", "accelerate", "pyarrow", "PIL", "numpy", "tqdm"])
}

fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/torch-venv/bin/python");
    let candidates: Vec<PathBuf> = match std::env::var_os("SEPPOC_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![venv, PathBuf::from("python3")],
    };
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-c", &format!("import {}", modules.join(", "))])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let msg = format!(
        "{test}: no Python with {} (tried {}); set SEPPOC_PYTHON, or create target/torch-venv with the \
         README's optional PyTorch line",
        modules.join(", "),
        tried.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: torch is required)");
    }
    let line = format!("SKIPPED (counted as passed) {msg}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    None
}
