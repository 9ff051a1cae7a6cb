//! Stopping long jobs cleanly. SIGINT, SIGTERM and SIGHUP set a flag that the training loops read at their
//! safe points (between two updates), where they save a resumable state and stop with an [`Interrupted`]
//! error naming the command that resumes. A second signal ends the process at once. A child started by
//! `seppoc compare` (environment `SEPPOC_STOP_WITH_PARENT=1`) also stops when its parent has gone, so killing
//! the comparison never leaves a training running on its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

static STOP: AtomicBool = AtomicBool::new(false);
/// Lock files this process holds ([`super::DirLock`]): a second signal removes them before exiting.
static LOCKS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// What this process has saved so far, for the message of a second signal.
static SAVED: Mutex<Option<String>> = Mutex::new(None);
/// The parent's pid to watch (0: none).
static PARENT: AtomicU32 = AtomicU32::new(0);

/// The environment variable that makes a child process stop with its parent.
pub const WITH_PARENT_ENV: &str = "SEPPOC_STOP_WITH_PARENT";

/// Installs the signal handlers (once per process); a second signal exits with status 130 immediately, saying
/// what was and was not saved and removing this process's lock files.
pub fn install() -> anyhow::Result<()> {
    if std::env::var_os(WITH_PARENT_ENV).is_some() {
        PARENT.store(std::os::unix::process::parent_id(), Ordering::SeqCst);
    }
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            use std::io::Write;
            let message = second_signal_message();
            let _ = writeln!(std::io::stderr().lock(), "{message}");
            std::process::exit(130);
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot install the signal handler: {e}"))
}

/// Removes the held lock files and says what the process leaves behind (a second signal). `try_lock`: the
/// handler thread never waits on a thread it interrupts.
pub fn second_signal_message() -> String {
    let saved = SAVED.try_lock().ok().and_then(|s| s.clone());
    let mut removed = Vec::new();
    if let Ok(mut locks) = LOCKS.try_lock() {
        for lock in locks.drain(..) {
            if std::fs::remove_file(&lock).is_ok() {
                removed.push(format!("`{}`", lock.display()));
            }
        }
    }
    let mut m = String::from("stopped at once by a second signal, without saving anything more");
    match saved {
        Some(s) => m.push_str(&format!("; kept: {s}")),
        None => m.push_str("; this command had saved nothing (run the same command again)"),
    }
    m.push_str(". A file being written when the signal came keeps its previous version (writes are atomic).");
    if !removed.is_empty() {
        m.push_str(&format!(" Removed the lock {}.", removed.join(", ")));
    }
    m
}

/// Records what this process has saved so far (replacing the previous note), for a second signal's message.
pub fn note_saved(what: String) {
    if let Ok(mut s) = SAVED.lock() {
        *s = Some(what);
    }
}

/// Registers a lock file this process holds (removed by a second signal).
pub(super) fn hold_lock(path: &Path) {
    if let Ok(mut locks) = LOCKS.lock() {
        locks.push(path.to_path_buf());
    }
}

/// Forgets a lock file this process has released.
pub(super) fn release_lock(path: &Path) {
    if let Ok(mut locks) = LOCKS.lock() {
        locks.retain(|p| p != path);
    }
}

/// Asks every loop of this process to stop at its next safe point (what a signal does).
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested: a signal arrived, or the watched parent process has gone.
pub fn requested() -> bool {
    if STOP.load(Ordering::SeqCst) {
        return true;
    }
    let parent = PARENT.load(Ordering::Relaxed);
    if parent != 0 && std::os::unix::process::parent_id() != parent {
        STOP.store(true, Ordering::SeqCst);
        return true;
    }
    false
}

/// A long job stopped at a safe point on request; the message says what was kept and how to go on.
#[derive(Debug)]
pub struct Interrupted {
    /// What to tell the user: where the state is and the exact command that resumes.
    pub message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

/// Quotes a command-line argument for a POSIX shell where needed.
pub fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}
