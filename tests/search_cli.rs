//! `seppoc search` end to end on a tiny pretrained base with a tiny funnel: the outputs exist and every archived
//! candidate checks; the search is deterministic for a seed (and with `--jobs 2`); a search stopped by its
//! budget or by a signal and run again equals an uninterrupted one; another search's directory is refused.

mod cli_support;

use cli_support::{scratch, seppoc, text, tiny_base};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| tiny_base("search_cli", 0))
}

/// The search command's arguments (seed files, tiny stages) into `out`, with extra flags.
fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "search",
        "objectives/sft.obj",
        "objectives/seppo_nogate.obj",
        "--data-kind",
        "winners",
        "--model",
        base(),
        "--data",
        "synthetic",
        "--stages",
        "2:1:2:1,3:2:2:1",
        "--validation",
        "4",
        "--population",
        "3",
        "--random",
        "2",
        "--batch",
        "2",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(out.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn search(out: &Path, extra: &[&str]) -> std::process::Output {
    let a = args(out, extra);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    seppoc(&refs)
}

fn archive(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("archive.jsonl")).expect("archive.jsonl")
}

fn dir(name: &str) -> PathBuf {
    scratch("search_cli", name)
}

#[test]
fn a_search_writes_its_outputs_and_every_candidate_checks() {
    let out = dir("outputs").join("s");
    let o = search(&out, &["--budget-evals", "14"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("stopped: the evaluation budget is spent (14 evaluations"), "{stdout}");
    assert!(text(&o.stderr).contains("search eval 14/14"), "{}", text(&o.stderr));
    for f in ["search.json", "counts.json", "leaderboard.md", "progress.png", "search.log"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let lines = archive(&out);
    let records: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert!(records.len() > 10);
    let mut trained = 0;
    for r in &records {
        let src = r["source"].as_str().expect("source");
        let parsed = seppoc::frontend::frontend(&seppoc::source::SourceFile::new("a.obj", src));
        assert!(parsed.is_ok(), "{src}");
        assert_eq!(r["hash"].as_str().map(str::len), Some(16));
        trained += usize::from(!r["stages"].as_array().expect("stages").is_empty());
        if r["rejection"].is_null() {
            continue;
        }
        assert!(r["stages"].as_array().expect("stages").is_empty(), "a rejected candidate was trained");
    }
    assert!(trained >= 8, "{trained}");
    // Baselines: seppo_nogate at every factor of the grid; the shipped sft once.
    let baselines: Vec<&str> =
        records.iter().filter(|r| r["origin"] == "baseline").filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        baselines,
        ["sft", "seppo_nogate", "seppo_nogate_x0_25", "seppo_nogate_x0_5", "seppo_nogate_x2", "seppo_nogate_x4"]
    );
    let board = std::fs::read_to_string(out.join("leaderboard.md")).expect("leaderboard");
    assert!(board.contains("## Baselines, tuned") && board.contains("| `seppo_nogate` |"), "{board}");
    // Top files check and say where they came from.
    let tops: Vec<PathBuf> = std::fs::read_dir(out.join("top")).expect("top/").flatten().map(|e| e.path()).collect();
    assert!(!tops.is_empty());
    for t in tops {
        let o = seppoc(&["check", &t.display().to_string()]);
        assert!(o.status.success(), "{}: {}", t.display(), text(&o.stderr));
        let head = std::fs::read_to_string(&t).expect("top file");
        assert!(head.starts_with("# Found by `seppoc search` (data winners, search seed 0), candidate "), "{head}");
    }
}

#[test]
fn a_search_is_deterministic_for_a_seed_and_resumes_to_the_same_archive() {
    let full = dir("full").join("s");
    let o = search(&full, &["--budget-evals", "16"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The same search in two sittings (the budget stops the first), and with two jobs at a time.
    let split = dir("split").join("s");
    let o = search(&split, &["--budget-evals", "7"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_ne!(archive(&split), archive(&full));
    let o = search(&split, &["--budget-evals", "16", "--jobs", "2"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("(16 evaluations, 9 of them in this sitting"), "{}", text(&o.stdout));
    assert_eq!(archive(&split), archive(&full));
    let leaderboard = |d: &Path| std::fs::read_to_string(d.join("leaderboard.md")).expect("leaderboard");
    assert_eq!(leaderboard(&split), leaderboard(&full));
    // Another seed proposes other candidates.
    let other = dir("other").join("s");
    let o = search(&other, &["--budget-evals", "16", "--seed", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_ne!(archive(&other), archive(&full));
    // Another search's directory is refused, naming the setting.
    let o = search(&full, &["--budget-evals", "16", "--eta", "4"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("holds a search with other settings (eta: 3 there, 4 here)"), "{err}");
}

#[test]
fn a_search_stopped_by_a_signal_resumes_to_the_uninterrupted_archive() {
    let full = dir("sig-full").join("s");
    let o = search(&full, &["--budget-evals", "12"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stopped = dir("sig-stopped").join("s");
    let mut child = Command::new(env!("CARGO_BIN_EXE_seppoc"))
        .args(args(&stopped, &["--budget-evals", "12"]))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("search eval 3/12") {
            let ok = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
            assert!(ok.success());
            break;
        }
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exits");
    let all = format!("{seen}{}", rest.join("\n"));
    assert_eq!(status.code(), Some(130), "{all}");
    assert!(all.contains("interrupted: search") && all.contains("Run the same command again"), "{all}");
    let kept = archive(&stopped);
    assert_ne!(kept, archive(&full));
    let o = search(&stopped, &["--budget-evals", "12"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("resuming:"), "{}", text(&o.stderr));
    assert_eq!(archive(&stopped), archive(&full));
}
