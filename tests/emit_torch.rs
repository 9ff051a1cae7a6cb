//! `seppoc emit --target torch`: every shipped objective's module is snapshotted, and (test group A) equals
//! `seppoc loss`'s f64 oracle on random leaf values — loss, per-sample losses, logs and the autograd gradient of
//! every leaf (none for frozen leaves) to 1e-9 relative, in float64. Needs a Python with torch
//! (`tests/support/python.rs`).

#[path = "support/python.rs"]
mod python;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seppoc::frontend::Objective;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SEPPOC: &str = env!("CARGO_BIN_EXE_seppoc");

/// Whether `seppoc emit --target torch` accepts the objective (no E0315 construct).
fn emittable(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).expect("reads");
    let obj = Objective::parse("x.obj", &text).expect("checks");
    seppoc::emit::unsupported(&seppoc::ir::lower(&obj.checked)).is_empty()
}

/// The shipped objectives the PyTorch target can train.
fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives"))
        .expect("objectives/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "obj") && emittable(p))
        .collect();
    files.sort();
    files
}

#[test]
fn emit_refuses_what_the_torch_trainer_cannot_feed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, construct) in [
        ("sft_minsnr", "`snr_winner`"),
        ("sft_kl", "`dist(...)`"),
        ("seppo_draws", "a second `(t, eps)` draw"),
        ("dpo_label", "`label`"),
        ("kto_unpaired", "`image` (unpaired labelled data)"),
        ("dpo_elbo", "`num_timesteps`"),
    ] {
        let out = Command::new(SEPPOC)
            .args(["emit", "--target", "torch"])
            .arg(root.join(format!("objectives/{file}.obj")))
            .output()
            .expect("runs seppoc");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains("E0315") && err.contains(construct) && err.contains(&format!("{file}.obj:")), "{err}");
        assert!(out.stdout.is_empty(), "{file}: nothing is emitted");
    }
}

