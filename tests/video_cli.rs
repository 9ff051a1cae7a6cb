//! End-to-end runs of `pretrain --world video`, `sample` and `eval` on a tiny clip model: seeded
//! reproducibility, the GIF and frame-strip outputs, the video report, and exit code 2 on bad input.

mod cli_support;

use cli_support::{seppoc_in, text};

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PRETRAIN: &[&str] =
    &["pretrain", "--world", "video", "--out", "run", "--size", "tiny", "--steps", "3", "--batch", "2", "--seed", "7"];

/// Runs the tiny video pretraining once (in `trained/run`).
fn trained() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = scratch("trained");
        let out = seppoc_in(&root, PRETRAIN);
        assert_eq!(out.status.code(), Some(0), "pretrain failed: {}", text(&out.stderr));
        root
    })
}

fn model() -> String {
    trained().join("run/model.safetensors").display().to_string()
}

#[test]
fn video_pretraining_is_seeded_and_records_its_world() {
    let again = scratch("again");
    let out = seppoc_in(&again, PRETRAIN);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bytes = |root: &Path| std::fs::read(root.join("run/model.safetensors")).expect("checkpoint");
    assert_eq!(bytes(trained()), bytes(&again), "same seed, different checkpoint");
    let recipe = std::fs::read_to_string(trained().join("run/recipe.json")).expect("recipe.json");
    let recipe: serde_json::Value = serde_json::from_str(&recipe).expect("json");
    assert_eq!(recipe["world"], "video");
    assert_eq!(recipe["model_config"]["frames"], 4);
    assert_eq!(recipe["world_config"]["frames"], 4);
    let (cfg, meta) = seppoc::model::read_checkpoint_meta(&trained().join("run/model.safetensors")).expect("header");
    assert_eq!((cfg.frames, meta.world.as_str()), (4, "video"));
}

#[test]
fn sample_writes_an_animated_gif_or_a_frame_strip() {
    let dir = scratch("sample");
    let m = model();
    let args = ["sample", "--model", &m, "--prompt", "a red circle moving right", "-n", "2", "--steps", "2"];
    let out = seppoc_in(&dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("smoothness"), "{}", text(&out.stdout));
    use image::AnimationDecoder;
    let gif = std::fs::File::open(dir.join("samples.gif")).expect("samples.gif");
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(gif)).expect("a GIF");
    assert_eq!(decoder.into_frames().collect_frames().expect("frames").len(), 4);
    let strip = [&args[..], &["--out", "strip.png", "--scale", "1"]].concat();
    let out = seppoc_in(&dir, &strip);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let png = image::open(dir.join("strip.png")).expect("a PNG");
    // Two rows (clips) of four 16-pixel frames with 2-pixel gaps, behind a column with each clip's model and prompt
    // ("run: a red circle" / "moving right", 17 characters wide, two 9-pixel lines); the last row's frames are
    // numbered under them (one line).
    let label_w = 17 * 6 - 1 + 2 * 2;
    assert_eq!((png.width(), png.height()), (label_w + 4 * 16 + 5 * 2, 2 * 9 + (16 + 2 + 9) + 3 * 2));
}

