//! The jobs of a comparison: each is a list of `seppoc` child processes whose output goes to one directory.
//! `job.json` records the job's signature and whether it finished, so a repeated comparison reuses finished
//! jobs and resumes interrupted ones; `--jobs` workers run them in parallel.

use crate::engine::stop::{self, Interrupted};
use crate::engine::write_json;
use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// One unit of work: a child-process command line and where its output goes.
pub(super) struct Job {
    pub(super) label: String,
    pub(super) dir: PathBuf,
    /// Child-process argument lists, run in order.
    pub(super) commands: Vec<Vec<String>>,
    /// What must match for a finished job to be reused.
    pub(super) signature: Value,
    pub(super) objective: Option<(String, u64)>,
}

/// The signature recorded in `dir/job.json` by a previous comparison, if any.
pub(super) fn read_signature(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("job.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(v["signature"].clone())
}

/// Runs the jobs on `parallel` worker threads; returns each job's wall seconds (or its error) in job order.
pub(super) fn run_jobs(jobs: &[Job], parallel: usize) -> Vec<anyhow::Result<f64>> {
    let next = Mutex::new(0usize);
    let done = Mutex::new(0usize);
    let results: Mutex<Vec<Option<anyhow::Result<f64>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(jobs.len()) {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(job) = jobs.get(i) else { break };
                let result = run_job_once(job);
                let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
                *d += 1;
                match &result {
                    Ok(s) => outln!("[{}/{}] {}: done ({s:.0} s)", *d, jobs.len(), job.label),
                    Err(e) if e.is::<NotStarted>() => outln!("[{}/{}] {}: not started", *d, jobs.len(), job.label),
                    Err(e) if e.is::<Interrupted>() => outln!("[{}/{}] {e}", *d, jobs.len()),
                    Err(e) => outln!("[{}/{}] {}: FAILED: {e:#}", *d, jobs.len(), job.label),
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(result);
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|r| r.expect("every job ran")).collect()
}

/// A job the comparison was stopped before it started (not a failure: the same command runs it).
#[derive(Debug)]
pub(super) struct NotStarted;

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not started (the comparison was stopped first)")
    }
}

impl std::error::Error for NotStarted {}

/// The seconds a finished job took, when `job.json` says it finished with the same signature.
pub(super) fn finished_seconds(job: &Job) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(job.dir.join("job.json")).ok();
    match text.and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
        Some(v) if v["signature"] == job.signature && v["done"] == json!(true) => {
            Ok(v["seconds"].as_f64().unwrap_or(0.0))
        }
        _ => bail!("not run (no finished job with these settings in `{}`)", job.dir.display()),
    }
}

/// Runs one job unless `job.json` says it already finished with the same signature; returns its seconds.
fn run_job_once(job: &Job) -> anyhow::Result<f64> {
    let record = job.dir.join("job.json");
    if let Ok(seconds) = finished_seconds(job) {
        return Ok(seconds);
    }
    if stop::requested() {
        return Err(NotStarted.into());
    }
    std::fs::create_dir_all(&job.dir).with_context(|| format!("cannot create `{}`", job.dir.display()))?;
    let resumed = job.commands[0].iter().any(|a| a == "--resume");
    let earlier = if resumed { read_seconds(&record) } else { 0.0 };
    write_json(&record, &json!({ "signature": job.signature, "done": false, "seconds": earlier }))?;
    let exe = std::env::current_exe().context("cannot find the seppoc executable to start runs")?;
    let log_path = job.dir.join("log.txt");
    let started = Instant::now();
    for argv in &job.commands {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot write `{}`", log_path.display()))?;
        if stop::requested() {
            return Err(Interrupted { message: format!("{}: interrupted", job.label) }.into());
        }
        // Its own process group, so a Ctrl-C on the terminal reaches only this process, which stops the child
        // once (SIGTERM); the child also stops by itself if this process dies.
        let mut child = Command::new(&exe)
            .args(argv)
            .env(stop::WITH_PARENT_ENV, "1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start `{}`", exe.display()))?;
        let mut forwarded = false;
        let status = loop {
            if let Some(status) = child.try_wait().context("cannot wait for a child process")? {
                break status;
            }
            if stop::requested() && !forwarded {
                forwarded = true;
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if forwarded || status.code() == Some(130) {
            return Err(Interrupted {
                message: format!("{}: interrupted (state saved; see `{}`)", job.label, log_path.display()),
            }
            .into());
        }
        if !status.success() {
            bail!("`seppoc {}` failed ({status}); see `{}`", argv.join(" "), log_path.display());
        }
    }
    let seconds = earlier + started.elapsed().as_secs_f64();
    write_json(&record, &json!({ "signature": job.signature, "done": true, "seconds": seconds }))?;
    Ok(seconds)
}

fn read_seconds(record: &Path) -> f64 {
    std::fs::read_to_string(record)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["seconds"].as_f64())
        .unwrap_or(0.0)
}