fn emit(path: &Path, sets: &[&str]) -> String {
    let mut cmd = Command::new(SEPPOC);
    cmd.args(["emit", "--target", "torch"]).arg(path);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("runs seppoc");
    assert!(out.status.success(), "emit {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn emitted_modules_snapshot() {
    insta::glob!("../objectives", "*.obj", |path| {
        if !emittable(path) {
            return;
        }
        let text = std::fs::read_to_string(path).expect("reads");
        let obj = Objective::parse("x.obj", &text).expect("checks");
        let bound = seppoc::ir::lower(&obj.checked).bind_defaults();
        let module = seppoc::emit::torch::emit(&bound, &obj.canonical_text());
        assert_eq!(module, emit(path, &[]), "the CLI prints the library's module");
        insta::assert_snapshot!(module);
    });
}

#[test]
fn emit_refuses_to_overwrite_a_foreign_file_and_replaces_its_own() {
    let dir = std::env::temp_dir().join(format!("seppoc-emit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("loss.py");
    std::fs::write(&out, "print('mine')\n").expect("writes");
    let run = |extra: &[&str]| {
        Command::new(SEPPOC)
            .args(["emit", "--target", "torch", "objectives/sft.obj", "-o"])
            .arg(&out)
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("runs")
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "print('mine')\n");
    assert!(run(&["--force"]).status.success());
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(first.starts_with(seppoc::emit::GENERATED_MARKER));
    assert!(run(&[]).status.success(), "its own output is replaced without --force");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), first, "deterministic");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Leaf values for one case: `kind` 0 = errors a few 1e-3 apart (margins of order 1), 1 = widely spread (saturated
/// sigmoids), 2 = exact ties between every pair of models (gates at their tie values). Values are f32-exact:
/// `seppoc loss` gives both backends every leaf rounded to f32.
fn leaves(names: &[String], batch: usize, kind: u32, rng: &mut ChaCha8Rng) -> Value {
    let base: Vec<f64> = (0..batch).map(|_| rng.gen_range(0.05..0.5)).collect();
    let mut map = serde_json::Map::new();
    for name in names {
        let v: Vec<f64> = base
            .iter()
            .map(|b| match kind {
                0 => b + rng.gen_range(-3e-3..3e-3),
                1 => rng.gen_range(0.01..1.0),
                _ => *b,
            } as f32 as f64)
            .collect();
        map.insert(name.clone(), json!(v));
    }
    Value::Object(map)
}

fn close(what: &str, a: f64, b: f64) {
    let tol = 1e-9 * a.abs().max(b.abs()).max(1e-300);
    assert!((a - b).abs() <= tol, "{what}: torch {a:e} vs oracle {b:e} (|diff| {:e})", (a - b).abs());
}

fn close_list(what: &str, a: &Value, b: &Value) {
    match (a, b) {
        (Value::Null, Value::Null) => {}
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{what}: lengths");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                close(&format!("{what}[{i}]"), p.as_f64().expect("number"), q.as_f64().expect("number"));
            }
        }
        _ => panic!("{what}: torch {a} vs oracle {b}"),
    }
}

/// Test group A: the emitted module equals the oracle of `seppoc loss` for every shipped objective.
#[test]
fn emitted_modules_equal_the_f64_oracle() {
    let Some(py) = python::python_with_torch("emitted_modules_equal_the_f64_oracle") else { return };
    let dir = std::env::temp_dir().join(format!("seppoc-emit-eq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (mut cases, mut oracles, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    // Every shipped objective at its defaults, and two with `--set` at emit time and `params=` at call time.
    let mut jobs: Vec<(PathBuf, Vec<&str>, Option<Value>)> = shipped().into_iter().map(|p| (p, vec![], None)).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    jobs.push((root.join("objectives/robust.obj"), vec!["eps=0.25", "beta=300"], None));
    jobs.push((root.join("objectives/kto.obj"), vec![], Some(json!({"beta": 50.0, "lambda_u": 2.0}))));
    // Every math function (log, sqrt, tanh, expm1, pow) in one objective outside objectives/.
    jobs.push((root.join("tests/ui/check/log_function.obj"), vec![], None));
    for (j, (path, sets, params)) in jobs.iter().enumerate() {
        let module = dir.join(format!("m{j}.py"));
        std::fs::write(&module, emit(path, sets)).expect("writes module");
        let text = std::fs::read_to_string(path).expect("reads");
        let lowered = seppoc::ir::lower(&Objective::parse("x.obj", &text).expect("checks").checked);
        let names: Vec<String> = lowered.inputs.iter().map(|i| i.name()).collect();
        for kind in 0..3 {
            let inputs = leaves(&names, 7, kind, &mut rng);
            let file = dir.join(format!("in{j}_{kind}.json"));
            std::fs::write(&file, json!({ "inputs": inputs }).to_string()).expect("writes inputs");
            let mut cmd = Command::new(SEPPOC);
            cmd.arg("loss").arg(path).arg("--inputs").arg(&file);
            let oracle_sets: Vec<String> = match params {
                Some(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                _ => sets.iter().map(|s| s.to_string()).collect(),
            };
            for s in &oracle_sets {
                cmd.args(["--set", s]);
            }
            let out = cmd.output().expect("runs seppoc loss");
            assert!(out.status.success(), "seppoc loss: {}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            oracles.push((v["oracle_f64"].clone(), names.clone()));
            cases.push(json!({"module": module, "inputs": inputs, "params": params}));
            labels.push(format!("{} {sets:?} {params:?} case {kind}", path.display()));
        }
    }
    let mut child = Command::new(&py)
        .arg(root.join("python/emit_check.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs python");
    let input = json!({ "cases": cases }).to_string();
    {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writes stdin");
    }
    let out = child.wait_with_output().expect("python finishes");
    assert!(out.status.success(), "python/emit_check.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON from python");
    let results = got["results"].as_array().expect("results");
    assert_eq!(results.len(), oracles.len());
    for ((r, (oracle, names)), label) in results.iter().zip(&oracles).zip(&labels) {
        close(&format!("{label}: loss"), r["loss"].as_f64().unwrap(), oracle["loss"].as_f64().unwrap());
        close_list(&format!("{label}: per_sample"), &r["per_sample"], &oracle["per_sample"]);
        let logs = oracle["logs"].as_object().unwrap();
        assert_eq!(r["logs"].as_object().unwrap().len(), logs.len(), "{label}: logs");
        for (k, v) in logs {
            close(&format!("{label}: log {k}"), r["logs"][k].as_f64().unwrap(), v.as_f64().unwrap());
        }
        assert_eq!(r["logs_require_grad"], json!(false), "{label}: logs are detached");
        for name in names {
            // The oracle lists policy leaves only; frozen leaves must get no gradient from autograd at all.
            let expect = oracle["grad"].get(name).cloned().unwrap_or(Value::Null);
            close_list(&format!("{label}: grad {name}"), &r["grad"][name], &expect);
        }
    }
    eprintln!("{} cases over {} modules agree (torch {})", results.len(), jobs.len(), got["torch"]);
    let _ = std::fs::remove_dir_all(&dir);
}
