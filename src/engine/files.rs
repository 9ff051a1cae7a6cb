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
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_atomic(path, text.as_bytes())
}

/// Writes a file via `PATH.tmp`, fsync and a rename, so readers never see half a file; on failure the
/// temporary file is removed and the old file, if any, is left as it was.
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let bytes = bytes.as_ref();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write `{}`", tmp.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write `{}`: {e}", path.display())
    })
}

/// Writes `grid.txt` beside a sample grid, atomically: a header line, then one tab-separated line per cell in
/// grid order (left to right, top to bottom) — `row`, `col` (from 0), `model` (which model drew it) and `prompt`
/// — so a reader can match each cell of the picture to its prompt. `cols` is the grid's width in cells.
pub fn write_grid_index(path: &Path, cols: usize, cells: &[(&str, &str)]) -> anyhow::Result<()> {
    let cols = cols.max(1);
    let mut text = String::from("row\tcol\tmodel\tprompt\n");
    for (k, (model, prompt)) in cells.iter().enumerate() {
        let clean = |t: &str| t.replace(['\t', '\n', '\r'], " ");
        text.push_str(&format!("{}\t{}\t{}\t{}\n", k / cols, k % cols, clean(model), clean(prompt)));
    }
    write_atomic(path, text)
}

/// A model's name in grids and their indexes: its folder's name for a file called `model.*` (`base` for
/// `assets/base/model.safetensors`, `seppo-seed0` for `runs/seppo-seed0/model.safetensors`), else its file stem.
pub fn model_label(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match path.parent().and_then(|d| d.file_name()) {
        Some(dir) if stem == "model" || stem.is_empty() => dir.to_string_lossy().into_owned(),
        _ => stem,
    }
}

/// Fails early, before any work, when files cannot be created in `dir` (creating it if missing).
pub fn ensure_writable(dir: &Path) -> anyhow::Result<()> {
    let shown = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::create_dir_all(shown).with_context(|| format!("cannot create `{}`", shown.display()))?;
    let probe = shown.join(format!(".seppoc-write-test-{}", std::process::id()));
    std::fs::File::create(&probe).with_context(|| format!("cannot write into `{}`", shown.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// An exclusive lock on an output directory while a process writes it: the file `DIR/.lock` holds the pid of
/// its holder and is removed when the lock is dropped. A lock whose holder no longer runs is taken over.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist), or says which process holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(".lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id())
                        .with_context(|| format!("cannot write `{}`", path.display()))?;
                    super::stop::hold_lock(&path);
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid: Option<u32> = holder.trim().parse().ok();
                    let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
                    if alive && pid != Some(std::process::id()) {
                        bail!(
                            "`{}` is in use by another seppoc process (pid {}, lock file `{}`); wait for it to \
                             finish or stop it",
                            dir.display(),
                            holder.trim(),
                            path.display()
                        );
                    }
                    // A stale lock: its holder has gone.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create `{}`", path.display())),
            }
        }
        bail!("cannot take the lock `{}`", path.display())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        super::stop::release_lock(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An f32 as the f64 of its shortest decimal form: `2e-5`, not `0.000019999999494757503` (for JSON records).
pub fn f32_value(x: f32) -> f64 {
    format!("{x}").parse().unwrap_or(f64::from(x))
}
