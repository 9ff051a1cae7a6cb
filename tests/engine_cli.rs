//! End-to-end runs of the engine commands (`pretrain`, `sample`, `eval`) on a tiny model: files written,
//! seeded reproducibility, and exit code 2 with a clear message on bad input.

mod cli_support;

use cli_support::{seppoc_in, text};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The tiny pretraining run every test shares (relative `--out`, so the recorded command is path-independent).
const PRETRAIN: &[&str] =
    &["pretrain", "--out", "run", "--size", "tiny", "--steps", "5", "--batch", "4", "--seed", "7"];

/// Runs the shared tiny pretraining once and returns its output directory.
fn trained() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = scratch("trained");
        let out = seppoc_in(&root, PRETRAIN);
        assert_eq!(out.status.code(), Some(0), "pretrain failed: {}", text(&out.stderr));
        root.join("run")
    })
}

fn checkpoint() -> String {
    trained().join("model.safetensors").display().to_string()
}

#[test]
fn pretrain_writes_checkpoint_metrics_and_recipe() {
    let dir = trained();
    assert!(dir.join("model.safetensors").is_file());
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 5);
    for (i, rec) in lines.iter().enumerate() {
        assert_eq!(rec["step"], i + 1);
        for key in ["loss", "grad_norm", "lr", "elapsed_s"] {
            assert!(rec[key].as_f64().is_some_and(f64::is_finite), "{key} in {rec}");
        }
    }
    let recipe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("recipe.json")).expect("recipe.json")).expect("json");
    assert_eq!(recipe["seed"], 7);
    assert_eq!(recipe["steps"], 5);
    assert!(recipe["command"].as_str().is_some_and(|c| c.contains("--steps 5")), "{}", recipe["command"]);
    assert!(recipe["final_loss"].as_f64().is_some_and(f64::is_finite));
    assert!(recipe["wall_time_s"].as_f64().is_some());
}

#[test]
fn pretrain_with_the_same_seed_gives_identical_checkpoints() {
    let first = std::fs::read(trained().join("model.safetensors")).expect("first checkpoint");
    let root = scratch("again");
    let out = seppoc_in(&root, PRETRAIN);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let second = std::fs::read(root.join("run/model.safetensors")).expect("second checkpoint");
    assert!(first == second, "two runs with seed 7 gave different checkpoints");
}

#[test]
fn sample_writes_a_png_and_prints_scores() {
    let dir = scratch("sample");
    let ckpt = checkpoint();
    let args = [
        "sample",
        "--model",
        &ckpt,
        "--prompt",
        "a red circle on the left",
        "-n",
        "3",
        "--steps",
        "2",
        "--out",
        "s.png",
    ];
    let out = seppoc_in(&dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("score").count(), 4, "{stdout}");
    let png = image::open(dir.join("s.png")).expect("a PNG");
    // Three 64-pixel cells behind a column with the model's name (its folder's, wrapped at 18 characters), the
    // prompt written under them in lines of 10 characters ("a red", "circle on", "the left") of 9 pixels.
    let name = std::path::Path::new(&ckpt).parent().and_then(|d| d.file_name()).expect("a folder").len();
    let label_w = (name.min(18) * 6 - 1 + 2 * 2) as u32;
    assert_eq!((png.width(), png.height()), (label_w + 3 * 64 + 4 * 2, 64 + 2 + 3 * 9 + 2 * 2));
}

#[test]
fn eval_writes_report_json_with_every_field() {
    let dir = scratch("eval");
    let ckpt = checkpoint();
    let args = [
        "eval",
        "--model",
        &ckpt,
        "--eval-prompts",
        "4",
        "--eval-samples",
        "1",
        "--steps",
        "2",
        "--seed",
        "3",
        "--out",
        "ev",
    ];
    let out = seppoc_in(&dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("colour accuracy"), "{}", text(&out.stdout));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ev/report.json")).expect("report.json")).expect("json");
    assert_eq!(report["n_prompts"], 4);
    assert_eq!(report["prompts"], "heldout");
    let fields = [
        "n_images",
        "n_objects",
        "colour_acc",
        "shape_acc",
        "position_acc",
        "all_correct",
        "mean_faithfulness",
        "quality",
        "score",
    ];
    for key in fields {
        assert!(report["report"][key].is_number(), "report.{key} missing: {report}");
    }
    assert_eq!(report["per_prompt"].as_array().map(Vec::len), Some(4));
    assert!(dir.join("ev/grid.png").is_file());
    // grid.txt: each cell's prompt, in grid order (4 prompts: one row of 4 cells).
    let index = std::fs::read_to_string(dir.join("ev/grid.txt")).expect("grid.txt");
    let lines: Vec<&str> = index.lines().collect();
    assert_eq!(lines.len(), 5, "{index}");
    assert_eq!(lines[0], "row\tcol\tmodel\tprompt");
    for (k, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert_eq!((fields[0], fields[1]), ("0", &*k.to_string()), "{line}");
        assert!(!fields[3].is_empty(), "{line}");
    }
}

