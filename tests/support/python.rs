//! Finds a Python with torch for the tests that run emitted modules and the PyTorch trainer.
//!
//! `SEPPOC_PYTHON`, else the venv `.ci/run` creates (`target/torch-venv`), else `python3`. Without torch the
//! caller skips with a message — except in CI (`CI=true`), where `.ci/run` installs torch and a missing torch
//! is a failure.

use std::path::PathBuf;
use std::process::Command;

/// The interpreter to use, or `None` (after printing why) when torch is absent outside CI.
pub fn python_with_torch(test: &str) -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/torch-venv/bin/python");
    let candidates: Vec<PathBuf> = match std::env::var_os("SEPPOC_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![venv, PathBuf::from("python3")],
    };
    for py in &candidates {
        let ok = Command::new(py).args(["-c", "import torch, safetensors"]).output().is_ok_and(|o| o.status.success());
        if ok {
            return Some(py.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let msg = format!(
        "{test}: no Python with torch and safetensors (tried {}); set SEPPOC_PYTHON or run .ci/run once to create \
         target/torch-venv",
        tried.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: torch is required)");
    }
    eprintln!("SKIPPED {msg}");
    None
}
