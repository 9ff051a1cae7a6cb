//! `seppoc compare` end to end at tiny size: two objectives × two seeds produce a complete table (JSON and
//! Markdown) and both plots; a second invocation reuses the finished runs; bad input fails before training.

mod cli_support;

use cli_support::{seppoc, text};

use serde_json::Value;
use std::path::{Path, PathBuf};

fn tiny_base(dir: &Path) -> String {
    let out = dir.join("base");
    let o = seppoc(&[
        "pretrain",
        "--size",
        "tiny",
        "--steps",
        "10",
        "--batch",
        "8",
        "--seed",
        "3",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    out.join("model.safetensors").to_string_lossy().into_owned()
}

fn compare_args<'a>(model: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "compare",
        "objectives/sft.obj",
        "objectives/seppo.obj",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--batch",
        "2",
        "--data-size",
        "8",
        "--eval-every",
        "1",
        "--curve-prompts",
        "2",
        "--eval-prompts",
        "3",
        "--jobs",
        "2",
        "--model",
        model,
        "--out",
        out,
    ]
}

#[test]
fn compare_produces_a_complete_table_and_plots() {
    let dir = temp("full");
    let model = tiny_base(&dir);
    let out = dir.join("cmp");
    let out_s = out.to_string_lossy().into_owned();
    let o = seppoc(&compare_args(&model, &out_s));
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));

    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["objective"], "sft");
    assert_eq!(rows[1]["objective"], "seppo");
    for row in rows {
        assert_eq!(row["seeds"], serde_json::json!([0, 1]));
        for key in ["score", "quality", "colour_acc", "shape_acc", "position_acc", "all_correct", "win_rate"] {
            let m = row[key]["mean"].as_f64().unwrap_or_else(|| panic!("{key} in {row}"));
            assert!((0.0..=1.0).contains(&m), "{key} = {m}");
            assert!(row[key]["sd"].as_f64().unwrap() >= 0.0);
        }
    }
    assert!(rows[0]["flip_rate_end"].is_null(), "sft has no gate");
    let flip = rows[1]["flip_rate_end"]["mean"].as_f64().expect("seppo logs flip_rate");
    assert!((0.0..=1.0).contains(&flip));
    assert_eq!(report["settings"]["eval_prompts"], 3);
    assert!(report["failed"].as_array().unwrap().is_empty());

    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    for needle in ["| base model |", "| sft | 2 |", "| seppo | 2 |", "judge_vs_step.png", "flip_rate.png"] {
        assert!(md.contains(needle), "`{needle}` missing from compare.md:\n{md}");
    }
    for png in ["judge_vs_step.png", "flip_rate.png"] {
        let img = image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(img.width() >= 400 && img.height() >= 300);
    }
    let curve = std::fs::read_to_string(out.join("seppo/seed1/curve.jsonl")).unwrap();
    let steps: Vec<u64> =
        curve.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 1, 2]);

    // A second invocation finds every job finished with the same settings and reuses it.
    let again = seppoc(&compare_args(&model, &out_s));
    assert!(again.status.success(), "{}", text(&again.stderr));
    let report2: Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(report2["rows"], report["rows"]);

    // `--report-only` with other settings refuses (rather than overwriting the table with a
    // base-only one) and leaves the comparison as it was.
    let mut other = compare_args(&model, &out_s);
    other.extend(["--lr", "3e-4", "--report-only"]);
    let o = seppoc(&other);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("other settings"), "{}", text(&o.stderr));
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(kept["rows"], report["rows"]);
    let mut same = compare_args(&model, &out_s);
    same.push("--report-only");
    let o = seppoc(&same);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rebuilt: Value = serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(rebuilt["rows"], report["rows"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_rejects_bad_input_before_training() {
    let dir = temp("bad");
    let out = dir.join("cmp").to_string_lossy().into_owned();
    let twice = seppoc(&["compare", "objectives/sft.obj", "objectives/sft.obj", "--out", &out]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(text(&twice.stderr).contains("both define objective `sft`"), "{}", text(&twice.stderr));

    let unknown = seppoc(&["compare", "objectives/sft.obj", "--set", "nope=1", "--out", &out]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("`nope`"), "{}", text(&unknown.stderr));

    // Without the `cuda` feature, `--device cuda` is refused before any job starts.
    if !cfg!(feature = "cuda") {
        let cuda = seppoc(&["compare", "objectives/sft.obj", "--device", "cuda", "--out", &out]);
        assert_eq!(cuda.status.code(), Some(2));
        assert!(text(&cuda.stderr).contains("built without the `cuda` feature"), "{}", text(&cuda.stderr));
        assert!(!Path::new(&out).exists(), "nothing was written for --device cuda");
    }

    let bad = dir.join("bad.obj");
    std::fs::write(&bad, "objective bad\nloss mean(err(policy, winner) +)\n").unwrap();
    let o = seppoc(&["compare", &bad.to_string_lossy(), "--out", &out]);
    assert_eq!(o.status.code(), Some(1), "diagnostics exit with 1: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains("bad.obj"), "{}", text(&o.stderr));
    assert!(!Path::new(&out).join("base").exists(), "nothing ran");
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp(name: &str) -> PathBuf {
    cli_support::scratch("compare", name)
}
