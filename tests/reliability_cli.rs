//! What a new user meets when interrupting, repeating and misdirecting commands: signals stop at a safe point
//! and say how to resume, a repeated command resumes, outputs are never mixed or silently overwritten, nothing
//! is written under `assets/` by default, errors name the file in plain words, and pipes never panic.

mod cli_support;

use cli_support::{scratch, seppoc, seppoc_in, text, tiny_base};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One tiny pretrained base shared by every test of this file.
fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| tiny_base("rel", 3))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `run FILE` on the tiny base: batch 2, no final judging.
fn run_args(file: &str, out: &Path, steps: &str) -> Vec<String> {
    let args = ["run", file, "--model", base(), "--batch", "2", "--data-size", "8", "--eval-prompts", "0"];
    let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    v.extend(["--steps".into(), steps.into(), "--out".into(), s(out)]);
    v
}

fn run(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    seppoc(&args)
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_seppoc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts")
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|t| t.lines().count()).unwrap_or(0)
}

/// Waits until `file` has at least `n` lines (or a minute has passed).
fn wait_lines(file: &Path, n: usize) {
    let started = Instant::now();
    while lines(file) < n && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(ok.success());
}

fn finish(child: Child) -> (Option<i32>, String, String) {
    let o = child.wait_with_output().expect("reaped");
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// A SePPO run of a million steps in a fresh scratch folder, once it has written `lines` metrics lines.
fn endless_run(name: &str, lines: usize) -> (PathBuf, PathBuf, Child) {
    let dir = scratch("rel", name);
    let out = dir.join("r");
    let child = spawn(&run_args("objectives/seppo.obj", &out, "1000000"));
    wait_lines(&out.join("metrics.jsonl"), lines);
    (dir, out, child)
}

#[test]
fn sigterm_saves_state_prints_the_resume_command_and_the_resume_works() {
    let (dir, out, child) = endless_run("sigterm", 3);
    sigterm(&child);
    let (code, _, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("Resume with:"), "{stderr}");
    let resume = stderr.lines().find(|l| l.trim_start().starts_with("seppoc run --resume")).expect("a resume line");
    assert!(resume.contains(&s(&out)) && resume.contains("--steps 1000000"), "{resume}");
    assert!(out.join("state/state.json").exists() && out.join("checkpoint.safetensors").exists());
    assert!(!out.join(".lock").exists(), "the lock is released");
    let saved = lines(&out.join("metrics.jsonl"));
    // The printed command resumes (with fewer steps here, so that it ends).
    let more = (saved + 2).to_string();
    let o = seppoc(&["run", "--resume", &s(&out), "--steps", &more]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("resumed at step {saved}")), "{}", text(&o.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_finished_run_keeps_its_state_and_resumes_without_the_file() {
    let dir = scratch("rel", "finished");
    let (short, straight) = (dir.join("short"), dir.join("straight"));
    assert!(run(&run_args("objectives/dpo.obj", &short, "2")).status.success());
    assert!(run(&run_args("objectives/dpo.obj", &straight, "4")).status.success());
    // No FILE: the objective comes from DIR/objective.obj, the parameters from DIR/run.json.
    let o = seppoc(&["run", "--resume", &s(&short), "--steps", "4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let read = |p: &Path| std::fs::read_to_string(p.join("metrics.jsonl")).expect("metrics");
    assert_eq!(read(&short), read(&straight), "2 + 2 steps equal 4 straight");
    // With FILE, it must be the same objective.
    let o = seppoc(&["run", "objectives/sft.obj", "--resume", &s(&short), "--steps", "6"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("different objective"), "{}", text(&o.stderr));
    // A run that stopped before saving anything says so plainly, without internal paths.
    std::fs::remove_dir_all(short.join("state")).expect("rm state");
    let o = seppoc(&["run", "--resume", &s(&short), "--steps", "6"]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("before it saved any training state") && !err.contains("state.old"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_runs_output_directory_is_refused_and_the_same_command_resumes() {
    let dir = scratch("rel", "foreign");
    let out = dir.join("r");
    assert!(run(&run_args("objectives/sft.obj", &out, "2")).status.success());
    let before = std::fs::read(out.join("model.safetensors")).expect("model");
    for (file, steps) in [("objectives/dpo.obj", "2"), ("objectives/sft.obj", "2")] {
        let mut args = run_args(file, &out, steps);
        if file.ends_with("sft.obj") {
            args.extend(["--lr".into(), "1e-4".into()]); // same objective, other settings
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{file}");
        assert!(text(&o.stderr).contains("holds another run"), "{}", text(&o.stderr));
    }
    assert_eq!(std::fs::read(out.join("model.safetensors")).expect("model"), before, "nothing was touched");
    let o = run(&run_args("objectives/sft.obj", &out, "3"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("resumed at step 2"), "{}", text(&o.stdout));
    // A folder with run outputs but no run.json is not written into either.
    let stray = dir.join("stray");
    std::fs::create_dir_all(&stray).expect("mkdir");
    std::fs::write(stray.join("metrics.jsonl"), "{}\n").expect("write");
    let o = run(&run_args("objectives/sft.obj", &stray, "2"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_writer_is_refused_naming_the_holder() {
    let (dir, out, child) = endless_run("lock", 2);
    let o = run(&run_args("objectives/seppo.obj", &out, "1000000"));
    sigterm(&child);
    let _ = finish(child);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("in use by another seppoc process") && err.contains("pid"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn progress_lines_without_a_terminal() {
    let dir = scratch("rel", "progress");
    let args = run_args("objectives/sft.obj", &dir.join("r"), "3");
    let o = Command::new(env!("CARGO_BIN_EXE_seppoc"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SEPPOC_PROGRESS_SECS", "0")
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    for want in ["sft step 1/3", "sft step 3/3", "loss ", "steps/s", "ETA"] {
        assert!(err.contains(want), "missing `{want}` in {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pretrain_without_out_writes_under_runs_not_assets() {
    let dir = scratch("rel", "pretrain-default");
    let o = seppoc_in(&dir, &["pretrain", "--size", "tiny", "--steps", "2", "--batch", "2", "--seed", "4"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(dir.join("runs/pretrain-image-seed4/model.safetensors").exists());
    assert!(!dir.join("assets").exists(), "nothing under assets/ unless named");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_pipe_is_not_a_panic() {
    let mut args = vec!["fmt".to_string()];
    for _ in 0..60 {
        args.push("objectives/seppo.obj".into()); // well over a pipe buffer of output
    }
    let mut child = spawn(&args);
    let mut first = [0u8; 16];
    child.stdout.as_mut().expect("stdout").read_exact(&mut first).expect("some output");
    drop(child.stdout.take()); // what `| head -c 16` does
    let (code, _, stderr) = finish(child);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn checkpoint_errors_name_the_file_in_plain_words() {
    let dir = scratch("rel", "ckpt");
    let out = dir.join("r");
    assert!(run(&run_args("objectives/sft.obj", &out, "1")).status.success());
    let good = std::fs::read(out.join("model.safetensors")).expect("model");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.safetensors", Vec::new(), "truncated"),
        ("half.safetensors", good[..good.len() / 2].to_vec(), "truncated"),
        ("header.safetensors", good[..200].to_vec(), "truncated"),
        ("text.safetensors", b"hello, this is not a model at all".repeat(10), "not a seppoc model checkpoint"),
    ];
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    for (name, bytes, want) in cases {
        std::fs::write(dir.join(name), bytes).expect("write");
        files.push((dir.join(name), want));
    }
    files.push((out.join("state/adam_m.safetensors"), "not a seppoc model checkpoint"));
    for (path, want) in files {
        let o = seppoc(&["eval", "--model", &s(&path), "--out", &s(&dir.join("e"))]);
        assert_eq!(o.status.code(), Some(2), "{}", path.display());
        let err = text(&o.stderr);
        assert!(err.contains(want) && err.contains(&s(&path)), "{}: {err}", path.display());
        for jargon in ["MetadataIncompleteBuffer", "HeaderTooLarge", "InvalidHeader", "EOF"] {
            assert!(!err.contains(jargon), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_run_settings_are_refused_before_anything_is_written() {
    let dir = scratch("rel", "settings");
    for (flag, value) in [("--lr", "nan"), ("--lr", "0"), ("--lr", "inf"), ("--max-grad-norm", "nan"), ("--ema", "1.5")]
    {
        let out = dir.join(flag.trim_start_matches('-'));
        let mut args = run_args("objectives/sft.obj", &out, "2");
        args.extend([flag.to_string(), value.to_string()]);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(text(&o.stderr).contains(flag), "{flag} {value}: {}", text(&o.stderr));
        assert!(!out.exists(), "{flag} {value}: nothing written");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_save_leaves_no_temporary_files() {
    let dir = scratch("rel", "full");
    let out = dir.join("r");
    // A file-size limit makes every write past 16 KiB fail as a full disk would (SIGXFSZ ignored).
    let args = run_args("objectives/sft.obj", &out, "2").join(" ");
    let bin = env!("CARGO_BIN_EXE_seppoc");
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f 32; exec {bin} {args}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("sh runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let mut left = Vec::new();
    for entry in walk(&out) {
        if entry.to_string_lossy().contains(".tmp") {
            left.push(entry);
        }
    }
    assert!(left.is_empty(), "temporary files left: {left:?}; {}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all.extend(walk(&p));
        }
        all.push(p);
    }
    all
}

#[test]
fn eval_and_sample_fail_on_an_unwritable_output_before_sampling() {
    let dir = scratch("rel", "unwritable");
    std::fs::write(dir.join("file"), "x").expect("write");
    let blocked = s(&dir.join("file/sub"));
    let eval = seppoc(&["eval", "--model", base(), "--out", &blocked]);
    let png = format!("{blocked}/x.png");
    let sample = seppoc(&["sample", "--model", base(), "--prompt", "a red circle", "--out", &png]);
    for o in [eval, sample] {
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o.stdout).is_empty(), "nothing computed first: {}", text(&o.stdout));
        assert!(text(&o.stderr).contains(&blocked), "{}", text(&o.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fmt_write_rewrites_in_place_and_check_names_it() {
    let dir = scratch("rel", "fmt");
    let file = dir.join("x.obj");
    let canonical = std::fs::read_to_string("objectives/seppo.obj").expect("seppo");
    std::fs::write(&file, canonical.replace(" = ", "   =   ")).expect("write");
    let o = seppoc(&["fmt", "--check", &s(&file)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("seppoc fmt --write"), "{}", text(&o.stdout));
    let o = seppoc(&["fmt", "--write", &s(&file)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(seppoc(&["fmt", "--check", &s(&file)]).status.success());
    assert!(!dir.join("x.obj.tmp").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn compare_args(out: &Path, steps: &str) -> Vec<String> {
    let args = [
        "compare",
        "objectives/sft.obj",
        "--seeds",
        "1",
        "--batch",
        "2",
        "--data-size",
        "8",
        "--eval-every",
        "100000",
        "--curve-prompts",
        "1",
        "--eval-prompts",
        "2",
        "--model",
    ];
    let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    v.extend([base().to_string(), "--steps".into(), steps.into(), "--out".into(), s(out)]);
    v
}

#[test]
fn an_interrupted_compare_stops_its_children_and_the_same_command_resumes() {
    let dir = scratch("rel", "compare");
    let out = dir.join("c");
    let args = compare_args(&out, "3000");
    let run_dir = out.join("sft/seed0");
    let child = spawn(&args);
    wait_lines(&run_dir.join("metrics.jsonl"), 3);
    sigterm(&child);
    let (code, _, stderr) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("Resume with the same command"), "{stderr}");
    // The child run stopped too (and released its lock) with its state saved.
    let n = lines(&run_dir.join("metrics.jsonl"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(lines(&run_dir.join("metrics.jsonl")), n, "no orphan keeps training");
    assert!(!run_dir.join(".lock").exists());
    assert!(n < 3000 && run_dir.join("state/state.json").exists(), "stopped at {n} with a state");
    // The same command resumes the run and finishes.
    let o = run(&args);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let log = std::fs::read_to_string(run_dir.join("log.txt")).expect("log");
    assert!(log.contains(&format!("resumed at step {n}")), "{log}");
    // Other settings in the same folder: refused, in both modes, before anything is touched.
    for extra in [None, Some("--report-only")] {
        let mut other = compare_args(&out, "20");
        other.extend(extra.map(String::from));
        let o = run(&other);
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        assert!(text(&o.stderr).contains("comparison made with other settings"), "{}", text(&o.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_flat_naming_scheme_with_a_schema_version() {
    let dir = scratch("rel", "schema");
    let out = dir.join("r");
    let mut args = run_args("objectives/sft.obj", &out, "2");
    let at = args.iter().position(|a| a == "--eval-prompts").expect("flag") + 1;
    args[at] = "2".into();
    args.extend(["--eval-every".into(), "1".into(), "--curve-prompts".into(), "1".into()]);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).expect(name)).expect("json")
    };
    let run_json = json("run.json");
    assert_eq!(run_json["schema"], 1);
    assert_eq!(run_json["settings"]["lr"].as_f64(), Some(2e-5), "lr stored as written: {}", run_json["settings"]);
    assert!(run_json["plan"].is_array(), "the plan is a list of lines");
    let report = json("report.json");
    assert_eq!(report["schema"], 1);
    for side in ["base", "trained"] {
        for key in ["score", "quality", "colour_acc", "shape_acc", "position_acc", "all_correct"] {
            assert!(report[side][key].is_number(), "{side}.{key} in {report}");
        }
        assert!(report[side].get("mean_score").is_none() && report[side].get("mean_quality").is_none());
    }
    let curve = std::fs::read_to_string(out.join("curve.jsonl")).expect("curve");
    let first: serde_json::Value = serde_json::from_str(curve.lines().next().expect("a line")).expect("json");
    assert!(first["score"].is_number() && first["colour_acc"].is_number(), "{first}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    assert!(!metrics.contains("0.0000199999"), "lr in metrics is rounded: {metrics}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pretrain` stopped by SIGTERM saves its state (weights, AdamW moments, EMA, both random streams, step) and
/// prints the resume command; `pretrain --resume DIR` finishes bitwise as an uninterrupted run of the same
/// settings (same weights, same losses), and refuses other settings.
#[test]
fn an_interrupted_pretraining_resumes_bitwise() {
    let dir = scratch("rel", "pretrain-resume");
    let args = |out: &Path| -> Vec<String> {
        let a = ["pretrain", "--size", "tiny", "--steps", "300", "--batch", "2", "--seed", "5", "--save-every", "3"];
        a.iter().map(|x| x.to_string()).chain(["--out".to_string(), s(out)]).collect()
    };
    let (full, stopped) = (dir.join("full"), dir.join("stopped"));
    let o = run(&args(&full));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let child = spawn(&args(&stopped));
    wait_lines(&stopped.join("metrics.jsonl"), 10);
    sigterm(&child);
    let (code, _, stderr) = finish(child);
    assert_eq!(code, Some(130), "the run ended before the signal: {stderr}");
    assert!(stderr.contains("Resume with:"), "{stderr}");
    let resume =
        stderr.lines().find(|l| l.trim_start().starts_with("seppoc pretrain --resume")).expect("a resume line");
    assert!(resume.trim_end().ends_with(&s(&stopped)), "{resume}");
    assert!(stopped.join("state/state.json").exists());
    // Other settings are refused, naming the stored ones.
    let o = seppoc(&["pretrain", "--resume", &s(&stopped), "--lr", "0.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("pretrain.json"), "{}", text(&o.stderr));
    // The same command again resumes (the metrics lines before the state are kept as written, wall time and
    // all); stopped again, the printed command resumes and finishes.
    let first_line =
        || std::fs::read_to_string(stopped.join("metrics.jsonl")).expect("metrics").lines().next().map(str::to_string);
    let before = first_line();
    let child = spawn(&args(&stopped));
    wait_lines(&stopped.join("metrics.jsonl"), lines(&stopped.join("metrics.jsonl")) + 10);
    sigterm(&child);
    let (code, _, stderr) = finish(child);
    assert_eq!(code, Some(130), "the repeated command ended before the signal: {stderr}");
    assert_eq!(first_line(), before, "the repeated command started over instead of resuming");
    let o = seppoc(&["pretrain", "--resume", &s(&stopped)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("resumed at step"), "{}", text(&o.stdout));
    assert!(!stopped.join("state").exists(), "a finished pretraining keeps no state");
    let weights = |d: &Path| seppoc::model::load_tensors(&d.join("model.safetensors")).expect("a checkpoint").1;
    assert!(weights(&full) == weights(&stopped), "resumed weights differ from the uninterrupted run's");
    let losses = |d: &Path| -> Vec<(u64, f64, f64)> {
        let t = std::fs::read_to_string(d.join("metrics.jsonl")).expect("metrics");
        t.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .map(|v| {
                (
                    v["step"].as_u64().unwrap_or(0),
                    v["loss"].as_f64().unwrap_or(0.0),
                    v["grad_norm"].as_f64().unwrap_or(0.0),
                )
            })
            .collect()
    };
    assert_eq!(losses(&full), losses(&stopped));
}
