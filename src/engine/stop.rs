//! Stopping long jobs cleanly. SIGINT, SIGTERM and SIGHUP set a flag that the training loops read at their
//! safe points (between two updates), where they save a resumable state and stop with an [`Interrupted`]
//! error naming the command that resumes. A second signal ends the process at once. A child started by
//! `seppoc compare` (environment `SEPPOC_STOP_WITH_PARENT=1`) also stops when its parent has gone, so killing
//! the comparison never leaves a training running on its own.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
/// The parent's pid to watch (0: none).
static PARENT: AtomicU32 = AtomicU32::new(0);

/// The environment variable that makes a child process stop with its parent.
pub const WITH_PARENT_ENV: &str = "SEPPOC_STOP_WITH_PARENT";

/// Installs the signal handlers (once per process); a second signal exits with status 130 immediately.
pub fn install() -> anyhow::Result<()> {
    if std::env::var_os(WITH_PARENT_ENV).is_some() {
        PARENT.store(std::os::unix::process::parent_id(), Ordering::SeqCst);
    }
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| anyhow::anyhow!("cannot install the signal handler: {e}"))
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
