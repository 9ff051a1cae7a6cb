//! One vocabulary across commands, as a new user meets it: the same evaluation flags and default in `run`,
//! `eval` and `compare` (so a model gets one score), one win rate, negative numbers refused by the flag's own
//! message, messages that say what happened (another run's folder, a finished run, a second Ctrl-C, jobs not
//! started), plain progress lines without a terminal, labelled grids, `seppoc plot`, sweep-friendly folder names.

mod cli_support;

use cli_support::{scratch, seppoc, seppoc_in, text, tiny_base};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One tiny pretrained base shared by every test of this file.
fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| tiny_base("vocab", 5))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn objective(name: &str) -> String {
    format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"))
}

/// `run FILE` on the tiny base with a tiny batch, plus `extra`.
fn run_args(file: &str, out: &Path, steps: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["run", file, "--model", base(), "--batch", "2", "--data-size", "8", "--steps", steps]
        .iter()
        .map(|a| a.to_string())
        .collect();
    v.extend(["--out".to_string(), s(out)]);
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

fn run(args: &[String]) -> Output {
    seppoc(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("JSON")
}

#[test]
fn negative_numbers_are_refused_by_the_flags_own_message() {
    let cases: [&[&str]; 7] = [
        &["run", "objectives/sft.obj", "--steps", "-5"],
        &["run", "objectives/sft.obj", "--eval-samples", "-2"],
        &["eval", "--eval-prompts", "-3"],
        &["compare", "objectives/sft.obj", "--seeds", "-1"],
        &["sample", "--prompt", "a red circle", "-n", "-2"],
        &["collect", "--out", "x.parquet", "--prompts", "-4"],
        &["pretrain", "--steps", "-5"],
    ];
    for args in cases {
        let o = seppoc(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = text(&o.stderr);
        let flag = args[args.len() - 2];
        let flag = if flag == "-n" { "--n-samples" } else { flag };
        let want = format!("{flag} must be a non-negative integer, got {}", args[args.len() - 1]);
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(!err.contains("-- -"), "no advice to write `-- -5`: {err}");
    }
    // A negative value where one makes no sense at all is refused by the command's own check, not clap's tip.
    let o = seppoc(&["run", "objectives/sft.obj", "--lr", "-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--lr must be a finite number > 0, found -1"), "{}", text(&o.stderr));
}

#[test]
fn the_evaluation_flags_have_one_name_and_one_default_everywhere() {
    for command in ["run", "eval", "compare"] {
        let o = seppoc(&[command, "--help"]);
        let help = text(&o.stdout);
        for flag in ["--eval-prompts <N>", "--eval-samples <K>"] {
            assert!(help.contains(flag), "{command}: {flag} in {help}");
        }
        let at = help.find("--eval-samples <K>").expect("flag");
        let default = help[at..].find("[default: ").map(|i| &help[at + i..at + i + 12]);
        assert_eq!(default, Some("[default: 2]"), "{command}: {help}");
        // Zero samples is refused by every command alike.
        let mut args = vec![command];
        if command != "eval" {
            args.push("objectives/sft.obj");
        }
        args.extend(["--eval-samples", "0", "--model", base()]);
        let o = seppoc(&args);
        assert_eq!(o.status.code(), Some(2), "{command}");
        assert!(text(&o.stderr).contains("--eval-samples"), "{command}: {}", text(&o.stderr));
    }
}

/// `run`, `eval` and `compare` judge the base model alike by default: the same prompts, samples and score.
#[test]
fn run_eval_and_compare_give_the_base_model_one_score() {
    let dir = scratch("vocab", "one-score");
    let o = run(&run_args(&objective("sft"), &dir.join("r"), "1", &["--eval-prompts", "3"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("× 2 samples"), "{stdout}");
    let from_run = json(&dir.join("r/report.json"))["base"]["score"].as_f64().expect("score");
    // The old spelling of `eval`'s flag still works and means the same.
    for (flag, out) in [("--eval-prompts", "e1"), ("--n-prompts", "e2")] {
        let o = seppoc(&["eval", "--model", base(), flag, "3", "--out", &s(&dir.join(out))]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let report = json(&dir.join(out).join("report.json"));
        assert_eq!(report["score"].as_f64(), Some(from_run), "{flag}: {report}");
        assert_eq!(report["samples"], 2);
        // The score is printed once, under the name `run`'s table uses.
        let stdout = text(&o.stdout);
        let scores = stdout.lines().filter(|l| l.contains("score") && !l.starts_with("wrote")).count();
        assert_eq!(scores, 1, "{stdout}");
        assert!(stdout.contains("judge score "), "{stdout}");
    }
    let cmp = dir.join("c");
    let args = [
        "compare",
        "objectives/sft.obj",
        "--seeds",
        "1",
        "--steps",
        "1",
        "--batch",
        "2",
        "--data-size",
        "8",
        "--eval-prompts",
        "3",
        "--curve-prompts",
        "1",
        "--model",
        base(),
        "--out",
        &s(&cmp),
    ];
    let o = seppoc(&args);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(json(&cmp.join("base/report.json"))["score"].as_f64(), Some(from_run));
    // One seed has no spread to show.
    let stdout = text(&o.stdout);
    assert!(stdout.contains("± —") && !stdout.contains("± 0.0000"), "{stdout}");
    assert!(stdout.contains("| colour accuracy |"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_reports_one_win_rate_and_says_what_its_interval_covers() {
    let dir = scratch("vocab", "win-rate");
    let out = dir.join("r");
    let o = run(&run_args(&objective("dpo"), &out, "1", &["--eval-prompts", "4"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let line = stdout.lines().find(|l| l.starts_with("win rate vs base: ")).expect("a win-rate line");
    // `win rate vs base: R (B better, E equal, W worse of N samples; a tie counts 1/2)`
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|t| !t.is_empty() && *t != ".")
        .filter_map(|t| t.parse().ok())
        .collect();
    let [rate, better, equal, worse, n, ..] = numbers[..] else { panic!("{line}") };
    assert_eq!(better + equal + worse, n, "{line}");
    assert!((rate - (better + 0.5 * equal) / n).abs() < 1e-3, "{line}");
    let report = json(&out.join("report.json"));
    assert!((report["win_rate"].as_f64().expect("win_rate") - rate).abs() < 1e-3, "{report}");
    assert!(stdout.contains("one training seed") && stdout.contains("--seeds 3"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_runs_folder_names_what_differs_and_a_finished_run_is_rejudged() {
    let dir = scratch("vocab", "differs");
    let out = dir.join("r");
    let judged = ["--eval-prompts", "1", "--eval-every", "1", "--curve-prompts", "1"];
    assert!(run(&run_args(&objective("sft"), &out, "1", &judged)).status.success());
    let cases: [(&str, &[&str], &str); 3] = [
        ("sft", &["--eval-prompts", "1", "--lr", "1e-4"], "--lr 0.00002 there, 0.0001 here"),
        ("dpo", &["--eval-prompts", "1"], "objective `sft` there, `dpo` here"),
        ("sft", &["--eval-prompts", "2"], "--eval-prompts 1 there, 2 here"),
    ];
    for (name, extra, want) in cases {
        let o = run(&run_args(&objective(name), &out, "1", extra));
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let err = text(&o.stderr);
        assert!(err.contains("holds another run") && err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains("--resume"), "no resume advice for another run: {err}");
    }
    // Only the judging differs: it says how to judge that run with other settings.
    let o = run(&run_args(&objective("sft"), &out, "1", &["--eval-prompts", "2"]));
    assert!(text(&o.stderr).contains("seppoc eval --model"), "{}", text(&o.stderr));
    // The same command again on a finished run: nothing to train, judged again.
    let o = run(&run_args(&objective("sft"), &out, "1", &judged));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("had already finished") && stdout.contains("judging it again"), "{stdout}");
    assert!(!stdout.contains("trained `sft` for"), "{stdout}");
    // Its judge-score curve keeps one point per step.
    let curve = std::fs::read_to_string(out.join("curve.jsonl")).expect("curve.jsonl");
    let steps: Vec<u64> = curve
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(steps, [0, 1], "{curve}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_folder_names_carry_the_settings_a_sweep_varies() {
    let dir = scratch("vocab", "names");
    let file = objective("seppo");
    let common = ["run", &file, "--model", base(), "--batch", "2", "--data-size", "8", "--steps", "1"];
    for (extra, want) in [
        // Settings in alphabetical order, then the `--set`s; a model file by its folder's name.
        (&["--eval-prompts", "0"][..], "runs/seppo-seed0-batch2-data-size8-modelbase"),
        (
            &["--eval-prompts", "0", "--lr", "1e-4", "--set", "beta=500"][..],
            "runs/seppo-seed0-batch2-data-size8-lr0.0001-modelbase-beta500",
        ),
    ] {
        let mut args = common.to_vec();
        args.extend(extra);
        let o = seppoc_in(&dir, &args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(dir.join(want).join("model.safetensors").exists(), "{want}: {}", text(&o.stdout));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_lines(file: &Path, n: usize) {
    let started = Instant::now();
    let count = || std::fs::read_to_string(file).map(|t| t.lines().count()).unwrap_or(0);
    while count() < n && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signalled");
}

#[test]
fn a_second_signal_says_what_was_kept_and_removes_the_lock() {
    let dir = scratch("vocab", "second-signal");
    let out = dir.join("r");
    let args = run_args(&objective("seppo"), &out, "1000000", &["--eval-prompts", "0", "--checkpoint-every", "2"]);
    let child = Command::new(env!("CARGO_BIN_EXE_seppoc"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    wait_lines(&out.join("metrics.jsonl"), 5);
    assert!(out.join(".lock").exists());
    // Two different signals back to back (two of the same kind may merge into one while pending).
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let o = child.wait_with_output().expect("reaped");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped at once by a second signal"), "{err}");
    assert!(err.contains("kept: run") && err.contains("seppoc run --resume"), "{err}");
    assert!(err.contains("Removed the lock"), "{err}");
    assert!(!out.join(".lock").exists(), "no stale lock");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_compare_says_which_jobs_never_started() {
    let dir = scratch("vocab", "not-started");
    let out = dir.join("c");
    let args = [
        "compare",
        "objectives/sft.obj",
        "--seeds",
        "3",
        "--steps",
        "100000",
        "--batch",
        "2",
        "--data-size",
        "8",
        "--eval-every",
        "100000",
        "--curve-prompts",
        "1",
        "--eval-prompts",
        "1",
        "--model",
        base(),
        "--out",
        &s(&out),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_seppoc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    wait_lines(&out.join("sft/seed0/metrics.jsonl"), 2);
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    let o = child.wait_with_output().expect("reaped");
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(stdout.contains("sft seed 1: not started") && stdout.contains("sft seed 2: not started"), "{stdout}");
    assert!(stdout.contains("sft seed 0: interrupted"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stderr.contains("2 had not started"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn long_commands_print_plain_progress_lines_without_a_terminal() {
    let dir = scratch("vocab", "progress");
    let with_lines = |args: &[&str]| -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_seppoc"))
            .args(args)
            .current_dir(&dir)
            .env("SEPPOC_PROGRESS_SECS", "0")
            .output()
            .expect("runs");
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        text(&o.stderr)
    };
    let err = with_lines(&["eval", "--model", base(), "--eval-prompts", "3", "--steps", "2", "--out", "ev"]);
    assert!(err.contains("eval 6/6 images") && err.contains("images/s") && err.contains("ETA"), "{err}");
    let generator = format!("b={}", base());
    let err = with_lines(&[
        "collect",
        "--out",
        "p.parquet",
        "--model",
        base(),
        "--generator",
        &generator,
        "--prompts",
        "4",
        "--comparisons",
        "1",
    ]);
    assert!(err.contains("collect 8/8 images"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grids_label_their_rows_and_columns() {
    let dir = scratch("vocab", "grids");
    let out = dir.join("r");
    let o = run(&run_args(&objective("sft"), &out, "1", &["--eval-prompts", "3", "--eval-samples", "1"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let grid = image::open(out.join("grid.png")).expect("a PNG").to_rgb8();
    // Three 64-pixel cells per row behind a label column, and the prompts written under the trained row.
    assert!(grid.width() > 3 * 64 + 4 * 2, "{}", grid.width());
    assert!(grid.height() > 2 * 64 + 3 * 2, "{}", grid.height());
    let ink = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1).flat_map(|x| (y0..y1).map(move |y| (x, y))).filter(|&(x, y)| grid.get_pixel(x, y).0 == [0; 3]).count()
    };
    let label_w = grid.width() - (3 * 64 + 4 * 2);
    assert!(ink(0, label_w, 0, 64) > 10, "the `base` label");
    assert!(ink(0, label_w, 66, 130) > 10, "the `trained` label");
    assert!(ink(label_w, grid.width(), 2 * 64 + 6, grid.height()) > 30, "the prompts under the columns");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plot_draws_every_curve_of_a_run() {
    let dir = scratch("vocab", "plot");
    let out = dir.join("r");
    let extra = ["--eval-prompts", "0", "--eval-every", "2", "--curve-prompts", "1"];
    assert!(run(&run_args(&objective("seppo"), &out, "4", &extra)).status.success());
    let o = seppoc(&["plot", &s(&out)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for png in ["loss.png", "grad_norm.png", "log_flip_rate.png", "judge_score.png"] {
        let img = image::open(out.join("plots").join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert_eq!((img.width(), img.height()), (900, 560), "{png}");
        assert!(text(&o.stdout).contains(png), "{}", text(&o.stdout));
    }
    let o = seppoc(&["plot", &s(&dir)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("has no `metrics.jsonl`"), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
