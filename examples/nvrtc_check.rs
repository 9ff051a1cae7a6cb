//! Compiles every seppoc CUDA kernel source (`seppoc::kernels::SOURCES`) to PTX with NVRTC and checks that each
//! entry point is in the PTX. Needs only libnvrtc (no GPU, no driver): `scripts/nvrtc-check.sh` sets it up.
//!
//! `cargo run --release --features nvrtc-check --example nvrtc_check`

use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};
use std::process::ExitCode;

/// The architectures checked: NVRTC's default and H100 (sm_90).
const ARCHES: [Option<&str>; 2] = [None, Some("compute_90")];

fn main() -> ExitCode {
    let mut failed = 0;
    for (file, src, entries) in seppoc::kernels::SOURCES {
        for arch in ARCHES {
            let opts = CompileOptions { arch, ..Default::default() };
            let label = arch.unwrap_or("default arch");
            match compile_ptx_with_opts(src, opts) {
                Ok(ptx) => {
                    let text = ptx.to_src();
                    let version = text.lines().find(|l| l.starts_with(".version")).unwrap_or("?").to_string();
                    let target = text.lines().find(|l| l.starts_with(".target")).unwrap_or("?").to_string();
                    let missing: Vec<&str> =
                        entries.iter().copied().filter(|e| !text.contains(&format!(".entry {e}("))).collect();
                    if missing.is_empty() {
                        println!(
                            "ok   {file} [{label}]: {} bytes of PTX, {version}, {target}, entries {entries:?}",
                            text.len()
                        );
                    } else {
                        println!("FAIL {file} [{label}]: entries {missing:?} missing from the PTX");
                        failed += 1;
                    }
                }
                Err(e) => {
                    let log = match &e {
                        CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
                        other => format!("{other:?}"),
                    };
                    println!("FAIL {file} [{label}]: NVRTC error\n{log}");
                    failed += 1;
                }
            }
        }
    }
    if failed == 0 {
        println!("nvrtc-check: every kernel compiled");
        ExitCode::SUCCESS
    } else {
        println!("nvrtc-check: {failed} compilation(s) failed");
        ExitCode::FAILURE
    }
}
