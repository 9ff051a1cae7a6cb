//! The PyTorch trainer (the `seppoc_torch` package in `python/`, run as `python -m seppoc_torch train`) against seppoc: (group B) a 2-process gloo DDP run equals the
//! 1-process run at the same global batch, weights after 3 SePPO updates to 1e-5 (in float64); (group C) from the same weights, data
//! and seed, its first step's loss and every leaf's batch mean equal `seppoc run`'s first step (recorded by
//! `seppoc export-torch`) to 1e-4 relative. Needs a Python with torch (`tests/support/python.rs`).

#[path = "support/python.rs"]
mod python;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEPPOC: &str = env!("CARGO_BIN_EXE_seppoc");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.current_dir(root()).output().expect("starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Emits `objective` and exports its data and the native first step (batch 4, 64 items, seed 0) into `dir`.
fn prepare(dir: &Path, objective: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("temp dir");
    let module = dir.join(format!("{objective}.py"));
    let obj = format!("objectives/{objective}.obj");
    run(Command::new(SEPPOC).args(["emit", "--target", "torch", &obj, "-o"]).arg(&module));
    let export = dir.join(format!("export-{objective}"));
    run(Command::new(SEPPOC).args(["export-torch", &obj, "--batch", "4", "--data-size", "64", "--out"]).arg(&export));
    (module, export)
}

/// `seppoc_torch train` on seppoc's base DiT with `export`'s data, one thread, batch 4, records as JSON lines.
fn train_args(module: &Path, export: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-m", "seppoc_torch", "train", "--json", "--cpu"].map(String::from).to_vec();
    args.extend(["--model".into(), root().join("assets/base/model.safetensors").display().to_string()]);
    args.extend(["--objective".into(), module.display().to_string()]);
    args.extend(["--data".into(), export.join("data.safetensors").display().to_string()]);
    args.extend(["--threads".into(), "1".into(), "--batch".into(), "4".into()]);
    args
}

/// The interpreter with the package importable from the source tree (no install needed).
fn python(py: &Path) -> Command {
    let mut cmd = Command::new(py);
    cmd.env("PYTHONPATH", root().join("python")).env("HF_HUB_OFFLINE", "1");
    cmd
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("seppoc-{name}-{}", std::process::id()))
}

#[test]
fn ddp_two_processes_equal_one_process() {
    let Some(py) = python::python_for_seppoc_torch("ddp_two_processes_equal_one_process") else { return };
    let dir = temp("ddp");
    let (module, export) = prepare(&dir, "seppo");
    // A large learning rate without warmup, so 3 updates move the weights far beyond the tolerance; float64,
    // because AdamW's first steps divide each gradient by its own size: in float32 the rounding of a different
    // batch split, in gradients near zero, moves weights by up to ~lr / 10 (measured 2e-4 at lr 1e-3).
    let common = ["--steps", "3", "--lr", "1e-3", "--warmup", "0", "--dtype", "float64"];
    let one = dir.join("one");
    run(python(&py).args(train_args(&module, &export)).args(common).arg("--out").arg(&one));
    let two = dir.join("two");
    run(python(&py)
        .args(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])
        .args(train_args(&module, &export))
        .args(common)
        .arg("--out")
        .arg(&two));
    let cmp = format!(
        "from safetensors.torch import load_file as l\n\
         a, b, c = l({:?}), l({:?}), l('assets/base/model.safetensors')\n\
         print(max((a[k] - b[k]).abs().max().item() for k in c), max((a[k] - c[k]).abs().max().item() for k in c))",
        one.join("model.safetensors").display().to_string(),
        two.join("model.safetensors").display().to_string()
    );
    let out = run(Command::new(&py).args(["-c", &cmp]));
    let v: Vec<f64> = out.split_whitespace().map(|x| x.parse().expect("number")).collect();
    let (diff, moved) = (v[0], v[1]);
    eprintln!("2 processes vs 1: max |weight difference| {diff:e}; max |change from the base| {moved:e}");
    assert!(moved > 1e-3, "the run barely trained ({moved:e}); the comparison would prove nothing");
    assert!(diff <= 1e-5, "2-process weights differ from 1-process weights by {diff:e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn first_step_agrees_with_seppoc_run() {
    let Some(py) = python::python_for_seppoc_torch("first_step_agrees_with_seppoc_run") else { return };
    let dir = temp("first-step");
    for objective in ["sft", "dpo", "seppo", "kto"] {
        let (module, export) = prepare(&dir, objective);
        let out = run(python(&py)
            .args(train_args(&module, &export))
            .args(["--steps", "1", "--replay-first-step"])
            .arg(export.join("first_step.safetensors")));
        let rec: Value = serde_json::from_str(out.lines().next().expect("a line")).expect("JSON");
        let close = |what: &str, a: f64, b: f64| {
            let rel = (a - b).abs() / b.abs().max(1e-12);
            eprintln!("{objective}: {what}: torch {a:.9} seppoc {b:.9} (relative difference {rel:.1e})");
            assert!(rel <= 1e-4, "{objective}: {what}: torch {a} vs seppoc {b}");
        };
        close("loss", rec["loss"].as_f64().unwrap(), rec["native_loss"].as_f64().unwrap());
        let native = rec["native_leaf_means"].as_object().expect("leaf means");
        assert!(!native.is_empty());
        for (leaf, v) in native {
            close(leaf, rec["leaf_means"][leaf].as_f64().expect("same leaves"), v.as_f64().unwrap());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