#[test]
fn eval_is_seeded() {
    let ckpt = checkpoint();
    let run = |name: &str| {
        let dir = scratch(name);
        let args = ["eval", "--model", &ckpt, "--n-prompts", "2", "--steps", "2", "--seed", "5", "--out", "ev"];
        let out = seppoc_in(&dir, &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        std::fs::read(dir.join("ev/grid.png")).expect("grid")
    };
    assert!(run("seeded-a") == run("seeded-b"));
}

#[test]
fn pretrain_web_degrade_is_stored_with_the_world_and_checked() {
    let dir = scratch("webdegrade");
    let args = ["pretrain", "--out", "run", "--size", "tiny", "--steps", "1", "--batch", "2", "--web-degrade"];
    let bad = seppoc_in(&dir, &[&args[..], &["1.5"]].concat());
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--web-degrade must be in [0, 1], found 1.5"), "{}", text(&bad.stderr));
    assert!(!dir.join("run").exists(), "a rejected flag must not create the output directory");
    let out = seppoc_in(&dir, &[&args[..], &["0"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, meta) = seppoc::model::load_checkpoint(&dir.join("run/model.safetensors"), &seppoc::device::cpu())
        .expect("checkpoint loads");
    let world: serde_json::Value = serde_json::from_str(&meta.world_config).expect("world config is JSON");
    assert_eq!(world["web"]["p_degrade"], 0.0, "{world}");
}

#[test]
fn unknown_prompt_word_exits_2_and_lists_the_vocabulary() {
    let dir = scratch("badword");
    let ckpt = checkpoint();
    let out = seppoc_in(&dir, &["sample", "--model", &ckpt, "--prompt", "a purple circle"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("`purple`") && err.contains("red, green, blue, yellow"), "{err}");
    assert!(!dir.join("samples.png").exists());
}

#[test]
fn missing_model_file_exits_2_naming_the_file() {
    let dir = scratch("missing");
    for cmd in ["sample", "eval"] {
        let mut args = vec![cmd, "--model", "no/such/model.safetensors"];
        if cmd == "sample" {
            args.extend(["--prompt", "a red circle"]);
        }
        let out = seppoc_in(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(text(&out.stderr).contains("no/such/model.safetensors"), "{}", text(&out.stderr));
    }
}

#[test]
fn corrupt_model_file_exits_2_naming_the_file() {
    let dir = scratch("corrupt");
    std::fs::write(dir.join("bad.safetensors"), b"not a checkpoint").expect("write");
    let out = seppoc_in(&dir, &["eval", "--model", "bad.safetensors", "--n-prompts", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad.safetensors") && !err.contains("panicked"), "{err}");
}

/// `seppoc sample` of the shipped (default) model in `dir` with `SEPPOC_ASSETS` set to `assets` (`None`: unset),
/// writing `out`.
fn sample_default(dir: &Path, assets: Option<&Path>, out: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_seppoc"));
    cmd.args(["sample", "--prompt", "a red circle", "-n", "2", "--steps", "2", "--seed", "5", "--out", out]);
    match assets {
        Some(a) => cmd.env("SEPPOC_ASSETS", a),
        None => cmd.env_remove("SEPPOC_ASSETS"),
    };
    cmd.current_dir(dir).output().expect("the binary runs")
}

#[test]
fn shipped_models_come_from_seppoc_assets_else_the_build_tree_never_the_working_directory() {
    let dir = scratch("assets");
    // A copy of the assets whose base model is the tiny test checkpoint: sampling the default model with
    // SEPPOC_ASSETS naming it must give exactly what `--model` on that checkpoint gives (the copy's own path, so
    // the grid's row label, the model's folder name `base`, is the same too).
    let copy = dir.join("copy");
    std::fs::create_dir_all(copy.join("base")).expect("mkdir");
    std::fs::copy(checkpoint(), copy.join("base/model.safetensors")).expect("copy");
    let out = sample_default(&dir, Some(&copy), "from_copy.png");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.matches("shipped assets:").count(), 1, "named once: {err}");
    assert!(err.contains(&format!("shipped assets: `{}` (from SEPPOC_ASSETS)", copy.display())), "{err}");
    let explicit = seppoc_in(
        &dir,
        &[
            "sample",
            "--model",
            &copy.join("base/model.safetensors").display().to_string(),
            "--prompt",
            "a red circle",
            "-n",
            "2",
            "--steps",
            "2",
            "--seed",
            "5",
        ],
    );
    assert_eq!(explicit.status.code(), Some(0), "{}", text(&explicit.stderr));
    assert!(!text(&explicit.stderr).contains("shipped assets"), "an explicit --model loads no shipped file");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("a PNG");
    assert!(read("from_copy.png") == read("samples.png"), "SEPPOC_ASSETS's base model was not the one sampled");

    // An `assets/` folder in the working directory is not looked at: a broken one there changes nothing.
    std::fs::create_dir_all(dir.join("assets/base")).expect("mkdir");
    std::fs::write(dir.join("assets/base/model.safetensors"), b"not a checkpoint").expect("write");
    let out = sample_default(&dir, None, "from_build.png");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("shipped assets: `{}` (the source tree", build.display())), "{err}");
    assert!(read("from_build.png") != read("samples.png"), "the build's base model differs from the tiny one");

    // A folder that does not exist, or lacks the base model, is an error naming it.
    let missing = dir.join("no_such_assets");
    let out = sample_default(&dir, Some(&missing), "x.png");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("SEPPOC_ASSETS=`{}` is not a folder", missing.display())), "{err}");
    let empty = dir.join("empty_assets");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = sample_default(&dir, Some(&empty), "x.png");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let want = format!("`base/model.safetensors` is missing from the assets folder `{}`", empty.display());
    assert!(err.contains(&want) && !err.contains("panicked"), "{err}");
    assert!(!dir.join("x.png").exists());
}

fn scratch(name: &str) -> PathBuf {
    cli_support::scratch("engine-cli", name)
}
