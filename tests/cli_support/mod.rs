//! Helpers shared by the end-to-end CLI tests (`tests/*_cli.rs`, `tests/cli.rs`): run the built `seppoc` binary,
//! read its output as text, and make a fresh scratch directory per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `seppoc ARGS` in the repository root (so `objectives/...` paths work).
pub fn seppoc(args: &[&str]) -> Output {
    seppoc_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Runs `seppoc ARGS` in `dir`.
pub fn seppoc_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seppoc")).args(args).current_dir(dir).output().expect("the binary runs")
}

/// Process output as text (lossy UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory `seppoc-{suite}-{pid}-{name}` under the system temp dir.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seppoc-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Pretrains a tiny base model (10 updates of batch 8 with `seed`) into a scratch folder of `suite` and returns
/// its checkpoint's path; tests share one per binary through a `OnceLock`.
pub fn tiny_base(suite: &str, seed: u64) -> String {
    let out = scratch(suite, "base").join("base");
    let seed = seed.to_string();
    let dir = out.to_string_lossy().into_owned();
    let o = seppoc(&["pretrain", "--size", "tiny", "--steps", "10", "--batch", "8", "--seed", &seed, "--out", &dir]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    out.join("model.safetensors").to_string_lossy().into_owned()
}
