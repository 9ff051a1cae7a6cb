//! Files the engine writes: JSON Lines that a running job can be followed in, and JSON reports written
//! atomically (a temporary file and a rename, so a reader never sees half a file).

use anyhow::{bail, Context};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Appends one JSON object per line to a file, flushing each line so a running job can be followed.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
}

impl JsonlWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
        Ok(JsonlWriter { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    /// Opens an existing file keeping only its first `keep` lines (a resumed run drops the lines written after
    /// its last saved state), then appends; creates the file when `keep` is 0.
    pub fn append(path: &Path, keep: usize) -> anyhow::Result<Self> {
        if keep == 0 {
            return Self::create(path);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let kept: Vec<&str> = text.lines().take(keep).collect();
        if kept.len() < keep {
            bail!("`{}` has {} lines but the saved state is at step {keep}", path.display(), kept.len());
        }
        let mut out = Self::create(path)?;
        for line in kept {
            writeln!(out.out, "{line}").with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(out)
    }

    /// Opens an existing file keeping only the lines whose `step` is at most `step` (a resumed run drops what
    /// it wrote after its last saved state), then appends; creates the file when `step` is 0 or it does not exist.
    pub fn append_upto_step(path: &Path, step: usize) -> anyhow::Result<Self> {
        if step == 0 || !path.exists() {
            return Self::create(path);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        let mut kept = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("`{}` line {}: not valid JSON", path.display(), i + 1))?;
            match v["step"].as_u64() {
                Some(s) if s as usize <= step => kept.push(line),
                Some(_) => {}
                None => bail!("`{}` line {}: no `step`", path.display(), i + 1),
            }
        }
        let mut out = Self::create(path)?;
        for line in kept {
            writeln!(out.out, "{line}").with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        Ok(out)
    }

    /// Writes one record as a line.
    pub fn write(&mut self, record: &serde_json::Value) -> anyhow::Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .with_context(|| format!("cannot write `{}`", self.path.display()))
    }
}

/// Writes a JSON value pretty-printed, via a temporary file and a rename so readers never see half a file.
pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)? + "\n")
}

/// Writes text or bytes via `PATH.tmp` and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text.as_ref()).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))
}
