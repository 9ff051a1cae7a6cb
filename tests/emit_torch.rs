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

/// Every shipped objective: the PyTorch target emits all of them.
fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives"))
        .expect("objectives/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "obj"))
        .collect();
    files.sort();
    files
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

/// Leaf and data values for one case. Leaves: `kind` 0 = errors a few 1e-3 apart (margins of order 1), 1 = widely
/// spread (saturated sigmoids), 2 = exact ties between every pair of models (policy error == reference error, gates
/// at their tie values), 3 = exact zeros (every error and distance 0). Data values are drawn in their ranges (a
/// label 1 or 0.5 for pairs, 1 or 0 for `data labelled`; progress and num_timesteps one value). Values are
/// f32-exact: `seppoc loss` gives both backends every value rounded to f32.
fn values(obj: &seppoc::ir::Objective, batch: usize, kind: u32, rng: &mut ChaCha8Rng) -> Value {
    use seppoc::ir::{Datum, TimeQty};
    let base: Vec<f64> = (0..batch).map(|_| rng.gen_range(0.05..0.5)).collect();
    let mut map = serde_json::Map::new();
    for input in &obj.inputs {
        let v: Vec<f64> = base
            .iter()
            .map(|b| match kind {
                0 => b + rng.gen_range(-3e-3..3e-3),
                1 => rng.gen_range(0.01..1.0),
                2 => *b,
                _ => 0.0,
            } as f32 as f64)
            .collect();
        map.insert(input.name(), json!(v));
    }
    let labelled = obj.data == seppoc::check::DataKind::Labelled;
    for datum in &obj.datums {
        let draw = |rng: &mut ChaCha8Rng, lo: f64, hi: f64| -> Vec<f64> {
            (0..batch).map(|_| rng.gen_range(lo..hi) as f32 as f64).collect()
        };
        let v = match datum {
            Datum::Time(TimeQty::Snr, _) => draw(rng, 0.01, 50.0),
            Datum::Time(..) => draw(rng, 0.02, 1.0),
            Datum::Progress => vec![rng.gen_range(0.0..1.0f32) as f64],
            Datum::Timesteps => vec![1000.0],
            Datum::Label if labelled => (0..batch).map(|_| f64::from(u8::from(rng.gen_bool(0.5)))).collect(),
            Datum::Label => (0..batch).map(|_| if rng.gen_bool(0.7) { 1.0 } else { 0.5 }).collect(),
            Datum::Weight => draw(rng, 0.1, 2.0),
            Datum::Reward(_) => draw(rng, -3.0, 3.0),
        };
        map.insert(datum.name(), json!(v));
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

/// Test group A: the emitted module equals the oracle of `seppoc loss` for every shipped objective and every
/// construct: loss, per-sample losses, logs and the gradient of every leaf, on random values, at exact ties and
/// at exact zeros (where MaPO's unselected `a / expm1(a)` is 0/0: gradients must stay finite, as the oracle's);
/// and, split over two simulated processes with the `reduce` hook, the same global loss, logs and gradient.
#[test]
fn emitted_modules_equal_the_f64_oracle() {
    let Some(py) = python::python_with_torch("emitted_modules_equal_the_f64_oracle") else { return };
    let dir = std::env::temp_dir().join(format!("seppoc-emit-eq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    // Grouped (online) objectives draw from a stream of their own, so the other objectives' values do not depend
    // on which grouped files exist.
    let mut group_rng = ChaCha8Rng::seed_from_u64(18);
    let (mut cases, mut oracles, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    // Every shipped objective at its defaults, and two with `--set` at emit time and `params=` at call time.
    let mut jobs: Vec<(PathBuf, Vec<&str>, Option<Value>)> = shipped().into_iter().map(|p| (p, vec![], None)).collect();
    let n_shipped = jobs.len();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    jobs.push((root.join("objectives/robust.obj"), vec!["eps=0.25", "beta=300"], None));
    jobs.push((root.join("objectives/kto.obj"), vec![], Some(json!({"beta": 50.0, "lambda_u": 2.0}))));
    // Every data value, a second draw and `dist` (pairs), and `data labelled`'s image and fields.
    jobs.push((root.join("tests/emit/data_values.obj"), vec![], None));
    jobs.push((root.join("tests/emit/labelled.obj"), vec![], None));
    // Every math function (log, sqrt, tanh, expm1, pow) in one objective outside objectives/.
    jobs.push((root.join("tests/ui/check/log_function.obj"), vec![], None));
    for (j, (path, sets, params)) in jobs.iter().enumerate() {
        let module = dir.join(format!("m{j}.py"));
        std::fs::write(&module, emit(path, sets)).expect("writes module");
        let text = std::fs::read_to_string(path).expect("reads");
        let lowered = seppoc::ir::lower(&Objective::parse("x.obj", &text).expect("checks").checked);
        let names: Vec<String> = lowered.inputs.iter().map(|i| i.name()).collect();
        // Grouped objectives take two whole groups (one per simulated process); the others 7 samples.
        let batch = if lowered.group() > 1 { 2 * lowered.group() as usize } else { 7 };
        // Zeros make `log` infinite: only the shipped objectives (whose oracle is finite there) take them. A
        // grouped objective's terms at all-zero leaves are its advantages, whose sum over each group is 0: the loss
        // is 0 up to rounding that depends on the summation order, which no relative tolerance can compare.
        let kinds = if j < n_shipped && lowered.group() == 1 { 0..4 } else { 0..3 };
        for kind in kinds {
            let rng = if lowered.group() > 1 { &mut group_rng } else { &mut rng };
            let inputs = values(&lowered, batch, kind, rng);
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
            let label = format!("{} {sets:?} {params:?} case {kind}", path.display());
            assert!(out.status.success(), "{label}: seppoc loss: {}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            // Widely spread values give a per-step value to torch as B equal values (the oracle takes one).
            let mut given = inputs.clone();
            for d in lowered.datums.iter().filter(|d| d.per_step() && kind == 1) {
                given[d.name()] = json!(vec![inputs[d.name()][0].clone(); batch]);
            }
            // Random values, once in one process and once split over two with the `reduce` hook.
            let splits: &[bool] = if kind == 0 { &[false, true] } else { &[false] };
            for &split in splits {
                oracles.push((v["oracle_f64"].clone(), names.clone(), split));
                cases.push(json!({"module": module, "inputs": given, "params": params, "split": split}));
                labels.push(if split { format!("{label} (2 processes)") } else { label.clone() });
            }
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
    assert!(out.status.success(), "python/emit_check.py failed:\\n{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON from python");
    let results = got["results"].as_array().expect("results");
    assert_eq!(results.len(), oracles.len());
    for ((r, (oracle, names, split)), label) in results.iter().zip(&oracles).zip(&labels) {
        close(&format!("{label}: loss"), r["loss"].as_f64().unwrap(), oracle["loss"].as_f64().unwrap());
        close_list(&format!("{label}: per_sample"), &r["per_sample"], &oracle["per_sample"]);
        let logs = oracle["logs"].as_object().unwrap();
        assert_eq!(r["logs"].as_object().unwrap().len(), logs.len(), "{label}: logs");
        for (k, v) in logs {
            close(&format!("{label}: log {k}"), r["logs"][k].as_f64().unwrap(), v.as_f64().unwrap());
        }
        if *split {
            // The second process computes the same global loss and logs.
            close(
                &format!("{label}: loss of process 1"),
                r["loss_other"].as_f64().unwrap(),
                oracle["loss"].as_f64().unwrap(),
            );
            for (k, v) in logs {
                close(
                    &format!("{label}: log {k} of process 1"),
                    r["logs_other"][k].as_f64().unwrap(),
                    v.as_f64().unwrap(),
                );
            }
        }
        assert_eq!(r["logs_require_grad"], json!(false), "{label}: logs are detached");
        assert_eq!(r["grad"].as_object().map(|g| g.len()), Some(names.len()), "{label}: one gradient entry per leaf");
        for name in names {
            // The oracle lists policy leaves only; frozen leaves must get no gradient from autograd at all.
            let expect = oracle["grad"].get(name).cloned().unwrap_or(Value::Null);
            // A policy leaf read only under `stopgrad` or a gate is off the tape: autograd leaves it no gradient
            // where the oracle lists zeros.
            let zeros = expect.as_array().is_some_and(|g| g.iter().all(|v| v.as_f64() == Some(0.0)));
            if r["grad"][name].is_null() && zeros {
                continue;
            }
            close_list(&format!("{label}: grad {name}"), &r["grad"][name], &expect);
        }
    }
    eprintln!("{} cases over {} modules agree (torch {})", results.len(), jobs.len(), got["torch"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The module's INPUTS and PLAN (version 2) read in Python, for one objective.
fn plan_of(py: &Path, file: &str, dir: &Path) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let module = dir.join(format!("{}.py", file.replace('/', "_")));
    std::fs::write(&module, emit(&root.join(file), &[])).expect("writes module");
    let code = "import importlib.util, json, sys\nspec = importlib.util.spec_from_file_location('m', sys.argv[1])\n\
                m = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(m)\n\
                print(json.dumps({'INPUTS': m.INPUTS, 'GRAD_INPUTS': m.GRAD_INPUTS, 'PLAN': m.PLAN}))";
    let out = Command::new(py).args(["-c", code]).arg(&module).output().expect("runs python");
    assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// PLAN v2 says what seppoc's trainer does: views in its noise order (draw first), draws, ties and data fields,
/// `err`/`dist` leaves with their views, datums, passes with the predictions a `dist` needs.
#[test]
fn plan_v2_describes_views_leaves_and_datums() {
    let Some(py) = python::python_with_torch("plan_v2_describes_views_leaves_and_datums") else { return };
    let dir = std::env::temp_dir().join(format!("seppoc-emit-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let m = plan_of(&py, "tests/emit/data_values.obj", &dir);
    let plan = &m["PLAN"];
    assert_eq!(plan["version"], json!(2));
    assert_eq!(plan["global_loss"], json!(true));
    assert_eq!(
        (&plan["data"], &plan["ties"], &plan["noise"], &plan["draws"]),
        (&json!("pairs"), &json!("keep"), &json!("independent"), &json!(2))
    );
    assert_eq!(plan["fields"], json!(["label", "weight", "reward_0", "reward_1"]));
    assert_eq!(
        plan["views"],
        json!([{"name": "winner", "images": "winner", "draw": 0}, {"name": "loser_d1", "images": "loser", "draw": 1}])
    );
    assert_eq!(
        plan["leaves"]["e_policy_loser_d1"],
        json!({"model": "policy", "view": "loser_d1", "images": "loser", "draw": 1, "grad": true, "quantity": "err", "against": null})
    );
    assert_eq!(
        plan["leaves"]["dist_policy_ref_winner"],
        json!({"model": "policy", "view": "winner", "images": "winner", "draw": 0, "grad": true, "quantity": "dist", "against": "ref"})
    );
    assert_eq!(
        plan["datums"]["snr_loser_d1"],
        json!({"kind": "snr", "view": "loser_d1", "images": "loser", "per_step": false})
    );
    assert_eq!(plan["datums"]["progress"], json!({"kind": "progress", "view": null, "images": null, "per_step": true}));
    assert_eq!(
        plan["datums"]["reward_loser"],
        json!({"kind": "reward", "view": null, "images": "loser", "per_step": false})
    );
    assert_eq!(
        plan["passes"],
        json!([
            {"model": "policy", "taped": true, "views": ["winner", "loser_d1"], "images": ["winner", "loser"], "keep_predictions": true},
            {"model": "ref", "taped": false, "views": ["winner", "loser_d1"], "images": ["winner", "loser"], "keep_predictions": true},
        ])
    );
    // INPUTS: the leaves in first-use order, then the datums.
    let inputs: Vec<String> = serde_json::from_value(m["INPUTS"].clone()).unwrap();
    let leaves: Vec<&String> = plan["leaves"].as_object().unwrap().keys().collect();
    let n = leaves.len();
    assert!(inputs[..n].iter().all(|i| plan["leaves"].get(i).is_some()), "{inputs:?}");
    assert!(inputs[n..].iter().all(|i| plan["datums"].get(i).is_some()), "{inputs:?}");
    assert_eq!(inputs.len(), n + plan["datums"].as_object().unwrap().len());

    // Four draws of the winner and the reference samples of draw 0, noised draw by draw.
    let plan = plan_of(&py, "objectives/seppo_draws.obj", &dir)["PLAN"].clone();
    let views: Vec<&str> = plan["views"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(views, ["winner", "sample0", "winner_d1", "winner_d2", "winner_d3"]);
    assert_eq!((&plan["draws"], &plan["ties"], &plan["fields"]), (&json!(4), &json!("drop"), &json!([])));
    assert_eq!(plan["passes"][0]["keep_predictions"], json!(false));

    let plan = plan_of(&py, "objectives/kto_unpaired.obj", &dir)["PLAN"].clone();
    assert_eq!(
        (&plan["data"], &plan["ties"], &plan["fields"]),
        (&json!("labelled"), &json!("drop"), &json!(["label"]))
    );
    assert_eq!(plan["leaves"]["e_policy_image"]["images"], json!("image"));

    // Online: K rows per prompt, the generated images' reward scored by the run's reward model (no data field).
    let m = plan_of(&py, "objectives/diffusion_nft.obj", &dir);
    let plan = &m["PLAN"];
    assert_eq!(
        (&plan["group"], &plan["online_rewards"], &plan["fields"]),
        (&json!(8), &json!(["reward_sample0"]), &json!([]))
    );
    assert_eq!(plan["samples"][0]["group"], json!(8));
    assert_eq!(
        plan["datums"]["reward_sample0"],
        json!({"kind": "reward", "view": null, "images": "sample0", "per_step": false})
    );
    assert!(m["INPUTS"].as_array().unwrap().contains(&json!("reward_sample0")));
    // A file without groups or online rewards has neither key (PLAN v2 as before).
    let plan = plan_of(&py, "objectives/seppo.obj", &dir)["PLAN"].clone();
    assert!(
        plan.get("group").is_none()
            && plan.get("online_rewards").is_none()
            && plan["samples"][0].get("group").is_none()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seppoc export-torch` records every datum the objective reads with the native first step: `datum.NAME` in
/// float64, one value per prompt (`snr_winner`, from the step's `t.winner` and the exported schedule) or one
/// per step (`num_timesteps`), and their names in the metadata.
#[test]
fn export_torch_records_the_first_steps_datums() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("seppoc-emit-export-{}", std::process::id()));
    let out = Command::new(SEPPOC)
        .args(["export-torch", "objectives/dpo_elbo.obj", "--batch", "4", "--data-size", "16", "--out"])
        .arg(&dir)
        .current_dir(root)
        .output()
        .expect("runs seppoc");
    assert!(out.status.success(), "export-torch: {}", String::from_utf8_lossy(&out.stderr));
    let data = std::fs::read(dir.join("data.safetensors")).expect("data.safetensors");
    let (_, md) = ::safetensors::SafeTensors::read_metadata(&data).expect("header");
    let md = md.metadata().clone().expect("metadata");
    let ac: Vec<f64> = serde_json::from_str(&md["alphas_cumprod"]).expect("alphas_cumprod");
    let bytes = std::fs::read(dir.join("first_step.safetensors")).expect("first_step.safetensors");
    let st = ::safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let f64s = |name: &str| -> Vec<f64> {
        let t = st.tensor(name).unwrap_or_else(|_| panic!("no tensor {name}"));
        assert_eq!(t.dtype(), ::safetensors::Dtype::F64, "{name}");
        t.data().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let t: Vec<i64> = st
        .tensor("t.winner")
        .expect("t.winner")
        .data()
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let snr = f64s("datum.snr_winner");
    assert_eq!(snr.len(), 4);
    for (s, &t) in snr.iter().zip(&t) {
        let ab = ac[t as usize];
        close("snr_winner", *s, ab / (1.0 - ab));
    }
    assert_eq!(f64s("datum.num_timesteps"), vec![ac.len() as f64]);
    let (_, md) = ::safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let mut names: Vec<String> = serde_json::from_str(&md.metadata().clone().expect("metadata")["datums"]).unwrap();
    names.sort();
    assert_eq!(names, ["num_timesteps", "snr_winner"]);
    let _ = std::fs::remove_dir_all(&dir);
}
