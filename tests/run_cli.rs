//! `seppoc run` end to end on a tiny pretrained base: SFT, DPO and SePPO train and report; a run killed with
//! SIGKILL and resumed ends bitwise where an uninterrupted run of the same seed ends.

mod cli_support;

use cli_support::{seppoc, text};

use seppoc::device::cpu;
use seppoc::model::load_checkpoint;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tiny_base(dir: &Path) -> String {
    let out = dir.join("base");
    let o = seppoc(&[
        "pretrain",
        "--size",
        "tiny",
        "--steps",
        "20",
        "--batch",
        "8",
        "--seed",
        "1",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.join("model.safetensors").to_string_lossy().into_owned()
}

#[test]
fn sft_dpo_seppo_run_end_to_end() {
    let dir = temp("e2e");
    let base = tiny_base(&dir);
    for name in ["sft", "dpo", "seppo"] {
        let out = dir.join(name);
        let (file, out_s) = (format!("objectives/{name}.obj"), out.to_string_lossy().into_owned());
        let mut args = vec!["run", &file, "--model", &base, "--steps", "3", "--batch", "4"];
        args.extend(["--eval-prompts", "3", "--checkpoint-every", "2", "--out", &out_s]);
        if name == "seppo" {
            args.push("--profile");
        }
        let o = seppoc(&args);
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        let stdout = text(&o.stdout);
        assert!(stdout.contains("judge score ") && stdout.contains("win rate vs base"), "{name}: {stdout}");
        // `--profile`: every phase of the steps, summing to the step; SePPO's own reference sampling takes time.
        assert_eq!(out.join("profile.json").exists(), name == "seppo", "{name}");
        if name == "seppo" {
            let p: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("profile.json")).expect("profile")).unwrap();
            let phases = p["phases"].as_array().expect("phases");
            assert_eq!((phases.len(), p["steps"].as_u64()), (8, Some(3)), "{p}");
            let sum: f64 = phases.iter().map(|x| x["ms_per_step"].as_f64().unwrap()).sum();
            assert!((sum - p["step_ms"].as_f64().unwrap()).abs() < 1e-6 * sum.max(1.0), "{p}");
            assert!(phases[1]["phase"] == "reference sampling" && phases[1]["ms_per_step"].as_f64() > Some(0.0));
            assert!(stdout.contains("time per training step"), "{stdout}");
        }
        for f in [
            "model.safetensors",
            "checkpoint.safetensors",
            "metrics.jsonl",
            "report.json",
            "grid.png",
            "grid.txt",
            "run.json",
            "objective.obj",
            "state/state.json",
        ] {
            assert!(out.join(f).exists(), "{name}: missing {f}");
        }
        let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
        assert_eq!(metrics.lines().count(), 3);
        let first: serde_json::Value = serde_json::from_str(metrics.lines().next().expect("a line")).expect("json");
        if name != "sft" {
            assert!(
                (first["loss"].as_f64().expect("loss") - std::f64::consts::LN_2).abs() < 1e-6,
                "{name}: first step logs ln 2"
            );
        }
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report")).expect("json");
        assert!(report["base"]["score"].is_number() && report["trained"]["score"].is_number());
        let (_, meta) = load_checkpoint(&out.join("model.safetensors"), &cpu()).expect("final model loads");
        let objective = meta.objective.expect("checkpoint carries the objective");
        assert!(objective.text.contains(&format!("objective {name}")), "checkpoint carries the objective text");
        assert_eq!(objective.sha256.len(), 64);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigkill_and_resume_is_bitwise_identical() {
    let dir = temp("resume");
    let base = tiny_base(&dir);
    let common = |out: &Path, steps: &str| -> Vec<String> {
        [
            "run",
            "objectives/seppo.obj",
            "--model",
            &base,
            "--batch",
            "4",
            "--eval-prompts",
            "0",
            "--checkpoint-every",
            "3",
            "--seed",
            "7",
            "--steps",
            steps,
            "--out",
            &out.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let straight = dir.join("straight");
    let o = Command::new(env!("CARGO_BIN_EXE_seppoc")).args(common(&straight, "24")).output().expect("runs");
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Start a long run and kill it with SIGKILL once a few states have been saved.
    let killed = dir.join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_seppoc")).args(common(&killed, "100000")).spawn().expect("starts");
    let metrics = killed.join("metrics.jsonl");
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&metrics).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= 8 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "the run was killed, not finished");

    let resume = ["run", "objectives/seppo.obj", "--resume", &killed.to_string_lossy(), "--steps", "24"];
    let o = seppoc(&resume);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("resumed"), "{}", text(&o.stdout));
    let read = |p: &Path| std::fs::read_to_string(p.join("metrics.jsonl")).expect("metrics");
    assert_eq!(read(&killed), read(&straight), "metrics after resume equal the uninterrupted run's");
    let weights = |p: &Path| load_checkpoint(&p.join("model.safetensors"), &cpu()).expect("loads").0.to_host();
    assert_eq!(weights(&killed), weights(&straight), "weights equal bitwise");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_refuses_a_different_objective() {
    let dir = temp("refuse");
    let base = tiny_base(&dir);
    let out = dir.join("r");
    let o = seppoc(&[
        "run",
        "objectives/sft.obj",
        "--model",
        &base,
        "--steps",
        "2",
        "--batch",
        "2",
        "--eval-prompts",
        "0",
        "--checkpoint-every",
        "1",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = seppoc(&["run", "objectives/dpo.obj", "--resume", &out.to_string_lossy(), "--steps", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("different objective"), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

fn temp(name: &str) -> PathBuf {
    cli_support::scratch("run", name)
}