#[test]
fn eval_uses_the_video_judge() {
    let dir = scratch("eval");
    let m = model();
    let out = seppoc_in(&dir, &["eval", "--model", &m, "--n-prompts", "3", "--steps", "2", "--out", "ev"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("motion accuracy"), "{}", text(&out.stdout));
    let report = std::fs::read_to_string(dir.join("ev/report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&report).expect("json");
    assert_eq!((report["world"].as_str(), report["n_prompts"].as_u64()), (Some("video"), Some(3)));
    assert!(report["report"]["motion_acc"].is_number());
    assert!(dir.join("ev/grid.png").is_file() && dir.join("ev/grid.gif").is_file());
}

#[test]
fn bad_video_input_exits_2_with_a_message() {
    let dir = scratch("bad");
    let m = model();
    let cases: [(&[&str], &str); 4] = [
        (&["sample", "--model", &m, "--prompt", "a red circle on the left"], "a video prompt is"),
        (&["sample", "--model", &m, "--world", "image", "--prompt", "a red circle"], "holds a video model"),
        (&["pretrain", "--frames", "4", "--steps", "1"], "--frames needs --world video"),
        (&["pretrain", "--world", "video", "--frames", "1", "--steps", "1", "--out", "x"], "frames must be in 2..=16"),
    ];
    for (args, message) in cases {
        let out = seppoc_in(&dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(message), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn the_same_objective_files_train_a_video_model() {
    let dir = scratch("run");
    let m = model();
    for name in ["seppo", "dpo", "sft"] {
        let obj = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("objectives/{name}.obj"));
        let obj = obj.display().to_string();
        let args = [
            "run",
            &obj,
            "--model",
            &m,
            "--world",
            "video",
            "--steps",
            "2",
            "--batch",
            "2",
            "--data-size",
            "8",
            "--eval-prompts",
            "2",
            "--out",
            name,
        ];
        let out = seppoc_in(&dir, &args);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("motion accuracy"), "{name}: {}", text(&out.stdout));
        let trained = dir.join(name).join("model.safetensors");
        let (cfg, meta) = seppoc::model::read_checkpoint_meta(&trained).expect("trained checkpoint");
        assert_eq!((cfg.frames, meta.world.as_str()), (4, "video"), "{name}");
    }
    let trained = dir.join("seppo/model.safetensors").display().to_string();
    let out = seppoc_in(&dir, &["sample", "--model", &trained, "--prompt", "a blue square growing", "-n", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sft = Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives/sft.obj").display().to_string();
    let folder = dir.display().to_string();
    let out = seppoc_in(&dir, &["run", &sft, "--model", &m, "--data", &folder, "--steps", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is an imagefolder, which holds images"), "{}", text(&out.stderr));
}

/// `collect --world video` with the tiny clip model as base and pool (2-step Euler and DDIM).
fn collect_video(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let m = model();
    let (g1, g2) = (format!("a={m}:steps=2:cfg=1"), format!("b={m}:steps=2:cfg=3"));
    let args = [
        &["collect", "--world", "video", "--model", &m, "--generator", &g1, "--generator", &g2][..],
        &["--prompts", "24", "--out", out],
        extra,
    ]
    .concat();
    seppoc_in(dir, &args)
}

#[test]
fn collect_writes_video_preferences_that_run_trains_on() {
    let dir = scratch("collect");
    let out = collect_video(&dir, "prefs.parquet", &["--seed", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("48 comparisons over 24 prompts") && stdout.contains("ratio"), "{stdout}");
    // Every clip is stored as its four 16-pixel frames side by side, and reads back as a 12-channel clip that
    // is the written one up to 8-bit rounding.
    let path = dir.join("prefs.parquet");
    let data = seppoc::data::parquet::read_clips(&path, 16, 4, Default::default()).expect("reads back as clips");
    assert_eq!(data.rows, 48);
    let first = &data.pairs.items[0].winner;
    assert_eq!((first.channels, first.height, first.width), (12, 16, 16));
    let meta: serde_json::Value = serde_json::from_str(data.metadata.as_deref().expect("metadata")).expect("json");
    let judged = meta["collect"]["mean_judge_winners"].as_f64().expect("winners' judge score");
    assert!((0.0..=1.0).contains(&judged), "{meta}");
    let ratio = &meta["collect"]["error_ratio"];
    assert!(ratio["winners"].as_f64().is_some_and(|e| e > 0.0) && ratio["own_samples"].as_f64().is_some(), "{meta}");
    let frame = seppoc::data::parquet::read(&path, 16).expect("reads as images too").pairs.items[0].winner.clone();
    assert_eq!(frame.channels, 3, "an image reader sees a centre crop of the strip");
    // The same seed gives the same bytes.
    let again = collect_video(&dir, "again.parquet", &["--seed", "5"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(&path).expect("set"), std::fs::read(dir.join("again.parquet")).expect("again"));

    // The objective files train on it.
    let m = model();
    for name in ["sft", "dpo"] {
        let obj = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("objectives/{name}.obj")).display().to_string();
        let args = ["run", &obj, "--model", &m, "--data", "prefs.parquet", "--steps", "2", "--batch", "2"];
        let args = [&args[..], &["--eval-prompts", "2", "--out", name]].concat();
        let out = seppoc_in(&dir, &args);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(name).join("run.json")).expect("run.json"))
                .expect("json");
        assert!(rec.to_string().contains("prefs.parquet"), "{name} trained on the collected set: {rec}");
    }
}

#[test]
fn collect_video_refuses_bad_input_with_a_message() {
    let dir = scratch("collect-bad");
    let m = model();
    // An image generator in a video pool, an image base under --world video, an existing file without --force.
    let image = cli_support::tiny_base("video-cli-collect", 1);
    let g = format!("img={image}:steps=2");
    let video = ["collect", "--world", "video", "--prompts", "2"];
    let cases: [(Vec<&str>, &str); 3] = [
        ([&video[..], &["--model", &m, "--generator", &g, "--out", "x.parquet"]].concat(), "holds a image model"),
        ([&video[..], &["--model", &image, "--out", "y.parquet"]].concat(), "holds a image model but --world video"),
        (vec!["collect", "--out", "exists.parquet"], "exists; pass --force"),
    ];
    std::fs::write(dir.join("exists.parquet"), b"someone's data").expect("write");
    for (args, message) in cases {
        let out = seppoc_in(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(message), "{args:?}: {}", text(&out.stderr));
    }
    assert_eq!(std::fs::read(dir.join("exists.parquet")).expect("kept"), b"someone's data");
    assert!(!dir.join("x.parquet").exists() && !dir.join("y.parquet").exists());
}

#[test]
fn compare_runs_on_the_video_world_with_a_curve_and_a_motion_column() {
    let dir = scratch("compare");
    let m = model();
    let objectives = Path::new(env!("CARGO_MANIFEST_DIR")).join("objectives");
    let (sft, seppo) = (objectives.join("sft.obj"), objectives.join("seppo.obj"));
    let (sft, seppo) = (sft.display().to_string(), seppo.display().to_string());
    let args = [
        "compare",
        &sft,
        &seppo,
        "--world",
        "video",
        "--model",
        &m,
        "--seeds",
        "1",
        "--steps",
        "2",
        "--batch",
        "2",
        "--data-size",
        "8",
        "--eval-prompts",
        "3",
        "--eval-samples",
        "2",
        "--eval-every",
        "1",
        "--curve-prompts",
        "2",
        "--out",
        "cmp",
    ];
    let out = seppoc_in(&dir, &args);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let table = std::fs::read_to_string(dir.join("cmp/compare.md")).expect("compare.md");
    assert!(table.contains("| motion accuracy |") && !table.contains("| position accuracy |"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cmp/compare.json")).expect("json")).expect("json");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(2));
    assert!(json["rows"][0]["motion_acc"]["mean"].is_number() && json["rows"][0].get("position_acc").is_none());
    // The final evaluation judged 3 prompts × 2 samples; the curve has steps 0, 1 and 2, judged by the video judge.
    let report = std::fs::read_to_string(dir.join("cmp/sft/seed0/final/report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&report).expect("json");
    assert_eq!((report["n_prompts"].as_u64(), report["samples"].as_u64()), (Some(3), Some(2)));
    assert_eq!(report["per_prompt"].as_array().map(Vec::len), Some(6));
    let curve = std::fs::read_to_string(dir.join("cmp/seppo/seed0/curve.jsonl")).expect("curve.jsonl");
    let lines: Vec<serde_json::Value> = curve.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.iter().map(|l| l["step"].as_u64()).collect::<Vec<_>>(), [Some(0), Some(1), Some(2)]);
    assert!(lines.iter().all(|l| l["motion_acc"].is_number() && l["score"].is_number()));
}

fn scratch(name: &str) -> PathBuf {
    cli_support::scratch("video-cli", name)
}
